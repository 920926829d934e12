#!/usr/bin/env bash
# Make sure a Docker engine answers here, for `.ci/run` and for an operator's first try on a
# machine like these (root, no systemd): install Debian's docker.io, docker-compose and debootstrap
# if missing, then start dockerd with the overlay2 storage driver, or vfs where overlay is refused.
# Its data root (images, the local base, build cache) stays between runs on the same machine.
# Exits non-zero, saying why, when no engine can be started: never a silent skip.
set -euo pipefail
DATA_ROOT=${STEWARD_DOCKER_ROOT:-/var/lib/steward-docker}
WAIT_SECONDS=${STEWARD_DOCKER_WAIT:-90}

if docker info >/dev/null 2>&1; then
  echo "docker engine: already running ($(docker info --format '{{.Driver}}, {{.DockerRootDir}}'))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: no Docker engine answers and starting one needs root (dockerd); run as root or start one" >&2
  exit 1
fi
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for driver in overlay2 vfs; do
  mkdir -p "$DATA_ROOT/$driver"
  log="$DATA_ROOT/dockerd-$driver.log"
  nohup dockerd --storage-driver="$driver" --data-root="$DATA_ROOT/$driver" \
    --host=unix:///var/run/docker.sock >"$log" 2>&1 &
  pid=$!
  for _ in $(seq "$WAIT_SECONDS"); do
    if docker info >/dev/null 2>&1; then
      echo "docker engine: started (pid $pid, $driver, data root $DATA_ROOT/$driver, log $log)"
      exit 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  echo "dockerd with $driver did not answer; its log ends:" >&2
  tail -n 15 "$log" >&2
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
echo "error: no Docker engine could be started (tried overlay2 and vfs under $DATA_ROOT); see the logs above" >&2
exit 1
