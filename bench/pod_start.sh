#!/usr/bin/env bash
# Manifest-to-running latency: a Pod file lands in berth's watched directory ->
# its container process is running (found by a unique marker in its command),
# N times, beside `runc run` of the same busybox rootfs in the same run.
# Run as root from the repo: bench/pod_start.sh [N] [BERTH_BIN]
# Uses its own instance (btps), CIDRs 10.126.8.0/24 + 10.126.9.0/24, API
# 127.0.0.1:17650, dirs under /var/tmp/berth-bench-ps; cleans up on exit.
set -euo pipefail
N="${1:-20}"
BIN="${2:-target/release/berth}"
W=/var/tmp/berth-bench-ps
INST=btps
PORT=17650
cd "$(dirname "$0")/.."
[ -x "$BIN" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
rm -rf "$W"; mkdir -p "$W/manifests" "$W/images" "$W/state"
bash tests/fixtures/make-busybox-image.sh "$W/fx" >/dev/null
cp "$W/fx/busybox-oci.tar" "$W/images/"
echo "# nothing" > "$W/manifests/empty.yaml"
AGENT=
cleanup() {
  rm -f "$W"/manifests/p*.yaml || true
  if [ -n "$AGENT" ]; then
    for _ in $(seq 50); do curl -s "127.0.0.1:$PORT/api/v1/pods" | grep -q '"items":\[\]' && break; sleep 0.2; done
    kill "$AGENT" 2>/dev/null || true; wait "$AGENT" 2>/dev/null || true
  fi
  for f in $(find /sys/fs/cgroup/pids/$INST -name cgroup.procs 2>/dev/null); do for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null || true; done; done
  grep -E " (/run/$INST|$W)" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
  ip link del ${INST}0 2>/dev/null || true
  nft delete table inet $INST 2>/dev/null || true
  find /sys/fs/cgroup -depth -type d -name "$INST*" -exec rmdir {} \; 2>/dev/null || true
  rm -rf "/run/$INST" "$W"
}
trap cleanup EXIT INT TERM
"$BIN" --instance $INST --manifests "$W/manifests" --state-dir "$W/state" --run-dir /run/$INST \
  --image-dir "$W/images" --listen 127.0.0.1:$PORT --pod-cidr 10.126.8.0/24 --service-cidr 10.126.9.0/24 \
  >"$W/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
now_ms() { date +%s%3N; }
# warm-up: the image is imported and unpacked once
pod() { printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: p%s}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - {name: c, image: berth.local/busybox:1.36, command: [sleep, "%s"]}\n' "$1" "$2"; }
pod w 91999 > "$W/manifests/pw.yaml.tmp"; mv "$W/manifests/pw.yaml.tmp" "$W/manifests/pw.yaml"
for _ in $(seq 300); do pgrep -f "sleep 91999" >/dev/null && break; sleep 0.1; done
rm -f "$W/manifests/pw.yaml"
berth=()
for i in $(seq "$N"); do
  m=$((92000 + i))
  pod "$i" "$m" > "$W/manifests/.p$i.tmp"
  t0=$(now_ms); mv "$W/manifests/.p$i.tmp" "$W/manifests/p$i.yaml"
  until pgrep -f "sleep $m" >/dev/null; do sleep 0.002; done
  berth+=($(( $(now_ms) - t0 )))
  rm -f "$W/manifests/p$i.yaml"
done
# peer: runc run of the same rootfs (detached sleep, until its process runs)
B="$W/bundle"
umoci unpack --image "$W/fx/oci:1.36" "$W/ub" >/dev/null 2>&1 || true
mkdir -p "$B" && cp -a "$W/ub/rootfs" "$B/rootfs" 2>/dev/null || true
runc=()
if [ -x "$B/rootfs/bin/busybox" ]; then
  (cd "$B" && runc spec && jq '.process.terminal=false | .root.readonly=true' config.json > c.json && mv c.json config.json)
  for i in $(seq "$N"); do
    m=$((93000 + i))
    jq --arg m "$m" '.process.args=["sleep",$m]' "$B/config.json" > "$B/c.json" && mv "$B/c.json" "$B/config.json"
    t0=$(now_ms); runc run -d --bundle "$B" "btps-$i" >/dev/null 2>&1 </dev/null
    until pgrep -f "sleep $m" >/dev/null; do sleep 0.002; done
    runc+=($(( $(now_ms) - t0 )))
    runc kill "btps-$i" KILL 2>/dev/null || true; sleep 0.05; runc delete -f "btps-$i" 2>/dev/null || true
  done
fi
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {p50=a[int((NR+1)/2)]; i=int(NR*0.95+0.999); if(i>NR)i=NR; print p50, a[i]}'; }
read b50 b95 < <(stats "${berth[@]}")
echo "scenario | berth p50/p95 ms | peer p50/p95 ms | ratio (p50)"
if ((${#runc[@]})); then
  read r50 r95 < <(stats "${runc[@]}")
  echo "Pod file -> process running (N=$N) | $b50 / $b95 | runc run -d: $r50 / $r95 | $(awk -v a="$b50" -v b="$r50" 'BEGIN{printf "%.2fx", a/(b?b:1)}')"
else
  echo "Pod file -> process running (N=$N) | $b50 / $b95 | runc: rootfs not found, skipped | -"
fi
echo "agent RSS: $(grep VmRSS /proc/$AGENT/status | awk '{print $2, $3}')"
