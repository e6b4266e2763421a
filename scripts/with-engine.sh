#!/usr/bin/env bash
# Run a command with what mlbox needs on this machine: a Docker engine, Podman (the
# second engine; it needs no daemon), Debian's docker-registry and debootstrap, and a base
# image. Installs and starts only what is missing, and stops what it started when the
# command ends (idempotent).
#
#   scripts/with-engine.sh COMMAND [ARGS...]
#
# MLBOX_BASE_IMAGE, if set, names a base image to use instead of bootstrapping one.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "with-engine: $*" >&2; }
need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "this step needs root: $*; run with sudo, or start a Docker engine yourself"
    exit 1
  fi
}

# --- packages -------------------------------------------------------------------
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v podman >/dev/null 2>&1 || missing+=(podman)
# Rootless Podman (the tests run one as an unprivileged user): newuidmap/newgidmap map the
# user's subordinate ids, catatonit holds its user namespace (Podman's pause process).
command -v newuidmap >/dev/null 2>&1 || missing+=(uidmap)
command -v catatonit >/dev/null 2>&1 || missing+=(catatonit)
if [ ${#missing[@]} -gt 0 ]; then
  need_root "apt-get install ${missing[*]}"
  log "installing ${missing[*]} (Debian packages)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- engine ---------------------------------------------------------------------
started_dockerd=""
stop_engine() {
  if [ -n "$started_dockerd" ]; then
    log "stopping the dockerd this script started (pid $started_dockerd)"
    kill "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 1; done
  fi
}
trap stop_engine EXIT

if ! docker info >/dev/null 2>&1; then
  need_root "start dockerd"
  mkdir -p /var/log
  log "starting dockerd (log: /var/log/mlbox-dockerd.log)"
  dockerd >/var/log/mlbox-dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$started_dockerd" 2>/dev/null || { log "dockerd exited; see /var/log/mlbox-dockerd.log"; tail -20 /var/log/mlbox-dockerd.log >&2; exit 1; }
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up in 60 s"; exit 1; }
fi

# --- Python environment ---------------------------------------------------------
scripts/venv.sh

# --- base image -----------------------------------------------------------------
# Registries are unreachable on offline machines, so bootstrap one from Debian packages.
if [ -z "${MLBOX_BASE_IMAGE:-}" ]; then
  MLBOX_BASE_IMAGE=$(.venv/bin/mlbox base | tail -n 1)
  WITH_ENGINE_BOOTSTRAPPED_BASE=1  # demo.sh makes it the user's default base image
  export MLBOX_BASE_IMAGE WITH_ENGINE_BOOTSTRAPPED_BASE
fi
log "base image: $MLBOX_BASE_IMAGE"

set +e
"$@"
rc=$?
set -e
exit "$rc"
