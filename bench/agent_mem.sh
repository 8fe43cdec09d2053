#!/usr/bin/env bash
# Where the agent's memory goes after churn with 10 pods: 10 Pods started,
# removed, started again; 8 s later (the heap trim and the blocking pool's
# idle timeout have run) /proc/PID/smaps_rollup, the largest mappings by RSS
# (code, heap, thread stacks) and the thread count are printed, with the
# supervisors' RSS and PSS.
# Run as root from the repo: bench/agent_mem.sh [BERTH_BIN]
# Own instance btpam, CIDRs 10.126.42.0/24 + 10.126.43.0/24, API
# 127.0.0.1:17354, dirs under /var/tmp/berth-bench-am; cleans up on exit.
set -euo pipefail
BIN="${1:-target/release/berth}"
cd "$(dirname "$0")/.."
INST=btpam PORT=17354 NET=42 W=/var/tmp/berth-bench-am
RUST_LOG_AGENT=warn
. bench/lib/own_agent.sh
python3 bench/lib/agent_mem.py "$AGENT"
