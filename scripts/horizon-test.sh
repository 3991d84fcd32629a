#!/usr/bin/env bash
# The Horizon browser test (tests/horizon/test_horizon.py) against an all-in-one of this tree:
# starts the all-in-one (its own state, port and SQLite; the fake driver: the test is about the
# dashboard and the APIs it drives), Horizon on a port of its own (scripts/horizon.sh, which
# installs it), gets the browser and the test's image, flavor and network ready
# (tests/horizon/prepare.sh), runs the test in headless chromium, and stops everything.
#
#   scripts/horizon-test.sh [--debug]     (--debug: the debug build of nova-aio)
#
# Screenshots and page sources of every step are kept in var/horizon-test/shots when a step
# fails; Horizon's log (every API request it made) is var/horizon-test/horizon/horizon.log,
# the all-in-one's var/horizon-test/aio.log.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. scripts/lib/aio.sh
profile=release
[ "${1:-}" = --debug ] && profile=debug

work=$root/var/horizon-test
rm -rf "$work"
mkdir -p "$work"
port=${NOVA_HORIZON_AIO_PORT:-18795}
horizon_port=${NOVA_HORIZON_PORT:-18796}

scripts/horizon.sh install >/dev/null
build_aio "$profile"
start_aio "$work" "$port" horizon-admin horizon-demo "$profile"
# Its log with every API request Horizon makes (the test's servers only).
export NOVA_HORIZON_STATE=$work/horizon NOVA_HORIZON_BIND=127.0.0.1:$horizon_port NOVA_HORIZON_LOG_HTTP=1
trap 'scripts/horizon.sh stop >/dev/null 2>&1 || true; kill $aio 2>/dev/null; wait $aio 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port/identity/v3" 2>/dev/null && break
    kill -0 $aio 2>/dev/null || { cat "$work/aio.log" >&2; exit 1; }
    sleep 0.2
done
scripts/horizon.sh start "http://127.0.0.1:$port/identity/v3" >/dev/null
export OS_CLIENT_CONFIG_FILE=$work/aio/clouds.yaml
tests/horizon/prepare.sh >/dev/null
export NOVA_HORIZON_URL=http://127.0.0.1:$horizon_port/ NOVA_HORIZON_SHOTS=$work/shots
status=0
.venv/bin/pytest -q -p no:cacheprovider tests/horizon/test_horizon.py || status=$?
if [ "$status" -ne 0 ]; then
    echo "horizon-test.sh: failed; screenshots in $work/shots, Horizon's log $work/horizon/horizon.log" >&2
fi
exit "$status"
