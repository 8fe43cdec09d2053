#!/usr/bin/env bash
# bench/install.sh — what bench/run.sh needs on Debian 12: berth's own build
# dependencies plus the peers (podman with crun, conmon, netavark, catatonit
# for its local pause image; runc) and the load and timing tools (wrk,
# hyperfine). Idempotent; run as root.
set -euo pipefail
exec "$(dirname "$0")/../scripts/install-deps.sh" \
  podman crun runc conmon catatonit netavark aardvark-dns iptables uidmap wrk hyperfine
