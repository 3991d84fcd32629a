#!/usr/bin/env bash
# Runs the all-in-one (API + conductor + one compute agent per pool, SQLite, in-process bus) on
# a fresh machine: installs and starts libvirt with QEMU (scripts/libvirt.sh) and the Docker
# Engine (scripts/docker.sh) for the vm and container pools, builds the service and starts it
# with etc/all-in-one.toml, its state (database, keys, images, instances, clouds.yaml) in var/.
# Extra arguments are passed on. Needs the Rust toolchain, OpenSSL's and libvirt's headers
# (installed from Debian's packages when missing); SQLite is compiled in. A pool whose daemon
# cannot be set up here is reported off at start, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s libssl-dev libvirt-dev >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq libssl-dev libvirt-dev pkg-config >/dev/null
fi
scripts/libvirt.sh || echo "run.sh: libvirt could not be set up; the vm pool stays off" >&2
scripts/docker.sh || echo "run.sh: Docker could not be set up; the container pool stays off" >&2
mkdir -p var
cd var
exec cargo run --release -q -p allinone --bin nova-aio -- ../etc/all-in-one.toml "$@"
