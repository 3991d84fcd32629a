#!/usr/bin/env bash
# Runs the all-in-one (API + conductor + compute agent, SQLite, in-process bus) on a fresh
# machine: builds it and starts it with etc/all-in-one.toml, its state (database, keys, images,
# clouds.yaml) in var/. Extra arguments are passed on. Needs nothing but the Rust toolchain:
# SQLite is compiled in.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
cd var
exec cargo run --release -q -p allinone --bin nova-aio -- ../etc/all-in-one.toml "$@"
