#!/usr/bin/env bash
# Installs (from Debian's packages) and starts the services the tests and the distributed mode
# need: PostgreSQL, RabbitMQ, the Docker Engine (with busybox-static, from which the tests
# build their container image) and libvirt with QEMU (scripts/libvirt.sh); and what the build
# needs beyond Rust (OpenSSL's and libvirt's headers). Idempotent: what is installed and running is left alone.
# Creates the PostgreSQL role `nova` (password `nova`, may create databases).
set -euo pipefail

need=()
command -v rabbitmq-server >/dev/null 2>&1 || need+=(rabbitmq-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
[ -x /bin/busybox ] || need+=(busybox-static)
# The build: the image service hashes uploads with OpenSSL's md5 and sha512.
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# The libvirt driver links libvirt's C library.
dpkg -s libvirt-dev >/dev/null 2>&1 || need+=(libvirt-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "services: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi

# PostgreSQL: the packaged cluster, started without systemd.
if ! pg_lsclusters -h 2>/dev/null | grep -q online; then
    cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
    if [ -z "$cluster" ]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
        pg_createcluster "$version" main >/dev/null
        cluster="$version main"
    fi
    echo "services: starting PostgreSQL $cluster"
    pg_ctlcluster $cluster start
fi
for _ in $(seq 1 50); do
    runuser -u postgres -- psql -qAtc 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
done
if ! runuser -u postgres -- psql -qAtc "SELECT 1 FROM pg_roles WHERE rolname = 'nova'" | grep -q 1; then
    runuser -u postgres -- psql -qc "CREATE ROLE nova LOGIN PASSWORD 'nova' CREATEDB" >/dev/null
fi
# The nova role by password over the Unix socket too (a local database is cheaper to reach
# there than over loopback TCP; bench-api's README figures use both).
hba=$(runuser -u postgres -- psql -qAtc 'SHOW hba_file')
if ! grep -Eq '^local +all +nova ' "$hba"; then
    sed -i '0,/^local/s//local   all             nova                                    scram-sha-256\n&/' "$hba"
    runuser -u postgres -- psql -qAtc 'SELECT pg_reload_conf()' >/dev/null
fi

# RabbitMQ: started through its init script (no systemd here).
if ! rabbitmqctl -q status >/dev/null 2>&1; then
    echo "services: starting RabbitMQ"
    service rabbitmq-server start >/dev/null 2>&1 || (rabbitmq-server -detached && sleep 2)
fi
rabbitmqctl -q await_startup --timeout 120 >/dev/null

"$(dirname "$0")/docker.sh"
echo "services: PostgreSQL, RabbitMQ and Docker are up"

# libvirt with QEMU (scripts/libvirt.sh), unless the caller starts it itself (scripts/test.sh
# does, while the build runs).
if [ -z "${NOVA_LIBVIRT_LATER:-}" ]; then
    "$(dirname "$0")/libvirt.sh"
fi
