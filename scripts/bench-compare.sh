#!/usr/bin/env bash
# Before and after, on this machine, in the same minutes: builds the boot and read benchmarks
# (bench-boot, bench-api) of two revisions and runs them alternately, BEFORE then AFTER, ROUNDS
# times, so that a slow hour weighs on both alike. Prints each run's figures.
#
#   scripts/bench-compare.sh BEFORE [AFTER (default HEAD)] [ROUNDS (default 2)]
#
# Each revision is checked out in a worktree under var/bench-compare/ and built there with
# its own target directory (a release build each: minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: scripts/bench-compare.sh BEFORE [AFTER] [ROUNDS]}
after=${2:-HEAD}
rounds=${3:-2}
scripts/services.sh
export NOVA_TEST_PG_URL="${NOVA_TEST_PG_URL:-postgres://nova:nova@127.0.0.1:5432/postgres}"
export NOVA_TEST_AMQP_URL="${NOVA_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
work=var/bench-compare
mkdir -p "$work"
for side in before after; do
    rev=$([ "$side" = before ] && echo "$before" || echo "$after")
    commit=$(git rev-parse --verify "$rev^{commit}")
    if [ -d "$work/$side" ]; then
        git -C "$work/$side" checkout -q --detach "$commit"
    else
        git worktree add -q --detach "$work/$side" "$commit"
    fi
    # The benchmarks' client checks responses with tempest's schemas, from the project's venv.
    ln -sfn "$PWD/.venv" "$work/$side/.venv"
    echo "bench-compare: building $side ($(git log -1 --format='%h %s' "$commit" | cut -c1-72))"
    # The benchmarks' package: `e2e-bench` (tests/bench) since it moved out of `e2e`.
    package=e2e-bench
    [ -e "$work/$side/tests/bench/Cargo.toml" ] || package=e2e
    (cd "$work/$side" && CARGO_TARGET_DIR="$PWD/../target-$side" \
        cargo build -q --release -p "$package" --bin bench-boot --bin bench-api)
done
for round in $(seq 1 "$rounds"); do
    for side in before after; do
        bin="$work/target-$side/release"
        echo "== round $round, $side"
        "$bin/bench-boot" --servers 1000 --rate 100 2>/dev/null | grep -E 'all ACTIVE|POST -> ACTIVE' | sed 's/^/   100 POST\/s: /'
        "$bin/bench-boot" --servers 1000 2>/dev/null | grep -E 'throughput|POST -> ACTIVE' | sed 's/^/   burst: /'
        "$bin/bench-api" --servers 2000 --images 2000 --seconds 5 2>/dev/null | grep -E 'req/s' | sed 's/^/   /'
    done
done
