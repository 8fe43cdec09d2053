#!/usr/bin/env bash
# bench/lib/big_image.sh — the realistic image of bench/run.sh's image
# scenario, built locally from Debian packages (no registry image): layer 1 is
# a Debian bookworm minbase rootfs made by debootstrap, layer 2 adds Python's
# interpreter and standard library (the packages' files unpacked with
# dpkg-deb). About 100 MB unpacked in two layers.
#
# Built once and cached under /var/cache/berth-bench/bigimage-<hash>, where
# the hash covers this script, the suite, the mirror and the exact package
# versions apt resolves, so a changed input builds a new image. Prints the
# cache dir, which holds
#   oci/              OCI layout, tag "1"
#   big-oci.tar       oci-archive, ref berth.local/debian-big:1
#   big-docker.tar    docker-archive, RepoTags berth.local/debian-big:1
# Needs root, debootstrap, umoci, skopeo and the Debian mirror of
# /etc/apt/sources.list*. Safe to run concurrently (a lock, publish by rename).
set -euo pipefail
SUITE=bookworm
MIRROR=${BENCH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
REF=berth.local/debian-big:1
LAYER2=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib)
CACHE=/var/cache/berth-bench

for t in debootstrap umoci skopeo apt-get dpkg-deb flock sha256sum; do
  command -v "$t" >/dev/null || { echo "big_image.sh: missing $t" >&2; exit 1; }
done
versions=$(apt-cache policy "${LAYER2[@]}" 2>/dev/null | awk '/^[^ ]/{p=$1} /Candidate:/{print p, $2}')
hash=$( { cat "$0"; echo "$SUITE $MIRROR"; echo "$versions"; } | sha256sum | cut -c1-16)
OUT=$CACHE/bigimage-$hash
mkdir -p "$CACHE"; chmod 0700 "$CACHE"
exec 9>"$CACHE/.bigimage.lock"
flock -w 1800 9 || { echo "big_image.sh: lock timeout" >&2; exit 1; }
if [ -s "$OUT/big-oci.tar" ] && [ -s "$OUT/big-docker.tar" ] && [ -f "$OUT/oci/index.json" ]; then
  echo "$OUT"; exit 0
fi
# older builds of this image are stale now
find "$CACHE" -maxdepth 1 -name 'bigimage-*' ! -name "bigimage-$hash" -exec rm -rf {} + 2>/dev/null || true

W=$(mktemp -d "$CACHE/.work.XXXXXX")
trap 'rm -rf "$W"' EXIT
case "$(uname -m)" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; *) ARCH=$(dpkg --print-architecture) ;; esac

echo "big_image.sh: debootstrap $SUITE minbase (once; cached in $OUT)" >&2
debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$W/base" "$MIRROR" >"$W/debootstrap.log" 2>&1 ||
  { tail -20 "$W/debootstrap.log" >&2; exit 1; }
rm -rf "$W/base/var/cache/apt/archives/"*.deb "$W/base/var/lib/apt/lists/"* "$W/base/var/log/"*
mkdir -p "$W/debs"
(cd "$W/debs" && apt-get download -q "${LAYER2[@]}" >/dev/null 2>&1) ||
  { echo "big_image.sh: apt-get download ${LAYER2[*]} failed" >&2; exit 1; }

umoci init --layout "$W/oci"
umoci new --image "$W/oci:1"
# layer 1: the debootstrap rootfs
umoci unpack --image "$W/oci:1" "$W/bundle" >/dev/null
rm -rf "$W/bundle/rootfs"; mv "$W/base" "$W/bundle/rootfs"
umoci repack --image "$W/oci:1" "$W/bundle"
rm -rf "$W/bundle"
# layer 2: Python on top
umoci unpack --image "$W/oci:1" "$W/bundle" >/dev/null
for d in "$W"/debs/*.deb; do dpkg-deb -x "$d" "$W/bundle/rootfs"; done
umoci repack --image "$W/oci:1" "$W/bundle"
rm -rf "$W/bundle"
umoci config --image "$W/oci:1" --config.cmd /bin/bash \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / --architecture "$ARCH" --os linux --author berth-bench
umoci gc --layout "$W/oci"
skopeo copy --quiet "oci:$W/oci:1" "oci-archive:$W/big-oci.tar:$REF"
skopeo copy --quiet "oci:$W/oci:1" "docker-archive:$W/big-docker.tar:$REF"
mkdir -p "$W/out"; mv "$W/oci" "$W/big-oci.tar" "$W/big-docker.tar" "$W/out/"
rm -rf "$OUT"; mv "$W/out" "$OUT"
echo "$OUT"
