#!/usr/bin/env bash
# Where berth's manifest -> first HTTP 200 through a Service goes: the agent
# runs with its timing events on (RUST_LOG berth::timing=debug), a web Pod and
# its Service land in the watched directory N times, and each step's offset
# from the file's rename is printed (median over the runs), beside the first
# 200 seen by a client polling the Service VIP.
# Run as root from the repo: bench/first_trace.sh [N] [BERTH_BIN]
# Own instance btpft, CIDRs 10.126.40.0/24 + 10.126.41.0/24, API
# 127.0.0.1:17353, dirs under /var/tmp/berth-bench-ft; cleans up on exit.
set -euo pipefail
N="${1:-5}"
BIN="${2:-target/release/berth}"
cd "$(dirname "$0")/.."
INST=btpft PORT=17353 NET=40 W=/var/tmp/berth-bench-ft
RUST_LOG_AGENT=warn,berth::timing=debug,berth_reconciler=info
. bench/lib/own_agent.sh
python3 bench/lib/first_trace.py "$W" "$PORT" "$N" 10.126.41.10
