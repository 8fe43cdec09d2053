#!/bin/sh
# berth-net benchmark (root): ensure_pod p50/p95 over 30 pods and TCP throughput
# (bare veth baseline, pod-to-pod, 127.0.0.1 -> hostPort, pod -> Service VIP).
# Uses instance `btbench` and 10.123.60.0/23; cleans up after itself.
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-net}"
cargo build --release -q -p berth-net --example net_bench
exec "$CARGO_TARGET_DIR/release/examples/net_bench"
