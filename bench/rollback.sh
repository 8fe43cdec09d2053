#!/usr/bin/env bash
# Automatic rollback latency (issue 18): a healthy revision runs; a bad one
# arrives (its command exits 1); time until the last healthy revision's pod
# runs again (a new process of the healthy command, found by its unique
# marker), N times. The same failure left to kubelet-style behaviour (no
# rollback) never recovers: the pod crash-loops until a person fixes it.
# Run as root from the repo: bench/rollback.sh [N] [BERTH_BIN]
# Env: CRASH (restarts that fail a revision, default 3: the product default),
#      SOAK (default 1s).
# Uses its own instance (btrollb), CIDRs 10.124.208.0/24 + 10.124.209.0/24
# (net 104), API 127.0.0.1:17209, dirs under /var/tmp/berth-bench-rb;
# writes bench/results/rollback-<date>.md and cleans up on exit.
set -euo pipefail
N="${1:-10}"
BIN="${2:-target/release/berth}"
CRASH="${CRASH:-3}"
SOAK="${SOAK:-1s}"
W=/var/tmp/berth-bench-rb
INST=btrollb
PORT=17209
cd "$(dirname "$0")/.."
[ -x "$BIN" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
rm -rf "$W"; mkdir -p "$W/manifests" "$W/images" "$W/state"
bash tests/fixtures/make-busybox-image.sh "$W/fx" >/dev/null
cp "$W/fx/busybox-oci.tar" "$W/images/"
AGENT=
cleanup() {
  echo "# nothing" > "$W/manifests/app.yaml" 2>/dev/null || true
  if [ -n "$AGENT" ]; then
    for _ in $(seq 100); do curl -s "127.0.0.1:$PORT/api/v1/pods" | grep -q '"items":\[\]' && break; sleep 0.2; done
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
pod() { # name cmd
  printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: berth.local/busybox:1.36\n    command: [sh, -c, "%s"]\n    readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}\n' "$1"
}
put() { pod "$1" > "$W/manifests/.app.tmp"; mv "$W/manifests/.app.tmp" "$W/manifests/app.yaml"; }
state() { curl -s "127.0.0.1:$PORT/api/v1/status" | jq -r '[.sources[] | select(.rollout) | .rollout.state][0] // ""'; }
wait_state() { # want timeout_s
  local t=$(( $(date +%s) + $2 ))
  until [ "$(state)" = "$1" ]; do
    [ "$(date +%s)" -lt "$t" ] || { echo "timed out waiting for $1 (now: $(state))" >&2; tail -20 "$W/agent.log" >&2; exit 1; }
    sleep 0.2
  done
}
put "exec sleep 94000"
"$BIN" --instance $INST --manifests "$W/manifests" --state-dir "$W/state" --run-dir /run/$INST \
  --image-dir "$W/images" --listen 127.0.0.1:$PORT --pod-cidr 10.124.208.0/24 --service-cidr 10.124.209.0/24 \
  --rollout-soak "$SOAK" --rollout-deadline 300s --rollout-crash-loop-restarts "$CRASH" \
  >"$W/agent.log" 2>&1 &
AGENT=$!
for _ in $(seq 100); do curl -sf 127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
wait_state healthy 120
now_ms() { date +%s%3N; }
times=()
for i in $(seq "$N"); do
  m=$((94000 + i))
  put "exec sleep $m"
  until pgrep -f "sleep $m" >/dev/null; do sleep 0.05; done
  wait_state healthy 60
  old=$(pgrep -f "sleep $m")
  t0=$(now_ms)
  put "echo bad-$i; exit 1"
  # the healthy revision's process is back: a new PID running "sleep $m"
  while :; do
    p=$(pgrep -f "sleep $m" || true)
    [ -n "$p" ] && [ "$p" != "$old" ] && break
    [ $(( $(now_ms) - t0 )) -lt 300000 ] || { echo "run $i: no rollback in 300 s" >&2; tail -30 "$W/agent.log" >&2; exit 1; }
    sleep 0.02
  done
  times+=($(( $(now_ms) - t0 )))
  echo "run $i: $(( $(now_ms) - t0 )) ms" >&2
  wait_state rolled-back 60
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {p50=a[int((NR+1)/2)]; i=int(NR*0.95+0.999); if(i>NR)i=NR; print p50, a[i]}'; }
read p50 p95 < <(stats "${times[@]}")
stamp=$(date -u +%Y-%m-%d-%H%M)
out="bench/results/rollback-$stamp.md"
mkdir -p bench/results
{
  echo "# berth rollback benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Produced by \`bench/rollback.sh $N\`: a healthy Pod revision runs (directory source);"
  echo "a revision whose command exits 1 lands (file renamed into the watched directory);"
  echo "measured until the healthy revision's process runs again (new PID). Crash-loop"
  echo "threshold $CRASH restarts (back-off 0 s, 10 s, 20 s, ... between them), soak $SOAK."
  echo
  echo "- berth: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) ($BIN)"
  echo "- kernel: $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- runs (ms): ${times[*]}"
  echo
  echo "| scenario | berth p50 / p95 | kubelet-style (no rollback) |"
  echo "|---|---|---|"
  echo "| bad revision lands -> last healthy pod running again (crash loop, threshold $CRASH) | $p50 / $p95 ms | never (crash-loops until a person fixes it) |"
} > "$out"
cat "$out"
