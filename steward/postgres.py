"""A PostgreSQL cluster under the Steward home: the backend store of MLflow and Prefect in the production profile.

Steward initialises the cluster once (``initdb``), runs ``postgres`` as one of the stack's supervised
processes and creates its databases. PostgreSQL refuses to run as root, so when Steward runs as root the
server runs as an unprivileged OS user (``postgres`` by default), who owns the data directory (mode 0700).
It listens on TCP only (no Unix socket) and accepts password logins (SCRAM) of one role, ``steward``.

The password comes from ``STEWARD_POSTGRES_PASSWORD`` when set (a secret store, an operator); otherwise
one is generated at ``initdb`` and kept in ``<home>/secrets/postgres-password`` (0600).
"""

from __future__ import annotations

import os
import pwd
import secrets
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROLE = "steward"
DATABASES = ("mlflow", "prefect")
PASSWORD_ENV = "STEWARD_POSTGRES_PASSWORD"
BIN_DIR_ENV = "STEWARD_POSTGRES_BIN"
SERVER_USER_ENV = "STEWARD_POSTGRES_USER"
DEFAULT_SERVER_USER = "postgres"


class PostgresError(RuntimeError):
    """The cluster cannot be set up or reached; the message says what to do."""


def find_bin_dir() -> Path:
    """The folder with ``initdb`` and ``postgres``: ``STEWARD_POSTGRES_BIN``, else the newest Debian install."""
    explicit = os.environ.get(BIN_DIR_ENV)
    candidates = [Path(explicit)] if explicit else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    where = f"{BIN_DIR_ENV}={explicit}" if explicit else "/usr/lib/postgresql/*/bin"
    raise PostgresError(f"no PostgreSQL server binaries (initdb, postgres) in {where}: install the server "
                        f"(Debian: apt-get install postgresql) or set {BIN_DIR_ENV} to the folder holding them")


def server_user() -> str | None:
    """The OS user the server runs as: none (this user) unless Steward runs as root, which initdb refuses."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get(SERVER_USER_ENV, DEFAULT_SERVER_USER)
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise PostgresError(f"PostgreSQL cannot run as root and there is no user {name!r} to run it as: create one "
                            f"(useradd --system {name}) or name another with {SERVER_USER_ENV}") from None
    return name


def _can_enter(path: Path, user: pwd.struct_passwd) -> bool:
    info = path.stat()
    groups = {user.pw_gid, *(g for g in os.getgrouplist(user.pw_name, user.pw_gid))}
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


@dataclass(frozen=True)
class Cluster:
    """One cluster under ``<home>/postgres``, reached on ``host:port``."""

    home: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def root(self) -> Path:
        return self.home / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def password_file(self) -> Path:
        return self.home / "secrets" / "postgres-password"

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def password(self) -> str:
        from_env = os.environ.get(PASSWORD_ENV)
        if from_env:
            return from_env
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise PostgresError(f"the cluster in {self.data_dir} has no password in {self.password_file}: set "
                                f"{PASSWORD_ENV} to the password of the role {ROLE!r}") from None

    def url(self, database: str, driver: str = "") -> str:
        """A SQLAlchemy URL of one database (``driver`` e.g. ``asyncpg``); it carries the password."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{ROLE}:{quote(self.password(), safe='')}@{self.host}:{self.port}/{database}"

    def server_command(self) -> tuple[str, ...]:
        return (str(find_bin_dir() / "postgres"), "-D", str(self.data_dir), "-h", self.host, "-p", str(self.port))

    def let_server_through_home(self, account: pwd.struct_passwd) -> None:
        """Let the server's user pass through the owner-only home to its data folder: group traverse, no listing.

        Everything else under the home stays 0700/0600, so passing through it reaches nothing but ``postgres/``.
        """
        info = self.home.stat()
        if info.st_gid != account.pw_gid:
            os.chown(self.home, -1, account.pw_gid)
        if stat.S_IMODE(info.st_mode) != 0o710:
            self.home.chmod(0o710)

    def initialise(self) -> bool:
        """``initdb`` the cluster if it is not there yet; True if it was created now."""
        if self.initialised:
            user = server_user()
            if user is not None:  # a home closed since (an older version, an operator's chmod) blocks the server
                self.let_server_through_home(pwd.getpwnam(user))
            return False
        bin_dir, user = find_bin_dir(), server_user()
        account = pwd.getpwnam(user) if user else None
        self.root.mkdir(parents=True, exist_ok=True)
        if account is not None:
            self.let_server_through_home(account)
            blocked = " ".join(str(p) for p in reversed(self.root.parents) if not _can_enter(p, account))
            if blocked:
                raise PostgresError(
                    f"PostgreSQL runs as the user {user!r} (it refuses root), who cannot enter {blocked}: "
                    f"put the Steward home where that user can reach it, or allow it (chmod o+x {blocked})")
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.root.chmod(0o700)
        password = os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(24)
        password_input = self.root / "initdb-password"
        password_input.write_text(password + "\n")
        password_input.chmod(0o600)
        if account is not None:
            os.chown(password_input, account.pw_uid, account.pw_gid)
        try:
            result = subprocess.run(
                [str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", ROLE, f"--pwfile={password_input}",
                 "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C"],
                capture_output=True, text=True, cwd=self.root, timeout=300,
                **({"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}),
            )
        finally:
            password_input.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed in {self.data_dir}:\n{result.stdout}{result.stderr}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# Steward: TCP only, on the host and port `steward up` passes\nunix_socket_directories = ''\n")
        if not os.environ.get(PASSWORD_ENV):
            self.password_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.password_file.write_text(password + "\n")
            self.password_file.chmod(0o600)
        return True

    def accepting(self, timeout: float = 3.0) -> bool:
        """Does the server accept connections (``pg_isready``)?"""
        return is_ready(self.host, self.port, timeout)

    def ensure_databases(self) -> list[str]:
        """Create the databases of MLflow and Prefect that do not exist yet; the names created."""
        import psycopg2

        try:
            connection = psycopg2.connect(host=self.host, port=self.port, user=ROLE, password=self.password(),
                                          dbname="postgres", connect_timeout=10)
        except psycopg2.OperationalError as error:
            raise PostgresError(f"cannot log in to PostgreSQL on {self.host}:{self.port} as {ROLE!r}: "
                                f"{str(error).strip()}; is {PASSWORD_ENV} the cluster's password?") from None
        created = []
        try:
            connection.autocommit = True  # CREATE DATABASE refuses to run in a transaction
            with connection.cursor() as cursor:
                cursor.execute("SELECT datname FROM pg_database")
                existing = {row[0] for row in cursor.fetchall()}
                for name in DATABASES:
                    if name not in existing:
                        cursor.execute(f'CREATE DATABASE "{name}" OWNER "{ROLE}"')
                        created.append(name)
        finally:
            connection.close()
        return created


def is_ready(host: str, port: int, timeout: float = 3.0) -> bool:
    result = subprocess.run([str(find_bin_dir() / "pg_isready"), "-h", host, "-p", str(port), "-t",
                             str(max(1, round(timeout)))], capture_output=True, timeout=timeout + 5)
    return result.returncode == 0
