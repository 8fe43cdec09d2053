#!/usr/bin/env bash
# bench/image.sh — berth-image benchmarks (issue 4). Prints figures, asserts nothing.
#
# 1. Unpack throughput of a ~100 MB layer made of real files (/usr/share/doc),
#    uncompressed and gzip, berth's unpack_layer (sha256 of blob + diff ID,
#    syncfs, commit by rename) against GNU `tar -x` (and `tar -x; sync -f`)
#    of the same blob in the same run. Median of 3, page cache warm.
# 2. Pull of a 3-layer image from a loopback Debian docker-registry: berth
#    fetch-only and fetch+unpack against `skopeo copy` to a dir:.
#
# Needs root, docker-registry, skopeo, umoci, busybox-static. Usage: bench/image.sh [WORKDIR]
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-/var/tmp/berth-bench-image}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-image}
REG_PID=
cleanup() { if [ -n "$REG_PID" ]; then kill "$REG_PID" 2>/dev/null || true; fi; wait 2>/dev/null || true; rm -rf "$W/x" "$W/reg" "$W/pull"; }
trap cleanup EXIT
rm -rf "$W"; mkdir -p "$W"

(cd "$HERE" && cargo build --quiet --release -p berth-image --example unpack_bench)
BIN=$CARGO_TARGET_DIR/release/examples/unpack_bench

median() { sort -n | sed -n 2p; }
now() { date +%s.%N; }

# --- 1. unpack ---
# /usr/share/doc: ~100 MB in ~5000 real files and symlinks on a Debian host
tar -C / -cf "$W/layer.tar" usr/share/doc
tar -tf "$W/layer.tar" > "$W/files"
gzip -1 -c "$W/layer.tar" > "$W/layer.tar.gz"
echo "layer: $(wc -l < "$W/files") entries, tar $(du -m "$W/layer.tar" | cut -f1) MB, gzip $(du -m "$W/layer.tar.gz" | cut -f1) MB"
MB=$(stat -c %s "$W/layer.tar" | awk '{print $1/1e6}')
for kind in tar tar.gz; do
  b=(); t=(); ts=()
  for i in 1 2 3; do
    rm -rf "$W/x"; mkdir -p "$W/x"
    b+=("$("$BIN" unpack "$W/layer.$kind" "$W/x/berth" | sed 's/.*: \([0-9.]*\) s,.*/\1/')")
    mkdir -p "$W/x/tar"; s=$(now); tar -xf "$W/layer.$kind" -C "$W/x/tar"; e=$(now)
    t+=("$(echo "$e - $s" | bc)")
    rm -rf "$W/x/tar"; mkdir -p "$W/x/tar"; s=$(now); tar -xf "$W/layer.$kind" -C "$W/x/tar"; sync -f "$W/x/tar"; e=$(now)
    ts+=("$(echo "$e - $s" | bc)")
  done
  bm=$(printf '%s\n' "${b[@]}" | median); tm=$(printf '%s\n' "${t[@]}" | median); tsm=$(printf '%s\n' "${ts[@]}" | median)
  printf 'unpack %-6s berth %.3f s (%.0f MB/s) | tar -x %.3f s (%.0f MB/s) | tar -x+sync %.3f s | berth/tar = %.2fx\n' \
    "$kind" "$bm" "$(echo "$MB / $bm" | bc -l)" "$tm" "$(echo "$MB / $tm" | bc -l)" "$tsm" "$(echo "$bm / $tm" | bc -l)"
done
rm -rf "$W/x"

# --- 2. pull of a 3-layer image ---
FX=$W/fixture
bash "$HERE/tests/fixtures/make-busybox-image.sh" "$FX" >/dev/null
cp -a "$FX/oci" "$W/oci"
for n in 2 3; do
  umoci unpack --image "$W/oci:1.36" "$W/bundle" >/dev/null 2>&1 || umoci unpack --image "$W/oci:l$((n-1))" "$W/bundle" >/dev/null
  head -c 20000000 /dev/urandom > "$W/bundle/rootfs/random$n"
  cp -a /usr/share/doc "$W/bundle/rootfs/doc$n"
  umoci repack --image "$W/oci:l$n" "$W/bundle" >/dev/null
  rm -rf "$W/bundle"
  umoci tag --image "$W/oci:l$n" 1.36  # next layer stacks on this one
done
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/reg"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' "$W/reg/data" "$PORT" > "$W/reg/config.yml"
docker-registry serve "$W/reg/config.yml" >/dev/null 2>&1 & REG_PID=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
skopeo copy --quiet --dest-tls-verify=false "oci:$W/oci:l3" "docker://127.0.0.1:$PORT/bench:3"
IMG=127.0.0.1:$PORT/bench:3
echo "image: $IMG, $(skopeo inspect --tls-verify=false --raw "docker://$IMG" | jq '.layers | length') layers, $(skopeo inspect --tls-verify=false --raw "docker://$IMG" | jq '[.layers[].size] | add / 1e6 | floor') MB compressed"
for i in 1 2 3; do
  rm -rf "$W/pull"; mkdir -p "$W/pull"
  s=$(now); skopeo copy --quiet --src-tls-verify=false "docker://$IMG" "dir:$W/pull/skopeo"; e=$(now)
  echo "run $i: skopeo copy to dir: $(echo "$e - $s" | bc | xargs printf '%.3f') s; $("$BIN" pull "$IMG" "$W/pull" | tr '\n' ';')"
done
