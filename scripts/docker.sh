#!/usr/bin/env bash
# Installs (Debian's docker.io) and starts the Docker Engine for the container pool.
# Idempotent: an engine that answers is left alone.
set -euo pipefail
if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker: installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 docker.io >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 docker.io >/dev/null; }
fi
# Docker Engine: its init script where it works, else dockerd by hand (the init script's ulimit
# is refused in some containers).
if ! docker info >/dev/null 2>&1; then
    echo "docker: starting the Docker Engine"
    service docker start >/dev/null 2>&1 || true
    for _ in $(seq 1 20); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    if ! docker info >/dev/null 2>&1; then
        nohup dockerd >/var/log/dockerd.log 2>&1 &
        for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    fi
    docker info >/dev/null 2>&1 || { echo "docker: dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi
