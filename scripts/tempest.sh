#!/usr/bin/env bash
# Runs Tempest's API tests against an all-in-one of this tree (SQLite, the in-process bus, the
# fake driver, Keystone tokens issued here), started by this script on a port of its own.
#
#   scripts/tempest.sh [--smoke] [--debug] [REGEX…]
#
# Without arguments: tempest.api.compute, tempest.api.identity (v3), tempest.api.image.v2 and
# tempest.api.network. REGEX…: only the tests they match. --smoke: the representative part CI
# runs (tests/tempest/smoke.txt, one run of all its lines). --debug: the debug build that
# scripts/test.sh has already made, instead of a release build. Features this deployment does not have are turned off with
# Tempest's own feature flags (tests/tempest/tempest.conf.in), never with a list of failing
# tests to exclude. Results: var/tempest/results.txt (per suite: passed, failed, skipped) and
# the subunit stream in var/tempest/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/aio.sh
root=$PWD

smoke=
profile=release
regexes=()
for a in "$@"; do
    case "$a" in
        --smoke) smoke=1 ;;
        --debug) profile=debug ;;
        *) regexes+=("$a") ;;
    esac
done
if [ -n "$smoke" ]; then
    # One run for all of it: each tempest run pays for discovery and its own set-up.
    regexes=("$(grep -v '^\s*\(#\|$\)' tests/tempest/smoke.txt | paste -sd '|')")
elif [ ${#regexes[@]} -eq 0 ]; then
    regexes=('^tempest\.api\.compute\.' '^tempest\.api\.identity\.' '^tempest\.api\.image\.v2\.' '^tempest\.api\.network\.')
fi

# Tempest in the project's virtualenv (as scripts/test.sh makes it).
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv 2>/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
    }
fi
if [ ! -x .venv/bin/tempest ] || [ ! -x .venv/bin/openstack ]; then
    .venv/bin/pip install -q --disable-pip-version-check python-openstackclient tempest
fi
if ! dpkg -s libssl-dev >/dev/null 2>&1 || ! command -v pkg-config >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi

work=$root/var/tempest
rm -rf "$work"
mkdir -p "$work/aio"
port=${TEMPEST_PORT:-18774}
url=http://127.0.0.1:$port
admin_password=tempest-admin

build_aio "$profile"
start_aio "$work" "$port" "$admin_password" "tempest-demo" "$profile"
trap 'kill $aio 2>/dev/null; wait $aio 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    .venv/bin/python -c "import urllib.request as u; u.urlopen('$url/identity/v3', timeout=2)" \
        >/dev/null 2>&1 && break
    kill -0 $aio 2>/dev/null || { cat "$work/aio.log" >&2; exit 1; }
    sleep 0.2
done

# Tempest's own images and flavors, made here as an operator would.
export OS_CLIENT_CONFIG_FILE=$work/aio/clouds.yaml OS_CLOUD=admin
os() { .venv/bin/openstack "$@"; }
head -c 1048576 /dev/urandom >"$work/disk.img"
image_ref=$(os image create --public --disk-format qcow2 --container-format bare \
    --file "$work/disk.img" -f value -c id tempest-image)
image_ref_alt=$(os image create --public --disk-format qcow2 --container-format bare \
    --file "$work/disk.img" -f value -c id tempest-image-alt)
flavor_ref=$(os flavor create --ram 128 --vcpus 1 --disk 1 -f value -c id m1.tempest)
flavor_ref_alt=$(os flavor create --ram 192 --vcpus 1 --disk 1 -f value -c id m1.tempest-alt)
# The network Tempest's servers are on (a shared provider network; the fake driver boots
# nothing, but reports an address on it), with a subnet, so that its ports have addresses and
# take security groups (Nova refuses a group on a port without).
os network create --share tempest-net >/dev/null
os subnet create --network tempest-net --subnet-range 10.254.0.0/16 tempest-subnet >/dev/null

sed -e "s|@URL@|$url|g" \
    -e "s|@ADMIN_PASSWORD@|$admin_password|g" \
    -e "s|@IMAGE_REF@|$image_ref|g" \
    -e "s|@IMAGE_REF_ALT@|$image_ref_alt|g" \
    -e "s|@FLAVOR_REF@|$flavor_ref|g" \
    -e "s|@FLAVOR_REF_ALT@|$flavor_ref_alt|g" \
    -e "s|@WORK@|$work|g" \
    tests/tempest/tempest.conf.in >"$work/tempest.conf"

cd "$work"
"$root/.venv/bin/tempest" init --workspace-path "$work/workspace.yaml" --name this-tree run >/dev/null
cp "$work/tempest.conf" run/etc/tempest.conf
cd run
status=0
# One regex per run: tempest takes a single --regex.
: >"$work/results.txt"
for r in "${regexes[@]}"; do
    echo "== $r" | tee -a "$work/results.txt"
    "$root/.venv/bin/tempest" run --concurrency "${TEMPEST_CONCURRENCY:-2}" --regex "$r" \
        >"$work/last.log" 2>&1 || status=1
    sed -n '/^Totals$/,/^Worker Balance$/p' "$work/last.log" | grep -E ' - |Ran:' | tee -a "$work/results.txt"
    grep -E '^\{[0-9]+\} .* \.\.\. FAILED' "$work/last.log" | tee -a "$work/results.txt" || true
    cp "$work/last.log" "$work/$(echo "$r" | tr -c 'a-zA-Z0-9.' '_' | cut -c1-100).log"
done
exit "$status"
