#!/usr/bin/env bash
# build-image.sh — the VM test's guest: Debian 12 (bookworm) with systemd,
# cgroup v2 only (set on the kernel command line by run.sh), nftables,
# iproute2, the stock kernel and its initramfs. Prints the cache dir holding
# disk.img (raw ext4, the root filesystem), vmlinuz and initrd.img as its last
# line.
#
# Cached under $BERTH_VM_CACHE (default /var/cache/berth-vm)/<sha256 of this
# script>: the package list and every step are in this file, so any change
# to them makes a new image; an existing one is reused as is. Built in a
# temporary dir and published by rename, so an interrupted build leaves
# nothing half-made in the cache.
#
# Needs root, debootstrap and e2fsprogs (mkfs.ext4 -d: no loop device or
# mount is needed), and http://deb.debian.org/debian reachable.
set -euo pipefail
MIRROR=${BERTH_VM_MIRROR:-http://deb.debian.org/debian}
CACHE=${BERTH_VM_CACHE:-/var/cache/berth-vm}
# What the guest has besides minbase: systemd as init, udev (module
# autoload for virtio devices), the kernel, what berth's package depends on
# (installed here so the test's `dpkg -i` needs no network), and jq/curl/
# procps for the guest's checks.
PKGS=systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools,nftables,iproute2,libseccomp2,ca-certificates,jq,curl,procps,e2fsprogs
DISK_SIZE=3G

[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root" >&2; exit 2; }
for t in debootstrap mkfs.ext4; do
  command -v "$t" >/dev/null || { echo "build-image.sh: missing $t (apt-get install debootstrap e2fsprogs)" >&2; exit 2; }
done
key=$(sha256sum "$0" | cut -c1-16)
DEST=$CACHE/$key
if [ -s "$DEST/disk.img" ] && [ -s "$DEST/vmlinuz" ] && [ -s "$DEST/initrd.img" ]; then
  echo "$DEST"
  exit 0
fi
mkdir -p "$CACHE"
chmod 0700 "$CACHE"
exec 9>"$CACHE/.lock-$key"
flock -w 3600 9 || { echo "build-image.sh: another build holds $CACHE/.lock-$key" >&2; exit 2; }
if [ -s "$DEST/disk.img" ]; then echo "$DEST"; exit 0; fi

W=$(mktemp -d "$CACHE/.build-$key.XXXXXX")
cleanup() {
  # debootstrap mounts proc/sys in the target while it configures; never
  # leave one behind (deepest first)
  for m in $(awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$W"
}
trap cleanup EXIT
R=$W/root
echo "== debootstrap bookworm ($MIRROR) into $R" >&2
debootstrap --variant=minbase --include="$PKGS" bookworm "$R" "$MIRROR" > "$W/debootstrap.log" 2>&1 || {
  tail -40 "$W/debootstrap.log" >&2
  echo "build-image.sh: debootstrap failed (log above)" >&2
  exit 2
}

echo "== configuring the guest" >&2
echo berthvm > "$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 berthvm\n::1 localhost\n' > "$R/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "$R/etc/fstab"
: > "$R/etc/machine-id"
# root logs in on the serial console without a password (a throwaway test VM)
sed -i 's/^root:[^:]*:/root::/' "$R/etc/shadow"
# A stand-in uplink with a default route, as every real host has one (a
# dummy device: the VM has no network card, nothing leaves it).
cat > "$R/etc/systemd/system/berth-vm-uplink.service" <<'EOF'
[Unit]
Description=berth VM test: dummy uplink with a default route
DefaultDependencies=no
After=systemd-udevd.service
Before=network-pre.target network-online.target berth.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip link set lo up; ip link add uplink0 type dummy 2>/dev/null; ip addr replace 192.0.2.2/24 dev uplink0; ip link set uplink0 up; ip route replace default via 192.0.2.1'

[Install]
WantedBy=multi-user.target network-online.target
EOF
# The test's control: on every boot, mount the host's 9p share and run the
# guest script the host put there (tests/vm/guest.sh, so changing the checks
# does not rebuild this image).
cat > "$R/usr/local/sbin/berth-vm-ctl" <<'EOF'
#!/bin/sh
modprobe -a 9pnet_virtio 9p 2>/dev/null
mkdir -p /mnt/ctl
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vmctl /mnt/ctl || { echo "VMCTL: cannot mount the 9p share"; exit 1; }
[ -f /mnt/ctl/guest.sh ] || { echo "VMCTL: no guest.sh in the share"; exit 1; }
exec bash /mnt/ctl/guest.sh
EOF
chmod 0755 "$R/usr/local/sbin/berth-vm-ctl"
cat > "$R/etc/systemd/system/berth-vm-ctl.service" <<'EOF'
[Unit]
Description=berth VM test: run the host's guest script
After=local-fs.target berth-vm-uplink.service systemd-udevd.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/berth-vm-ctl
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
EOF
systemctl --root="$R" enable berth-vm-uplink.service berth-vm-ctl.service >/dev/null 2>&1
# Nothing periodic competes with the test on a slow emulated CPU.
systemctl --root="$R" mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  fstrim.timer systemd-tmpfiles-clean.timer >/dev/null 2>&1 || true
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=persistent\nSystemMaxUse=64M\n' > "$R/etc/systemd/journald.conf.d/berth-vm.conf"

kver=$(ls "$R/lib/modules" | sort -V | tail -1)
[ -s "$R/boot/vmlinuz-$kver" ] && [ -s "$R/boot/initrd.img-$kver" ] || {
  echo "build-image.sh: no kernel or initrd for $kver in the guest's /boot" >&2; exit 2; }
cp "$R/boot/vmlinuz-$kver" "$W/vmlinuz"
cp "$R/boot/initrd.img-$kver" "$W/initrd.img"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* \
  "$R"/usr/share/{doc,man,info,locale}
echo "$kver" > "$W/kernel-version"
cp "$0" "$W/build-image.sh"

echo "== ext4 image ($DISK_SIZE)" >&2
mkfs.ext4 -q -L berthvm -d "$R" "$W/disk.img" "$DISK_SIZE"
rm -rf "$R"
rm -rf "$DEST"
mv "$W" "$DEST"
trap - EXIT
echo "$DEST"
