#!/usr/bin/env bash
# Gets a machine and a cloud ready for tests/horizon/test_horizon.py (idempotent; a second run
# only looks):
#   - the browser: Debian's chromium and chromium-driver (apt; no browser is downloaded), and
#     selenium in the project's virtualenv `.venv` (the one scripts/horizon.sh puts Horizon in);
#   - the cloud, as admin with the `openstack` CLI of `.venv`: a public image, a flavor, a
#     shared provider network with an IPv4 subnet (Horizon's Launch Instance offers only
#     networks with a subnet).
#
#   OS_CLIENT_CONFIG_FILE=…/clouds.yaml tests/horizon/prepare.sh
#
# The cloud is the `admin` cloud of OS_CLIENT_CONFIG_FILE (the all-in-one writes clouds.yaml in
# its working directory; var/clouds.yaml under scripts/run.sh). Names, the same variables the
# test reads:
#   NOVA_HORIZON_IMAGE    (horizon-image)  made from a 1 MiB raw disk when missing; an image of
#                         that name that exists is used as it is (e.g. `tiny` of
#                         scripts/guest-image.sh --upload, which a vm pool boots)
#   NOVA_HORIZON_FLAVOR   (m1.nano)        made (128 MB, 1 vCPU, 1 GB) when missing
#   NOVA_HORIZON_NETWORK  (horizon-net)    shared, flat, physical network
#                         NOVA_HORIZON_PHYSNET (default: a libvirt/Docker network name the
#                         host has to have for a real pool; the fake driver needs none)
#   NOVA_HORIZON_SUBNET_RANGE (10.77.0.0/24)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

# ---- the browser --------------------------------------------------------------------------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 \
        chromium chromium-driver fonts-liberation >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    echo "prepare.sh: no .venv: run scripts/horizon.sh install first" >&2
    exit 1
fi
if ! .venv/bin/python -c 'import selenium, pytest' 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check 'selenium>=4.20,<5' pytest
fi

# ---- the cloud ----------------------------------------------------------------------------
: "${OS_CLIENT_CONFIG_FILE:?set OS_CLIENT_CONFIG_FILE to the clouds.yaml of the all-in-one}"
export OS_CLOUD=admin
image=${NOVA_HORIZON_IMAGE:-horizon-image}
flavor=${NOVA_HORIZON_FLAVOR:-m1.nano}
network=${NOVA_HORIZON_NETWORK:-horizon-net}
physnet=${NOVA_HORIZON_PHYSNET:-horizon-phys}
range=${NOVA_HORIZON_SUBNET_RANGE:-10.77.0.0/24}
cli() { "$root/.venv/bin/openstack" "$@"; }

if ! cli image show -f value -c id "$image" >/dev/null 2>&1; then
    disk=$(mktemp)
    truncate -s 1M "$disk"
    cli image create --public --disk-format raw --container-format bare --file "$disk" \
        -f value -c id "$image" >/dev/null
    rm -f "$disk"
fi
if ! cli flavor show -f value -c id "$flavor" >/dev/null 2>&1; then
    cli flavor create --ram 128 --vcpus 1 --disk 1 --public -f value -c id "$flavor" >/dev/null
fi
if ! cli network show -f value -c id "$network" >/dev/null 2>&1; then
    cli network create --share --provider-network-type flat \
        --provider-physical-network "$physnet" -f value -c id "$network" >/dev/null
fi
subnets=$(cli subnet list --network "$network" -f value -c Subnet | tr '\n' ' ')
if [ -z "$subnets" ]; then
    subnets=$(cli subnet create --network "$network" --subnet-range "$range" \
        -f value -c cidr "$network-subnet")
fi
echo "prepare.sh: image $image, flavor $flavor, network $network (subnets: ${subnets% })"
