#!/usr/bin/env bash
# The Redfish BMC emulator (sushy-tools) with its libvirt backend, for the bare-metal test that
# deploys onto a real libvirt domain (tests/tests/all/baremetal.rs): in a virtualenv of its own,
# since libvirt-python is built against this machine's libvirt (cached in the user's cache, as
# the project's `.venv` is: `NOVA_SUSHY_LIBVIRT_VENV` elsewhere), and libvirt's `default`
# storage pool, where the emulator keeps the ISOs it is given as virtual media.
# Needs libvirtd up (scripts/libvirt.sh). Prints the emulator's path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${NOVA_SUSHY_LIBVIRT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/nova-sushy-libvirt-venv}"

need=()
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
pkg-config --exists libvirt 2>/dev/null || need+=(libvirt-dev)
python3 -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
    || need+=(python3-dev)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq -o DPkg::Lock::Timeout=300 \
             && apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null; }
fi

if [ ! -x "$venv/bin/sushy-emulator" ] || ! "$venv/bin/python" -c 'import libvirt' 2>/dev/null; then
    mkdir -p "$(dirname "$venv")"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check sushy-tools libvirt-python
fi

if ! virsh -q -c qemu:///system pool-info default >/dev/null 2>&1; then
    mkdir -p /var/lib/libvirt/images
    virsh -q -c qemu:///system pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
    virsh -q -c qemu:///system pool-autostart default >/dev/null
fi
if [ "$(virsh -c qemu:///system pool-info default | awk '/^State:/ {print $2}')" != running ]; then
    virsh -q -c qemu:///system pool-start default >/dev/null
fi
echo "$venv/bin/sushy-emulator"
