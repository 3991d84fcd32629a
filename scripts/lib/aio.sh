# Sourced by the scripts that run an all-in-one of this tree for a client (scripts/fuzz.sh,
# scripts/tempest.sh).
#
#   build_aio PROFILE
#
# Builds target/PROFILE/nova-aio, unless NOVA_AIO_BUILT is set: scripts/test.sh has built it
# and runs these scripts while cargo builds the tests (a second cargo would wait for the first).
#
#   start_aio DIR PORT ADMIN_PASSWORD DEMO_PASSWORD PROFILE
#
# Starts target/PROFILE/nova-aio in the background with its state in DIR/aio (SQLite, the
# in-process bus, the fake driver, whatever pools the machine has: these runs are about the
# API) on 127.0.0.1:PORT, its log in DIR/aio.log, with the short
# build timeout and agent intervals a test run wants; sets `aio` to its pid.
start_aio() {
    local dir=$1 port=$2 admin_password=$3 demo_password=$4 profile=$5
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    mkdir -p "$dir/aio"
    (
        cd "$dir/aio"
        NOVA__API__BIND=127.0.0.1:$port \
            NOVA__AUTH__ADMIN_PASSWORD=$admin_password \
            NOVA__AUTH__DEMO_PASSWORD=$demo_password \
            NOVA__CONDUCTOR__BUILD_TIMEOUT_S=60 \
            NOVA__AGENT__DRIVER=fake \
            NOVA__AGENT__HEARTBEAT_INTERVAL_MS=1000 \
            NOVA__AGENT__SYNC_INTERVAL_MS=1000 \
            RUST_LOG=${RUST_LOG:-warn} \
            exec "$root/target/$profile/nova-aio" "$root/etc/all-in-one.toml"
    ) >"$dir/aio.log" 2>&1 &
    aio=$!
}

build_aio() {
    local profile=$1
    [ -z "${NOVA_AIO_BUILT:-}" ] || return 0
    if [ "$profile" = release ]; then
        cargo build -q --release -p allinone --bin nova-aio
    else
        cargo build -q -p allinone --bin nova-aio
    fi
}
