#!/usr/bin/env bash
# Runs the all-in-one (API + conductor + compute agent, SQLite, in-process bus) on a fresh
# machine: builds it and starts it with etc/all-in-one.toml, its state (database, keys, images,
# clouds.yaml) in var/. Extra arguments are passed on. Needs the Rust toolchain and OpenSSL's
# headers (installed from Debian's packages when missing); SQLite is compiled in.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s libssl-dev >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi
mkdir -p var
cd var
exec cargo run --release -q -p allinone --bin nova-aio -- ../etc/all-in-one.toml "$@"
