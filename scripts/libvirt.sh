#!/usr/bin/env bash
# Installs (from Debian's packages) and starts libvirt with QEMU for the libvirt driver:
# libvirtd and virtlogd (started by hand: no systemd here), libvirt's `default` NAT network
# (dnsmasq), qemu-img and genisoimage (overlays and config drives). Idempotent: what is
# installed and running is left alone.
#
# QEMU runs as root here (qemu.conf `user`/`group`), as on a development all-in-one: its
# instance directories and image cache are then wherever the service's state is (a home
# directory, a test's temporary directory). A production host keeps libvirt's `libvirt-qemu`
# user and puts `agent.libvirt.instances_path` and `agent.images.cache_dir` where that user
# can read them.
#
# With --check it only says whether libvirtd answers (exit 0) or why not.
set -euo pipefail

if [ "${1:-}" = "--check" ]; then
    if ! command -v virsh >/dev/null 2>&1; then
        echo "libvirt is not installed (scripts/libvirt.sh installs it)"; exit 1
    fi
    virsh -q -c qemu:///system version >/dev/null 2>&1 \
        || { echo "libvirtd does not answer on qemu:///system (scripts/libvirt.sh starts it)"; exit 1; }
    exit 0
fi

need=()
command -v libvirtd >/dev/null 2>&1 || need+=(libvirt-daemon-system)
dpkg -s libvirt-dev >/dev/null 2>&1 || need+=(libvirt-dev)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v genisoimage >/dev/null 2>&1 || need+=(genisoimage)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    echo "libvirt: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq -o DPkg::Lock::Timeout=300 \
             && apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null; }
fi

conf=/etc/libvirt/qemu.conf
if ! grep -q '^user = "root"' "$conf"; then
    printf '\n# scripts/libvirt.sh: QEMU as root on this development host.\nuser = "root"\ngroup = "root"\n' >>"$conf"
    restart=1
fi
# Without udev, /dev/kvm stays root's alone; libvirt then finds KVM gone at every start and
# probes QEMU again (tens of seconds). The group udev would give it:
if [ -e /dev/kvm ] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm && chmod 660 /dev/kvm || true
fi

if [ "${restart:-0}" = 1 ] && pgrep -x libvirtd >/dev/null; then
    pkill -x libvirtd || true
    for _ in $(seq 1 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.1; done
fi
pgrep -x virtlogd >/dev/null || virtlogd -d
if ! virsh -q -c qemu:///system version >/dev/null 2>&1; then
    echo "libvirt: starting libvirtd"
    pgrep -x libvirtd >/dev/null || libvirtd -d
    for _ in $(seq 1 100); do virsh -q -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
    virsh -q -c qemu:///system version >/dev/null 2>&1 \
        || { echo "libvirt: libvirtd did not start" >&2; exit 1; }
fi
# The `default` NAT network, which servers that ask for `auto` join: defined from libvirt's own
# file when missing, and started. A machine where it cannot start (no iptables, no bridge)
# still runs guests without NICs; the reason is shown.
if ! virsh -q -c qemu:///system net-info default >/dev/null 2>&1 \
    && [ -f /usr/share/libvirt/networks/default.xml ]; then
    virsh -q -c qemu:///system net-define /usr/share/libvirt/networks/default.xml >/dev/null || true
fi
if ! [[ "$(virsh -q -c qemu:///system net-info default 2>/dev/null)" =~ Active:\ +yes ]]; then
    virsh -q -c qemu:///system net-start default >/dev/null \
        || echo "libvirt: the default network did not start; servers asking for 'auto' will fail (set agent.libvirt.network = \"none\")" >&2
fi
echo "libvirt: libvirtd and virtlogd are up ($(virsh -q -c qemu:///system version | sed -n 's/^Running hypervisor: //p'))"
