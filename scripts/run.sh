#!/usr/bin/env bash
# Runs the all-in-one (API + conductor + compute agent, SQLite, in-process bus) on a fresh
# machine: builds it and starts it with etc/all-in-one.toml. Extra arguments are passed on.
# Needs nothing but the Rust toolchain: SQLite is compiled in.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
cargo build --release -q -p allinone
cd var
exec ../target/release/nova-aio ../etc/all-in-one.toml "$@"
