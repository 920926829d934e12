#!/bin/sh
# PostgreSQL for the Steward stack: on first start, a cluster under $PGDATA whose superuser is
# $POSTGRES_USER (password from $POSTGRES_PASSWORD, required) and one database per name in
# $POSTGRES_DATABASES; then the server in the foreground. Later starts reuse the cluster as it is.
set -eu

if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "entrypoint-postgres: set POSTGRES_PASSWORD (the password of $POSTGRES_USER)" >&2
    exit 64
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    password_file=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$password_file"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql" -w start >/dev/null
    for database in $POSTGRES_DATABASES; do
        createdb -h /run/postgresql -U "$POSTGRES_USER" "$database"
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "entrypoint-postgres: initialised $PGDATA with databases: $POSTGRES_DATABASES"
fi

exec postgres -D "$PGDATA" -c listen_addresses="${POSTGRES_LISTEN:-127.0.0.1}" -c port="$PGPORT" \
    -c unix_socket_directories=/run/postgresql -c max_connections=200
