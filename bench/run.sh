#!/usr/bin/env bash
# bench/run.sh — berth side by side with podman (kube play/down), crun and runc,
# on the same manifests, in the same run; prints one table and writes it to
# bench/results/<date>.md (and the README's benchmark section).
#
#   sudo bench/run.sh                 # everything (about 25-35 min on 2 cores)
#   sudo bench/run.sh --quick         # fewer iterations and shorter steady states (about 10 min)
#   BENCH_ONLY="one restart" bench/run.sh   # some of: raw one twenty restart http start
#                                           # first rolling steady scale image
#   BENCH_N=10 BENCH_R=4 BENCH_STEADY="1 10 100" BENCH_STEADY_S=30   # sizes (defaults)
#   BENCH_SCALE="1 10 50 100 200" BENCH_RESTART_SIZES="0 10 100"
#   BENCH_SCALE_ROUNDS=2 BENCH_SCALE_STEP=0.25   # samples per scaling size, its /proc poll (s)
#   BENCH_BIN_DIR=target/debug BENCH_RESULTS=/tmp/r bench/run.sh   # a trial of the scenarios with
#                                           # binaries built elsewhere (not timed fairly)
#
# It installs what it needs (bench/install.sh: podman, crun, runc, conmon,
# netavark, catatonit, wrk, hyperfine), builds berth in release mode, builds the
# busybox image locally (no registry) and loads it into podman, and prepares
# the host the way podman and crun need on this kind of machine (see "host"
# below). Everything it creates is named bt* (instance btbr, bridge btbr0, nft
# table inet btbr, pods bt-*) or recorded in $W, and is removed on exit, also
# when interrupted. It never flushes a firewall ruleset: only the netavark
# chains podman adds, and tables that were absent before and are empty after.
set -euo pipefail
[ "${1:-}" = --quick ] && export BENCH_QUICK=1
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ "$(id -u)" = 0 ] || { echo "bench/run.sh needs root" >&2; exit 1; }
W=${BENCH_WORK:-/var/tmp/berth-bench}
INST=${BENCH_INSTANCE:-btbr}
export BENCH_WORK=$W BENCH_INSTANCE=$INST

bash bench/install.sh
for d in "$HOME/.cargo/bin" /usr/local/cargo/bin; do [ -x "$d/cargo" ] && export PATH="$d:$PATH"; done

if [ -n "${BENCH_BIN_DIR:-}" ]; then
  # a trial with binaries built elsewhere (berth, berth-shim, berth-supervise,
  # examples/start_bench, examples/unpack_bench): nothing is built
  TGT=$(cd "$BENCH_BIN_DIR" && pwd)
  echo "== using the binaries in $TGT (BENCH_BIN_DIR; not built here)"
else
  echo "== building berth (release)"
  cargo build --release --bins
  # the resident per-container supervisor, linked statically as the package
  # ships it (scripts/package.sh: same flags): 1.35 MB RSS instead of 2.2 MB,
  # most of it shared text pages; panic=abort drops the unwinding code, and a
  # non-PIE binary has no relocations to apply at start
  cargo rustc --release -p berth-supervise --bin berth-supervise -- -C target-feature=+crt-static \
    -C panic=abort -C relocation-model=static
  cargo build --release -p berth-runtime --examples
  cargo build --release -p berth-image --example unpack_bench
  TGT=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
fi
export BENCH_BERTH=$TGT/berth BENCH_START_BENCH=$TGT/examples/start_bench BENCH_UNPACK_BENCH=$TGT/examples/unpack_bench

rm -rf "$W"; mkdir -p "$W/images" "$W/state" "$W/manifests" "$W/podman" "$W/baseline"

# ---- host: what podman and crun need here, recorded so cleanup can undo it ----
# Rlimits: root here has hard nofile 20000 and no CAP_SYS_RESOURCE, and podman
# asks for 1048576, so crun's setrlimit fails. A containers.conf of our own
# (CONTAINERS_CONF replaces the system files) asks for the caller's limits.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu); pidmax=$(cat /proc/sys/kernel/pid_max)
[[ "$nproc" == unlimited || "$nproc" -gt "$pidmax" ]] && nproc=$pidmax
[[ "$nofile" == unlimited ]] && nofile=1048576
export CONTAINERS_CONF=$W/containers.conf
cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "crun"
CONF
B=$W/baseline
sysctl -n net.ipv4.ip_forward > "$B/ip_forward"
sysctl -n net.ipv4.tcp_tw_reuse > "$B/tcp_tw_reuse"
nft list tables > "$B/nft-tables.txt" 2>/dev/null || true
iptables-save > "$B/iptables.txt" 2>/dev/null || true
ls /etc/containers/networks/ > "$B/podman-networks.txt" 2>/dev/null || true
podman images --format '{{.Repository}}:{{.Tag}}' > "$B/podman-images.txt" 2>/dev/null || true

cleanup() {
  set +e
  echo "== cleanup"
  # berth: the agent (by pid file), then anything left in its instance
  if [ -f "$W/agent.pid" ]; then
    p=$(cat "$W/agent.pid"); [ "$(cat /proc/$p/comm 2>/dev/null)" = berth ] && kill "$p" && sleep 2
    [ "$(cat /proc/$p/comm 2>/dev/null)" = berth ] && kill -9 "$p"
  fi
  for f in $(find /sys/fs/cgroup/*/$INST /sys/fs/cgroup/$INST -name cgroup.procs 2>/dev/null); do
    for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null; done
  done
  for f in $(find /run/$INST -name shim.pid 2>/dev/null); do
    p=$(cut -d' ' -f1 "$f"); case "$(cat /proc/$p/comm 2>/dev/null)" in berth-s*) kill -9 "$p";; esac
  done
  sleep 0.3
  grep -E " (/run/$INST|$W)" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  for l in $(ls /sys/class/net/${INST}0/brif 2>/dev/null); do ip link del "$l"; done
  ip link del ${INST}0 2>/dev/null
  nft delete table inet $INST 2>/dev/null
  find /sys/fs/cgroup -maxdepth 3 -depth -type d -name "$INST*" 2>/dev/null | while read -r d; do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -rf /run/$INST
  # the image scenario's registry (by pid file)
  if [ -f "$W/registry.pid" ]; then
    p=$(cat "$W/registry.pid"); [ "$(cat /proc/$p/comm 2>/dev/null)" = docker-registry ] && kill "$p"
  fi
  # podman: our pods, networks it created, netavark's chains, ip_forward
  pods=$(podman pod ps -q --filter name='^bt-' 2>/dev/null)
  [ -n "$pods" ] && podman pod rm -f -t 0 $pods >/dev/null
  for f in /etc/containers/networks/*.json; do
    [ -f "$f" ] || continue
    grep -qx "$(basename "$f")" "$B/podman-networks.txt" || podman network rm -f "$(basename "$f" .json)" >/dev/null
  done
  if ! grep -q NETAVARK "$B/iptables.txt" 2>/dev/null; then
    for t in filter nat mangle; do
      iptables -t $t -S 2>/dev/null | grep -E -- '-j NETAVARK' | grep -vE '^-A NETAVARK' | sed 's/^-A /-D /' |
        while read -r rule; do eval "iptables -t $t $rule"; done
      chains=$(iptables -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^NETAVARK/ {print $2}')
      for c in $chains; do iptables -t $t -F "$c"; done
      for c in $chains; do iptables -t $t -X "$c"; done
    done
  fi
  for ft in "ip nat" "ip filter" "ip mangle"; do
    grep -qx "table $ft" "$B/nft-tables.txt" && continue
    nft list table $ft >/dev/null 2>&1 || continue
    nft list table $ft | grep -vE '^\s*(table|chain|type|\}|$)' | grep -q . || nft delete table $ft
  done
  [ "$(sysctl -n net.ipv4.ip_forward)" != "$(cat $B/ip_forward)" ] && sysctl -qw net.ipv4.ip_forward="$(cat $B/ip_forward)"
  [ -f "$B/tcp_tw_reuse" ] && sysctl -qw net.ipv4.tcp_tw_reuse="$(cat $B/tcp_tw_reuse)"
  for i in $(podman images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null); do
    grep -qx "$i" "$B/podman-images.txt" || podman rmi -f "$i" >/dev/null
  done
  for h in /sys/fs/cgroup/*/; do [ -d "${h}libpod_parent" ] && find "${h}libpod_parent" -depth -type d -exec rmdir {} + 2>/dev/null; done
  # the v1 hugetlb hierarchy mounted for crun (see below): a hierarchy
  # unmounted while dying cgroups remain stays alive, so retry until
  # /proc/cgroups shows the controller back on cgroup2
  for m in "$B"/mounted-*; do
    [ -f "$m" ] || continue
    c=${m##*/mounted-}; mp=/sys/fs/cgroup/$c
    for _ in 1 2 3 4 5; do
      [ "$(awk -v c="$c" '$1==c{print $2}' /proc/cgroups)" = 0 ] && break
      mkdir -p "$mp"; mountpoint -q "$mp" || mount -t cgroup -o "$c" cgroup "$mp"
      find "$mp" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
      sleep 1; umount "$mp"; sleep 0.5
    done
    rmdir "$mp" 2>/dev/null
  done
  if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$W"; fi
  echo "cleanup done"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# crun 1.8 refuses a cgroup v1 "hybrid" host whose cgroup2 mount still holds
# controllers; here that is hugetlb, which no v1 hierarchy binds. Mount one (as
# systemd does on a standard hybrid host); cleanup unmounts it.
U=/sys/fs/cgroup/unified
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] && mountpoint -q "$U"; then
  for c in $(cat "$U/cgroup.controllers"); do
    if ! awk '$3=="cgroup"{print $4}' /proc/mounts | grep -qw "$c"; then
      mkdir -p "/sys/fs/cgroup/$c"; mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
      touch "$B/mounted-$c"; echo "mounted a v1 $c hierarchy (crun needs cgroup2 empty on a hybrid host)"
    fi
  done
fi

echo "== image"
bash tests/fixtures/make-busybox-image.sh "$W/fx" >/dev/null
cp "$W/fx/busybox-oci.tar" "$W/images/"
podman load -q -i "$W/fx/busybox-docker.tar" >/dev/null
podman image exists berth.local/busybox:1.36

# The HTTP scenario opens a connection per request (busybox httpd closes
# each one): tens of thousands of client sockets in TIME_WAIT exhaust the
# ephemeral ports within seconds, and every path then collapses to a few
# hundred requests/s. Reuse of TIME_WAIT ports for outgoing connections
# (the default on loopback only) avoids that; restored on exit.
sysctl -qw net.ipv4.tcp_tw_reuse=1

echo "== scenarios"
if [ -n "${BENCH_RESULTS:-}" ]; then
  python3 bench/lib/bench.py   # a trial: results elsewhere, README untouched
else
  BENCH_RESULTS=$ROOT/bench/results python3 bench/lib/bench.py
  python3 bench/lib/readme.py "$(ls -t bench/results/*.md | head -1)" README.md
fi
