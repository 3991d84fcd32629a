#!/usr/bin/env bash
# Builds a tiny bootable guest from what is on the machine or in Debian's packages (no other
# download): Debian's kernel (linux-image-amd64, extracted, not installed) and a busybox
# initramfs. Writes into DIR (default var/guest):
#   kernel       the kernel, uncompressed (its ELF, which QEMU boots through its PVH entry;
#                upload as disk_format=aki)
#   vmlinuz      the same kernel as Debian ships it (a bzImage), for the ISO
#   ramdisk      the initramfs (disk_format=ari)
#   disk.qcow2   an empty 64 MiB qcow2 root disk (upload as qcow2 with kernel_id, ramdisk_id
#                and os_command_line, so that Nova boots the kernel directly)
#   boot.iso     the kernel and the initramfs on a BIOS-bootable ISO (isolinux, serial console):
#                what a bare-metal machine boots from its BMC's virtual media
# The guest prints NOVA-TEST-GUEST-UP on its serial console once up, answers the ACPI power
# button (a graceful stop or a soft reboot) and takes an address by DHCP when it has a NIC.
# Booted with `nova.selfoff` on its command line it powers itself off a second after the marker.
#
# With --upload it also uploads the three as public images named cirros-like `tiny-*`, with the
# `openstack` CLI of the environment (OS_CLOUD or OS_* variables), and prints the disk image's id.
#
# Usage: scripts/guest-image.sh [--upload] [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
upload=0
if [ "${1:-}" = "--upload" ]; then upload=1; shift; fi
out="${1:-var/guest}"
mkdir -p "$out"
out=$(cd "$out" && pwd)

need=()
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v genisoimage >/dev/null 2>&1 || need+=(genisoimage)
[ -e /usr/lib/ISOLINUX/isolinux.bin ] || need+=(isolinux)
[ -e /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need+=(syslinux-common)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq -o DPkg::Lock::Timeout=300 \
             && apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null; }
fi

# One build at a time (tests may ask for the guest at once).
exec 9>"$out/.lock"
flock 9

# Bumped whenever what the guest is made of changes: a guest built by an older script is
# built again.
version=3
if [ ! -s "$out/kernel" ] || [ ! -s "$out/vmlinuz" ] || [ ! -s "$out/ramdisk" ] \
    || [ ! -s "$out/disk.qcow2" ] \
    || [ "$(cat "$out/.version" 2>/dev/null)" != "$version" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # The kernel package linux-image-amd64 points at, taken apart rather than installed: an
    # install would build an initramfs for this machine, which takes long and is not needed.
    kernel_version() {
        apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-//p' | head -n1 || true
    }
    kver=$(kernel_version)
    if [ -z "$kver" ]; then
        apt-get update -qq -o DPkg::Lock::Timeout=300
        kver=$(kernel_version)
    fi
    [ -n "$kver" ] || { echo "guest-image: no linux-image-amd64 in the package lists" >&2; exit 1; }
    (cd "$work" && apt-get download -q "linux-image-$kver" >/dev/null 2>&1) \
        || { apt-get update -qq && (cd "$work" && apt-get download -q "linux-image-$kver" >/dev/null); }
    dpkg-deb --fsys-tarfile "$work"/linux-image-*.deb \
        | tar -x -C "$work" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/acpi/button.ko*' \
            './lib/modules/*/kernel/drivers/input/evdev.ko*' \
            './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/net/virtio_net.ko*' \
            './lib/modules/*/kernel/drivers/net/net_failover.ko*' './lib/modules/*/kernel/net/core/failover.ko*'
    cp "$work"/boot/vmlinuz-* "$out/vmlinuz.new"
    # The kernel's own ELF, out of the bzImage's xz payload: QEMU boots it through its PVH
    # entry, with no decompression in the guest, which under TCG took most of a boot (7.9 s
    # to the guest's marker here; 3.0 s uncompressed). The ISO keeps the bzImage (isolinux
    # boots nothing else); a kernel of another compression is booted as it is. (xz reads the
    # payload from a process substitution: it stops at the stream's end, and a pipe's writer
    # would then fail the pipeline.)
    off=$(LC_ALL=C grep -abo -m1 $'\xfd7zXZ' "$out/vmlinuz.new" | cut -d: -f1 || true)
    off=${off%%$'\n'*}
    if [ -n "$off" ] \
        && xz -dc --single-stream <(tail -c +$((off + 1)) "$out/vmlinuz.new") >"$out/kernel.new" 2>/dev/null \
        && [ "$(head -c 4 "$out/kernel.new" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
        echo "guest-image: the kernel's ELF extracted ($(($(stat -c %s "$out/kernel.new") / 1048576)) MiB)" >&2
    else
        cp "$out/vmlinuz.new" "$out/kernel.new"
    fi

    root="$work/root"
    mkdir -p "$root"/{bin,dev,proc,sys,etc,lib/mod,tmp}
    cp /bin/busybox "$root/bin/"
    # In the order they depend on each other.
    for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover \
        net_failover virtio_net button evdev; do
        f=$(find "$work/lib/modules" -name "$m.ko*" | head -n1)
        [ -n "$f" ] && cp "$f" "$root/lib/mod/"
    done
    cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover \
    net_failover virtio_net button evdev; do
    for f in /lib/mod/$m.ko*; do [ -e "$f" ] && insmod "$f" 2>/dev/null; done
done
# The ACPI power button (a graceful stop; libvirt's soft reboot) powers the guest off.
# busybox acpid runs <conf dir>/PWRF/00000080 for the power button's event.
mkdir -p /etc/acpi/PWRF
printf '#!/bin/sh\npoweroff -f\n' >/etc/acpi/PWRF/00000080
chmod +x /etc/acpi/PWRF/00000080
# In the foreground (here as a background job): as a daemon it does not survive in this init.
acpid -d -c /etc/acpi >/dev/null 2>&1 &
if ip link set eth0 up 2>/dev/null; then udhcpc -i eth0 -q -n -t 5 -S >/dev/null 2>&1 & fi
echo NOVA-TEST-GUEST-UP >/dev/ttyS0
if grep -q nova.selfoff /proc/cmdline; then sleep 1; poweroff -f; fi
while :; do sleep 3600; done
EOF
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/ramdisk.new"
    qemu-img create -q -f qcow2 "$out/disk.qcow2.new" 64M
    mv "$out/kernel.new" "$out/kernel"
    mv "$out/vmlinuz.new" "$out/vmlinuz"
    mv "$out/ramdisk.new" "$out/ramdisk"
    mv "$out/disk.qcow2.new" "$out/disk.qcow2"
    echo "$version" >"$out/.version"
fi
# The ISO, made again whenever the kernel or the initramfs is newer, or its boot menu changed.
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can miss its
# ticks and panic ("IO-APIC + timer doesn't work!").
menu=$(printf '%s\n' 'SERIAL 0 115200' 'DEFAULT guest' 'PROMPT 0' 'TIMEOUT 1' 'LABEL guest' \
    '  KERNEL /kernel' '  INITRD /ramdisk' '  APPEND console=ttyS0 no_timer_check')
if [ ! -s "$out/boot.iso" ] || [ "$out/boot.iso" -ot "$out/ramdisk" ] || [ "$out/boot.iso" -ot "$out/vmlinuz" ] \
    || [ "$(cat "$out/boot.iso.menu" 2>/dev/null)" != "$menu" ]; then
    iso=$(mktemp -d)
    mkdir -p "$iso/isolinux"
    cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/isolinux/"
    cp "$out/vmlinuz" "$iso/kernel"
    cp "$out/ramdisk" "$iso/ramdisk"
    printf '%s\n' "$menu" >"$iso/isolinux/isolinux.cfg"
    genisoimage -quiet -o "$out/boot.iso.new" -b isolinux/isolinux.bin -c isolinux/boot.cat \
        -no-emul-boot -boot-load-size 4 -boot-info-table -R -J -V NOVA-GUEST "$iso"
    rm -rf "$iso"
    mv "$out/boot.iso.new" "$out/boot.iso"
    printf '%s\n' "$menu" >"$out/boot.iso.menu"
fi
echo "guest-image: $out/kernel, $out/vmlinuz, $out/ramdisk, $out/disk.qcow2, $out/boot.iso" >&2

if [ "$upload" = 1 ]; then
    os=${OPENSTACK:-openstack}
    kernel=$($os image create --public --disk-format aki --container-format aki \
        --file "$out/kernel" tiny-kernel -f value -c id)
    ramdisk=$($os image create --public --disk-format ari --container-format ari \
        --file "$out/ramdisk" tiny-ramdisk -f value -c id)
    $os image create --public --disk-format qcow2 --container-format bare \
        --property kernel_id="$kernel" --property ramdisk_id="$ramdisk" \
        --property os_command_line='console=ttyS0 no_timer_check' \
        --file "$out/disk.qcow2" tiny -f value -c id
fi
