#!/usr/bin/env bash
# Runs every check and test on a fresh machine: installs and starts PostgreSQL, RabbitMQ,
# Docker (scripts/services.sh) and libvirt with QEMU (scripts/libvirt.sh), checks formatting
# and lints, then runs all tests against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
# Where the time goes, in the log: each phase's end, in seconds from the start.
phase() { echo "test.sh: $1 done at $((SECONDS - started)) s"; }

NOVA_LIBVIRT_LATER=1 scripts/services.sh
phase services
# libvirt, QEMU and the test guest (Debian's kernel, a busybox initramfs, and the ISO of both)
# are installed, started and built while the build runs, and so is the Redfish BMC emulator
# with its libvirt backend (scripts/sushy-libvirt.sh): most of it is waiting on downloads and
# dpkg.
libvirt_log=$(mktemp)
# In a process group of its own, so that an early exit (fmt, clippy, the build) stops all of
# it, apt and dpkg included.
mkdir -p var
rm -f var/sushy-libvirt.path
setsid bash -c 'scripts/libvirt.sh && scripts/guest-image.sh var/guest \
    && scripts/sushy-libvirt.sh >var/sushy-libvirt.path' >"$libvirt_log" 2>&1 &
libvirt_job=$!
trap '[ -z "${libvirt_job:-}" ] || kill -- "-$libvirt_job" 2>/dev/null || true; rm -f "$libvirt_log"' EXIT

# A clean checkout builds once: incremental state would only take disk (over a GB) that CI's
# machine may not have. And it links with mold (Debian's), which links the test and service
# binaries in a fraction of the time of the system linker; without it, the default linker.
# (Dependencies are unoptimised except those the tests spend CPU in: Cargo.toml's profile.)
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
    command -v mold >/dev/null 2>&1 \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 mold >/dev/null 2>&1 \
        || true
    if command -v mold >/dev/null 2>&1; then
        export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-fuse-ld=mold"
    fi
fi
export NOVA_TEST_PG_URL="${NOVA_TEST_PG_URL:-postgres://nova:nova@127.0.0.1:5432/postgres}"
export NOVA_TEST_AMQP_URL="${NOVA_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"

# Databases left by earlier runs (each test makes its own), dropped while the build runs (each
# drop waits on a checkpoint: a run leaves some eighty, which took up to a minute in line).
runuser -u postgres -- psql -qAtc "SELECT datname FROM pg_database WHERE datname LIKE 'nova_test_%'" \
    | while read -r db; do runuser -u postgres -- psql -qc "DROP DATABASE IF EXISTS $db" >/dev/null; done &
dropping=$!

rustup component list --installed 2>/dev/null | grep rustfmt >/dev/null && cargo fmt --all -- --check
phase "fmt"

# The compute agent and the drivers never touch the database: their dependency graph has no
# database layer in it.
for crate in compute-agent drivers; do
    if cargo tree -q -e normal -p "$crate" | grep -E '\b(sqlx|nova-db) v'; then
        echo "$crate depends on the database layer" >&2
        exit 1
    fi
done

# The real OpenStack clients (tests/tests/all/identity.rs, images.rs; python-glanceclient, which
# Horizon uses), tempest, whose response
# schemas check every Compute API response the tests see (tests/schema/validate.py), and moto,
# whose server mode is the S3-compatible object store of the image store's S3 test, and
# schemathesis (the fuzzing), in a virtualenv of the project's (scripts/lib/venv.sh: a clean
# clone links it to one in the user's cache).
. scripts/lib/venv.sh
ensure_venv
# schemathesis for the short fuzzing, at the version scripts/fuzz.sh pins.
schemathesis=$(sed -n 's/^SCHEMATHESIS_VERSION=//p' scripts/fuzz.sh)
# python-ironicclient gives the CLI its `openstack baremetal` commands, and sushy-tools is the
# Redfish BMC emulator the bare-metal tests enrol machines of (tests/src/bmc.rs).
if [ ! -x .venv/bin/openstack ] || [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/glance ] \
    || [ ! -x .venv/bin/sushy-emulator ] \
    || ! .venv/bin/python -c 'import tempest.lib, ironicclient' 2>/dev/null \
    || [ "$(.venv/bin/schemathesis --version 2>/dev/null | awk '{print $NF}')" != "$schemathesis" ]; then
    .venv/bin/pip install -q --disable-pip-version-check python-openstackclient \
        python-glanceclient python-ironicclient sushy-tools tempest 'moto[server]' \
        "schemathesis==$schemathesis"
fi
export NOVA_TEST_OPENSTACK="$PWD/.venv/bin/openstack"
export NOVA_TEST_PYTHON="$PWD/.venv/bin/python"
export NOVA_TEST_MOTO="$PWD/.venv/bin/moto_server"
export NOVA_TEST_SUSHY="$PWD/.venv/bin/sushy-emulator"
phase "Python clients"

# Clippy's lints run inside the build, as `cargo clippy` runs them (clippy-driver wraps rustc
# for the workspace's crates): the dependencies are compiled once, for the build, instead of a
# second time for a separate check. `-D warnings` makes every lint and warning of the
# workspace's crates an error (cargo caps the dependencies' lints). The same as
# `cargo clippy --all-targets -- -D warnings`, without its separate check of every dependency.
if rustup component list --installed 2>/dev/null | grep clippy >/dev/null; then
    RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver)"
    export RUSTC_WORKSPACE_WRAPPER
    export RUSTFLAGS="${RUSTFLAGS:-} -D warnings"
fi
# The service binaries, which tests run as processes (tests/tests/all/processes.rs, the kill
# matrix, Tempest and the fuzzing on the debug all-in-one), and the benchmarks (built here to
# be linted).
cargo build -q --bins -p api-server -p conductor -p compute-agent -p allinone -p e2e-bench
phase "build of the binaries"

# Tempest's representative part (tests/tempest/smoke.txt) against an all-in-one of this tree,
# on the debug build made above; the whole Tempest run is scripts/tempest.sh, its figures in
# the README. Beside it, on an all-in-one of its own, the short version of the fuzzing
# (scripts/fuzz.sh --short: one round of a few hundred schemathesis requests, no 5xx); the
# whole one is scripts/fuzz.sh, its figures in the README too. Both start now, while cargo
# builds the test binaries (its last steps, the big test binary and its link, leave a core
# idle), and run on into the tests: each all-in-one has its own SQLite, in-process bus and
# port, so nothing of the tests' services (the kill matrix restarts PostgreSQL, the broker
# test RabbitMQ) is theirs.
tempest_log=$(mktemp)
fuzz_log=$(mktemp)
horizon_log=$(mktemp)
# (A background job's SIGINT is ignored: the trap ends them with SIGTERM, which their own traps
# turn into their clean-up.)
trap '[ -z "${libvirt_job:-}" ] || kill -- "-$libvirt_job" 2>/dev/null || true
      [ -z "${tempest:-}" ] || kill -- "-$tempest" 2>/dev/null || true
      [ -z "${fuzz:-}" ] || kill -- "-$fuzz" 2>/dev/null || true
      [ -z "${horizon:-}" ] || kill -- "-$horizon" 2>/dev/null || true
      [ -z "${dropping:-}" ] || kill "$dropping" 2>/dev/null || true
      [ -z "${restarts:-}" ] || kill -- "-$restarts" 2>/dev/null || true
      [ -z "${drivers_job:-}" ] || kill "$drivers_job" 2>/dev/null || true
      rm -f "$libvirt_log" "$tempest_log" "$fuzz_log" "$horizon_log" "${log:-}" "${restarts_log:-}" \
          "${build_log:-}" "${drivers_log:-}"' EXIT
# Each in a process group of its own, so that an early exit stops all of it (stestr's workers,
# a CLI call, schemathesis), not only the script.
NOVA_AIO_BUILT=1 setsid scripts/tempest.sh --smoke --debug >"$tempest_log" 2>&1 &
tempest=$!
NOVA_AIO_BUILT=1 setsid scripts/fuzz.sh --short --debug >"$fuzz_log" 2>&1 &
fuzz=$!

# The kill matrix and the broker's restart (tests/tests/kill_matrix.rs, broker_restart.rs)
# restart the PostgreSQL and RabbitMQ that the other tests share, so they run apart from them:
# built first and run (one after the other, mostly waiting on restarts and builds) while cargo
# builds the other test binaries, which touches neither service. Their binaries are run
# directly, as cargo runs them (from the package's directory), so that cargo's build lock is
# the build's alone.
restarts_log=$(mktemp)
cargo test -p e2e --test kill_matrix --test broker_restart --no-run >"$restarts_log" 2>&1 \
    || { cat "$restarts_log" >&2; echo "test.sh: the kill matrix and the broker test were not built" >&2; exit 1; }
restart_tests=$(sed -n 's/.*Executable .* (\(.*\))$/\1/p' "$restarts_log")
[ "$(echo "$restart_tests" | grep -c .)" -eq 2 ] || { cat "$restarts_log" >&2; echo "test.sh: the two restart test binaries not found" >&2; exit 1; }
restart_paths=()
for t in $restart_tests; do
    case "$t" in /*) restart_paths+=("$t") ;; *) restart_paths+=("$PWD/$t") ;; esac
done
setsid bash -c 'cd tests && status=0
    for t in "$@"; do echo "     Running $t"; "$t" --test-threads=4 || status=1; done
    exit $status' restarts "${restart_paths[@]}" >"$restarts_log" 2>&1 &
restarts=$!
phase "the kill matrix and the broker test started"
build_log=$(mktemp)
cargo test --workspace --exclude e2e-bench --tests --no-run >"$build_log" 2>&1 \
    || { cat "$build_log" >&2; exit 1; }
# The drivers' own tests (their Redfish tests mostly wait on the BMC emulator's power changes,
# a few seconds each) run beside the others rather than before them: cargo runs test binaries
# one after another. Their binary as the build above made it (asking cargo for it with
# `-p drivers` alone would unify features differently and build it again).
drivers_tests=$(sed -n 's/.*Executable unittests src\/lib.rs (\(target\/debug\/deps\/drivers-[0-9a-f]*\))$/\1/p' "$build_log")
rm -f "$build_log"
[ -n "$drivers_tests" ] || { echo "test.sh: the drivers' test binary not found" >&2; exit 1; }
phase "build (with clippy's lints)"
# And Horizon in headless chromium (scripts/horizon-test.sh: its own all-in-one, Horizon, the
# browser test of tests/horizon/test_horizon.py), once the build is done: beside the compile,
# which keeps both cores busy, the browser made it longer by as much as the test takes; beside
# the tests, which mostly wait, it costs less.
NOVA_AIO_BUILT=1 setsid scripts/horizon-test.sh --debug >"$horizon_log" 2>&1 &
horizon=$!
libvirt_status=0
wait "$libvirt_job" || libvirt_status=$?
libvirt_job=
if [ "$libvirt_status" -ne 0 ]; then
    cat "$libvirt_log" >&2
    echo "test.sh: libvirt or the test guest could not be set up" >&2
    exit 1
fi
cat "$libvirt_log"
rm -f "$libvirt_log"
NOVA_TEST_SUSHY_LIBVIRT="$(cat var/sushy-libvirt.path)"
export NOVA_TEST_SUSHY_LIBVIRT
phase "libvirt and the test guest"

# (A database that could not be dropped, say one a stray process of an earlier run still has
# open, only takes disk: the tests make their own.)
wait "$dropping" || echo "test.sh: some old test databases could not be dropped" >&2
dropping=
# The restarts are over before the other tests use the services.
restarts_status=0
wait "$restarts" || restarts_status=$?
restarts=
phase "the kill matrix and the broker test"
# cargo runs test binaries one after another (two side by side take no less time on two
# cores).
log=$(mktemp)
cat "$restarts_log" >"$log"
cat "$restarts_log"
status=0
[ "$restarts_status" -eq 0 ] || status=1
# The test targets only: no doc tests (the docs have no examples, and each rustdoc run costs
# seconds) and no test harness for the binaries (`test = false`: they have no tests).
# Four test threads on two cores: most tests wait (on services, processes, the CLI), and four
# at a time take about a third less time than two.
# (The two that ran during the build are skipped by name: cargo has no way to leave a test
# binary out, and `--lib` would build the harness of every library, `test = false` or not.)
drivers_log=$(mktemp)
(cd drivers && "../$drivers_tests" --test-threads=4) >"$drivers_log" 2>&1 &
drivers_job=$!
cargo test --workspace --exclude e2e-bench --exclude drivers --tests --no-fail-fast -- \
    --test-threads=4 --skip kill_9_of_the_ --skip _restarted_while_servers_build \
    --skip the_service_rides_through_a_broker_restart 2>&1 | tee -a "$log" || status=$?
drivers_status=0
wait "$drivers_job" || drivers_status=$?
drivers_job=
echo "     Running unittests src/lib.rs ($drivers_tests), beside the others"
cat "$drivers_log" | tee -a "$log"
rm -f "$drivers_log"
[ "$drivers_status" -eq 0 ] || status=1
# One closing line for the whole run (the last of cargo's own lines is only the last test
# binary's).
phase tests

# Tempest's smoke run and the short fuzzing, started after the binaries' build.
tempest_status=0
wait "$tempest" || tempest_status=$?
tempest=
cat "$tempest_log"
[ "$tempest_status" -eq 0 ] || status=1
phase "tempest smoke"
fuzz_status=0
wait "$fuzz" || fuzz_status=$?
fuzz=
cat "$fuzz_log"
[ "$fuzz_status" -eq 0 ] || status=1
phase "fuzzing (short)"

horizon_status=0
wait "$horizon" || horizon_status=$?
horizon=
cat "$horizon_log"
[ "$horizon_status" -eq 0 ] || status=1
phase "horizon (browser)"

awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
echo "tempest smoke: $(grep -E ' - (Passed|Failed|Skipped)' var/tempest/results.txt | tr -d ' -' | paste -sd ' ')"
grep '^fuzz summary:' "$fuzz_log" || echo "fuzz summary: none (the short fuzzing failed before its summary)"
exit "$status"
