#!/usr/bin/env bash
# The kill matrix at full size (#15): 100 servers per case, each case one fault — kill -9 of
# nova-api, nova-conductor or nova-compute, RabbitMQ restarted, PostgreSQL restarted — on the
# distributed shape with the Docker driver (tests/tests/kill_matrix.rs). Prints one line per
# case: servers ACTIVE and in ERROR, and how long until every server was settled. CI runs the
# same cases with a few servers each (scripts/test.sh).
#
#   scripts/kill-matrix.sh [SERVERS]      (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
mkdir -p var
export NOVA_TEST_PG_URL="${NOVA_TEST_PG_URL:-postgres://nova:nova@127.0.0.1:5432/postgres}"
export NOVA_TEST_AMQP_URL="${NOVA_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export KILL_MATRIX_BUILDS="${1:-100}"
cargo build -q --workspace --bins
cargo test -q -p e2e --test kill_matrix --no-run
status=0
cargo test -q -p e2e --test kill_matrix -- --nocapture --test-threads=1 2>&1 \
    | tee var/kill-matrix.log | grep -E '^kill-matrix:|^test result|FAILED|panicked' || status=$?
# A failed run's whole log is kept (the next run overwrites var/kill-matrix.log).
if [ "$status" -ne 0 ] || grep -q '^test result: FAILED' var/kill-matrix.log; then
    kept=var/kill-matrix.failed.$(date +%Y%m%dT%H%M%S).log
    cp var/kill-matrix.log "$kept"
    echo "kill-matrix: FAILED; the log is kept in $kept" >&2
    exit 1
fi
