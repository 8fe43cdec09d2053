#!/usr/bin/env bash
# run.sh — berth's Debian package on a real host: a Debian 12 VM with systemd
# and cgroup v2 only, booted under QEMU. Installs the .deb, runs the example
# manifests (busybox image from the import dir) and checks, inside the guest
# (tests/vm/guest.sh):
#   the package installs, its unit starts the agent, the pods run;
#   systemctl stop/start and restart keep the same container processes;
#   a reboot brings every pod back with the Volume's data intact;
#   a hard power-off (kill -9 of QEMU) during a burst of manifest changes
#   leaves a state the next boot accepts: the agent starts, the pods run.
# Prints one `PASS name: evidence` or `FAIL name: why` line per check on
# stdout (progress and timings on stderr); exit 0 only when every check
# passed, 1 when one failed or never ran, 2 on a setup failure.
#
# usage:  tests/vm/run.sh                   (builds the package with scripts/package.sh)
#         BERTH_DEB=path/to/berth.deb tests/vm/run.sh
# env:    BERTH_VM_CACHE   guest image cache (default /var/cache/berth-vm)
#         BERTH_VM_WORK    this run's dir, wiped at start (default /var/tmp/berth-vm-run)
#         BERTH_VM_ACCEL   auto | kvm | tcg (auto: TCG when /dev/kvm is missing or PVM)
#         BERTH_VM_TIMEOUT seconds for each VM boot sequence (default 900)
#         BERTH_VM_KEEP_DISK=1  keep the guest's disk in $BERTH_VM_WORK afterwards
#
# Nothing on the host changes but the Debian packages it installs
# (qemu-system-x86, debootstrap, and for the image busybox-static, umoci,
# skopeo) and the image cache: the VM has no network card; every bridge,
# nft table and cgroup berth makes lives in the guest. The QEMU process is
# killed on exit, whatever happens.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${BERTH_VM_WORK:-/var/tmp/berth-vm-run}
ACCEL=${BERTH_VM_ACCEL:-auto}
TIMEOUT=${BERTH_VM_TIMEOUT:-900}
T0=$(date +%s)
die() { echo "vm: $*" >&2; exit 2; }
say() { echo "== [$(( $(date +%s) - T0 ))s] $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root"
case "$WORK" in /|/tmp|/var|/var/tmp|/root|"") die "refusing BERTH_VM_WORK=$WORK" ;; esac

QPID=
stop_vm() {
  if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
    kill -KILL "$QPID" 2>/dev/null || true
    wait "$QPID" 2>/dev/null || true
  fi
  QPID=
}
# On every exit: the QEMU this script started (by PID), then the run's big
# files (the disk copy, the packages, the registry data); the evidence
# (results, consoles, journals, API JSON) stays in $WORK.
# BERTH_VM_KEEP_DISK=1 keeps the guest's disk for a look at it.
cleanup() {
  stop_vm
  [ "${BERTH_VM_KEEP_DISK:-0}" = 1 ] || rm -f "$WORK/disk.img"
  rm -rf "$WORK/repack" "$WORK/share/registry"
  rm -f "$WORK/share/berth.deb" "$WORK/share/berth-upgrade.deb" "$WORK/share/busybox-oci.tar" "$WORK/share/docker-registry"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# ---------------------------------------------------------------- host tools
say "host packages"
export DEBIAN_FRONTEND=noninteractive
need=()
for p in qemu-system-x86 debootstrap e2fsprogs busybox-static umoci skopeo jq; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  # bookworm's qemu-system-x86 conflicts with a backports qemu-utils (which
  # some machine images carry): apt then removes it; say so first
  removes=$(apt-get install -s --no-install-recommends "${need[@]}" 2>/dev/null | awk '/^Remv /{print $2}' | tr '\n' ' ')
  [ -z "$removes" ] || say "WARNING: installing ${need[*]} makes apt remove: $removes"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------- inputs
if [ -z "${BERTH_DEB:-}" ]; then
  say "building the package (scripts/package.sh)"
  BERTH_DEB=$("$REPO/scripts/package.sh" | tail -1)
fi
[ -f "$BERTH_DEB" ] || die "no package at '$BERTH_DEB'"
say "package: $BERTH_DEB ($(du -h "$BERTH_DEB" | cut -f1))"
say "guest image (cached)"
TI=$(date +%s)
IMG=$("$HERE/build-image.sh" | tail -1)
say "guest image: $IMG ($(( $(date +%s) - TI ))s, kernel $(cat "$IMG/kernel-version"))"
"$REPO/tests/fixtures/make-busybox-image.sh" "$(dirname "$IMG")/busybox-image" >/dev/null
BUSYBOX_TAR=$(dirname "$IMG")/busybox-image/busybox-oci.tar

rm -rf "$WORK"
mkdir -p -m 0700 "$WORK"
SH=$WORK/share
mkdir -p "$SH/manifests"
cp "$HERE/guest.sh" "$SH/guest.sh"
cp "$BERTH_DEB" "$SH/berth.deb"
# the upgrade: the same package with a higher version (BERTH_DEB_UPGRADE, or
# this one repacked as <version>+vmtest1)
if [ -n "${BERTH_DEB_UPGRADE:-}" ]; then
  cp "$BERTH_DEB_UPGRADE" "$SH/berth-upgrade.deb"
else
  rm -rf "$WORK/repack"
  dpkg-deb -R "$BERTH_DEB" "$WORK/repack"
  v=$(dpkg-deb -f "$BERTH_DEB" Version)
  sed -i "s/^Version: .*/Version: ${v}+vmtest1/" "$WORK/repack/DEBIAN/control"
  # uncompressed: xz takes minutes on a loaded 2-core host, and the guest's
  # dpkg -i unpacks it faster
  dpkg-deb -b -Znone --root-owner-group "$WORK/repack" "$SH/berth-upgrade.deb" >/dev/null
  rm -rf "$WORK/repack"
fi
say "upgrade package: $(dpkg-deb -f "$SH/berth-upgrade.deb" Version)"
cp "$BUSYBOX_TAR" "$SH/busybox-oci.tar"
# the registry for the power cut during a pull (served inside the guest, on
# its loopback, by the host's Debian docker-registry binary: same release)
"$HERE/make-pull-registry.sh" "$(dirname "$IMG")/busybox-image/oci" "$(dirname "$IMG")/pull-registry" \
  || die "cannot build the pull test's registry data"
cp -al "$(dirname "$IMG")/pull-registry" "$SH/registry" 2>/dev/null || cp -a "$(dirname "$IMG")/pull-registry" "$SH/registry"
cp "$(command -v docker-registry)" "$SH/docker-registry"
cp "$REPO"/examples/manifests/*.yaml "$SH/manifests/"
echo install > "$SH/phase"
: > "$SH/results.txt"
cp --sparse=always "$IMG/disk.img" "$WORK/disk.img"

# ---------------------------------------------------------------- accelerator
kvm_usable() {
  [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  # PVM (paravirtual KVM in some nested sandboxes) runs only PVM-built guest
  # kernels: a stock kernel aborts, hangs or hits emulation failures on it
  if [ -d /sys/module/kvm_pvm ]; then say "/dev/kvm is PVM (kvm_pvm loaded): a stock kernel cannot run on it, using TCG"; return 1; fi
}
if [ "$ACCEL" = auto ]; then if kvm_usable; then ACCEL=kvm; else ACCEL=tcg; fi; fi
case "$ACCEL" in
  kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
  tcg) ACCEL_ARGS=(-accel tcg,thread=multi,tb-size=512 -cpu max) ;;
  *) die "BERTH_VM_ACCEL must be auto, kvm or tcg" ;;
esac
# psi=1: Debian's kernel has PSI but off unless asked (CONFIG_PSI_DEFAULT_DISABLED).
# mitigations=off: a throwaway guest running only this test; under TCG the
# page-table isolation's address-space switch on every syscall costs more
# than anything else the guest does.
CMDLINE="root=/dev/vda rw console=ttyS0 psi=1 mitigations=off systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all systemd.show_status=auto loglevel=4 panic=-1"
# Units a test VM does not need, masked from the command line (so the cached
# image stays as it is): `systemd-analyze blame` in a run under TCG had
# e2scrub_reap 17 s, the getty and utmp units, module loads for device
# mapper, fuse, loop and pstore 3-5 s each, most on the way to berth.service.
for u in e2scrub_reap.service getty-static.service serial-getty@ttyS0.service \
  systemd-update-utmp.service systemd-update-utmp-runlevel.service \
  modprobe@dm_mod.service modprobe@fuse.service modprobe@loop.service modprobe@efi_pstore.service \
  sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount; do
  CMDLINE="$CMDLINE systemd.mask=$u"
done

boot() { # boot N [qemu args]: start QEMU in the background, sets QPID
  local n=$1; shift
  qemu-system-x86_64 "${ACCEL_ARGS[@]}" -smp 2 -m 2G -nodefaults -display none -monitor none \
    -serial "file:$WORK/console-$n.log" \
    -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" -append "$CMDLINE" \
    -drive "file=$WORK/disk.img,format=raw,if=virtio,cache=writeback" \
    -virtfs "local,path=$SH,mount_tag=vmctl,security_model=none,id=vmctl" \
    -device virtio-rng-pci "$@" </dev/null >"$WORK/qemu-$n.log" 2>&1 &
  QPID=$!
}
# follow the guest's result lines on stderr while it runs
shown=0
show_new() {
  local n
  n=$(wc -l < "$SH/results.txt")
  if [ "$n" -gt "$shown" ]; then sed -n "$((shown + 1)),${n}p" "$SH/results.txt" | sed 's/^/   guest: /' >&2; shown=$n; fi
}
HOSTRES=()
host_fail() { HOSTRES+=("FAIL $1: $2"); say "FAIL $1: $2"; }
# wait_for SECONDS FILE [POLL]: until FILE exists, the VM exits, or the time is up
wait_for() {
  local end=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    [ -e "$2" ] && { show_new; return 0; }
    kill -0 "$QPID" 2>/dev/null || { show_new; return 1; }
    show_new
    sleep "${3:-0.5}"
  done
  return 1
}

# ---------------------------------------------------------------- boot 1 + reboot
say "booting the guest ($ACCEL, 2 CPUs, 2G): install, checks, reboot, checks, burst"
TB=$(date +%s)
boot 1
if wait_for "$TIMEOUT" "$SH/burst-started"; then
  # cut the power in the burst, while the guest pulls an image: as soon as
  # it reports a part of the 96 MiB layer on disk (polled every 0.1 s),
  # at least 3 s into the burst
  tb=$(date +%s.%N)
  partial=no
  wait_for 180 "$SH/pull-partial" 0.1 && partial=yes
  awk -v a="$tb" -v b="$(date +%s.%N)" 'BEGIN{exit !(b - a < 3)}' && sleep 3
  show_new
  rounds=$(cat "$SH/burst-rounds" 2>/dev/null || echo 0)
  if kill -0 "$QPID" 2>/dev/null; then
    kill -KILL "$QPID"; wait "$QPID" 2>/dev/null || true; QPID=
    cut=$(awk -v a="$tb" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    HOSTRES+=("PASS power-off.during-burst: QEMU killed with SIGKILL ${cut}s into the burst, after $rounds rounds of manifest changes")
    if [ "$partial" = yes ]; then
      HOSTRES+=("PASS power-off.during-pull: killed once the guest reported $(cat "$SH/pull-partial") of about 100 MB of the layer downloaded")
    else
      host_fail power-off.during-pull "the guest never reported a partial layer download within 180s of the burst's start"
    fi
    say "power cut ${cut}s into the burst ($rounds rounds), partial pull seen: $partial"
  else
    host_fail power-off.during-burst "the VM had already stopped"
  fi
else
  host_fail boot1 "the guest did not reach the burst within ${TIMEOUT}s (phase now $(cat "$SH/phase"); see $WORK/console-1.log)"
  tail -20 "$WORK/console-1.log" >&2 || true
fi
stop_vm
T1=$(( $(date +%s) - TB ))
# The reboot: how long the shutdown took (guest kernel timestamps on the
# console), and whether systemd-shutdown had to wait for container processes
# (its 90 s timeout: nothing stopped them before the final kill).
c1=$WORK/console-1.log
r_at=$(sed -n 's/.*INFO reboot: systemctl reboot at uptime \([0-9.]*\)s.*/\1/p' "$SH/results.txt" | head -1)
r_end=$(grep -a 'reboot: Restarting system' "$c1" | head -1 | sed 's/^\[ *\([0-9.]*\)\].*/\1/')
waited=$(grep -a -m1 'systemd-shutdown\[1\]: Waiting for process' "$c1" | sed 's/^\[[^]]*\] //' || true)
if [ -n "$r_at" ] && [ -n "$r_end" ]; then
  shut=$(awk -v a="$r_at" -v b="$r_end" 'BEGIN{printf "%.1f", b-a}')
  HOSTRES+=("TIME reboot-shutdown: $shut")
  if [ -z "$waited" ]; then
    HOSTRES+=("PASS reboot.containers-stopped: shutdown took ${shut}s; systemd-shutdown found no container process left to wait for")
  else
    HOSTRES+=("FAIL reboot.containers-stopped: shutdown took ${shut}s; $waited (its 90 s timeout)")
  fi
fi

# ---------------------------------------------------------------- boot after the power cut
if [ "$(cat "$SH/phase")" = after-crash ]; then
  say "booting the guest again after the power cut"
  boot 2 -no-reboot
  if wait_for "$TIMEOUT" "$SH/done"; then
    # let the guest power off by itself; then make sure it is gone
    for _ in $(seq 60); do kill -0 "$QPID" 2>/dev/null || break; sleep 1; done
  else
    host_fail boot-after-crash "the guest did not finish within ${TIMEOUT}s (see $WORK/console-2.log)"
    tail -20 "$WORK/console-2.log" >&2 || true
  fi
  stop_vm
fi
show_new
TV=$(( $(date +%s) - TB ))

# ---------------------------------------------------------------- verdict
EXPECTED=(guest.cgroup-v2-only package.install package.files unit.settings agent.started-by-package
  pods.ready stop.keeps-containers start.api-ready restart.same-pids restart.same-containers
  doctor.runs cgroup.oom-group cgroup.cpu-weight metrics.psi service.vip-from-host logs.no-colour
  upgrade.install upgrade.same-pids volume.written
  reboot.containers-stopped reboot.pods-ready reboot.agent-active reboot.volume-intact reboot.volume-appended power-off.during-burst power-off.during-pull
  crash.agent-starts crash.pods-run crash.pull-completes crash.blobs-verify crash.agent-stable crash.volume-intact crash.converges
  remove.stops-agent remove.stops-containers remove.keeps-volumes purge.says-what purge.removes-state)
ALL=$WORK/all-results.txt
{ cat "$SH/results.txt"; printf '%s\n' "${HOSTRES[@]+"${HOSTRES[@]}"}"; } > "$ALL"
echo "---- timings" >&2
grep '^TIME ' "$ALL" | sed 's/^TIME /   /; s/$/ s/' >&2 || true
echo "   VM: first boot to power cut ${T1}s, whole VM part ${TV}s; run total $(( $(date +%s) - T0 ))s ($ACCEL)" >&2
grep '^INFO ' "$ALL" | sed 's/^/   /' >&2 || true
rc=0
for n in "${EXPECTED[@]}"; do
  l=$(grep -m1 -E "^(PASS|FAIL) $n:" "$ALL" || true)
  if [ -z "$l" ]; then
    echo "FAIL $n: not run (see $WORK)"; rc=1
  else
    echo "$l"
  fi
done
# checks outside the list (host failures, a guest FAIL not listed) count too
{ grep -E '^FAIL ' "$ALL" || true; } | while read -r l; do
  n=${l#FAIL }; n=${n%%:*}
  printf '%s\n' "${EXPECTED[@]}" | grep -qx "$n" || echo "$l"
done
if grep -q '^FAIL ' "$ALL"; then rc=1; fi
echo "artifacts: $WORK (results, consoles, journals, pods JSON)" >&2
exit "$rc"
