#!/usr/bin/env bash
# bench/install.sh — what bench/run.sh needs on Debian 12, besides berth's own
# build dependencies (scripts/install-deps.sh): the peers (podman with crun,
# conmon, netavark, catatonit for its local pause image; runc), the load and
# timing tools (wrk, hyperfine) and python3. Idempotent; run as root.
set -euo pipefail
PKGS=(podman crun runc conmon catatonit netavark aardvark-dns iptables uidmap
      wrk hyperfine python3 jq busybox-static umoci skopeo nftables iproute2 procps)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
