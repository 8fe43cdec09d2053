# Sourced by bench/first_trace.sh and bench/agent_mem.sh: one berth agent of
# their own (INST, PORT, CIDRs 10.126.$NET.0/24 and 10.126.$((NET+1)).0/24,
# dirs under W), its busybox image, and a cleanup on exit that removes every
# pod, the bridge, the nft table, cgroups, mounts and dirs of INST.
# Needs: INST PORT NET W BIN RUST_LOG_AGENT; cd'd to the repo.
[ -x "$BIN" ] || { echo "build first: cargo build --release --bins" >&2; exit 1; }
rm -rf "$W"; mkdir -p "$W/manifests" "$W/images" "$W/state"
bash tests/fixtures/make-busybox-image.sh "$W/fx" >/dev/null
cp "$W/fx/busybox-oci.tar" "$W/images/"
echo "# nothing" > "$W/manifests/README.yaml"
AGENT=
cleanup() {
  set +e
  find "$W/manifests" -name '*.yaml' ! -name README.yaml -delete
  if [ -n "$AGENT" ]; then
    for _ in $(seq 200); do curl -s "127.0.0.1:$PORT/api/v1/pods" | grep -q '"items":\[\]' && break; sleep 0.1; done
    kill "$AGENT" 2>/dev/null; wait "$AGENT" 2>/dev/null
  fi
  for f in $(find /sys/fs/cgroup/*/$INST /sys/fs/cgroup/$INST -name cgroup.procs 2>/dev/null); do
    for p in $(cat "$f"); do kill -9 "$p" 2>/dev/null; done
  done
  grep -E " (/run/$INST|$W)" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
  for l in $(ls /sys/class/net/${INST}0/brif 2>/dev/null); do ip link del "$l"; done
  ip link del ${INST}0 2>/dev/null
  nft delete table inet $INST 2>/dev/null
  find /sys/fs/cgroup -maxdepth 3 -depth -type d -name "$INST*" 2>/dev/null | while read -r d; do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  rm -rf "/run/$INST"
  [ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
POD_CIDR=10.126.$NET.0/24
SVC_CIDR=10.126.$((NET + 1)).0/24
RUST_LOG=$RUST_LOG_AGENT "$BIN" --instance "$INST" \
  --manifests "$W/manifests" --state-dir "$W/state" --run-dir "/run/$INST" \
  --image-dir "$W/images" --listen "127.0.0.1:$PORT" --pod-cidr "$POD_CIDR" --service-cidr "$SVC_CIDR" \
  >"$W/agent.log" 2>&1 &
AGENT=$!
export BENCH_WORK=$W BENCH_BERTH=$BIN BENCH_PORT=$PORT BENCH_INSTANCE=$INST BENCH_SVC_CIDR=$SVC_CIDR BENCH_POD_CIDR=$POD_CIDR
