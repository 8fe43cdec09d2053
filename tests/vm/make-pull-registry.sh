#!/usr/bin/env bash
# make-pull-registry.sh BUSYBOX_OCI_DIR OUTDIR — the registry the VM test's
# power cut during an image pull reads from: Debian's docker-registry storage
# (OUTDIR/data) holding berth-vmtest/big:1, the busybox image plus a layer
# of 96 MiB of random bytes (/big) and its checksum (/big.sha256), so a pull
# under TCG takes long enough to be cut in the middle. OUTDIR/config.yml
# serves it read-only on 127.0.0.1:5000 inside the guest (from the 9p share).
#
# Built on the host with a throwaway docker-registry on 127.0.0.1:$PORT
# (default 17341; loopback only, killed by PID) and skopeo; kept in OUTDIR
# (a cache: later runs are instant; delete OUTDIR to rebuild). Published by
# rename, so an interrupted build leaves nothing half-made.
set -euo pipefail
SRC=${1:?usage: $0 BUSYBOX_OCI_DIR OUTDIR}
OUT=${2:?usage: $0 BUSYBOX_OCI_DIR OUTDIR}
PORT=${BERTH_VM_REGISTRY_PORT:-17341}
REPO=berth-vmtest/big:1
for t in docker-registry skopeo umoci curl flock; do
  command -v "$t" >/dev/null || { echo "make-pull-registry.sh: missing $t (apt-get install docker-registry skopeo umoci curl)" >&2; exit 2; }
done
[ -f "$SRC/index.json" ] || { echo "make-pull-registry.sh: no OCI layout at $SRC" >&2; exit 2; }
mkdir -p "$(dirname "$OUT")"
exec 9>"$OUT.lock"
flock -w 600 9 || { echo "make-pull-registry.sh: $OUT.lock is held" >&2; exit 2; }
if [ -s "$OUT/config.yml" ] && [ -s "$OUT/big.sha256" ] && [ -d "$OUT/data/docker/registry/v2/repositories" ]; then
  exit 0
fi

W=$(mktemp -d "$OUT.build.XXXXXX")
RPID=
cleanup() {
  if [ -n "$RPID" ]; then kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

cp -a "$SRC" "$W/oci"
umoci unpack --image "$W/oci:1.36" "$W/bundle" >/dev/null
head -c $((96 << 20)) /dev/urandom > "$W/bundle/rootfs/big"
(cd "$W/bundle/rootfs" && sha256sum big | sed 's|  big$|  /big|' > big.sha256)
cp "$W/bundle/rootfs/big.sha256" "$W/big.sha256"
umoci repack --image "$W/oci:big" "$W/bundle" >/dev/null
rm -rf "$W/bundle"

cat > "$W/build.yml" <<EOF
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $W/data}
http: {addr: 127.0.0.1:$PORT}
EOF
docker-registry serve "$W/build.yml" >"$W/registry.log" 2>&1 &
RPID=$!
for _ in $(seq 100); do curl -fsS -m 2 "http://127.0.0.1:$PORT/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS -m 2 "http://127.0.0.1:$PORT/v2/" >/dev/null || { cat "$W/registry.log" >&2; echo "make-pull-registry.sh: registry on 127.0.0.1:$PORT did not answer" >&2; exit 2; }
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci:big" "docker://127.0.0.1:$PORT/$REPO"
kill "$RPID"; wait "$RPID" 2>/dev/null || true; RPID=
rm -rf "$W/oci" "$W/build.yml" "$W/registry.log"

# the guest's copy: read-only, loopback only, data from the share
cat > "$W/config.yml" <<'EOF'
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: /mnt/ctl/registry/data}
  maintenance:
    readonly: {enabled: true}
  redirect: {disable: true}
http: {addr: 127.0.0.1:5000}
EOF
rm -rf "$OUT"
mv "$W" "$OUT"
trap - EXIT
