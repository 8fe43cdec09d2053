#!/usr/bin/env python3
"""bench/first_trace.sh's driver: a web Pod + Service N times, each step of
the agent's timing log as an offset from the manifest's rename."""

import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
W, PORT, N, VIP = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ.setdefault("BENCH_WORK", str(W))
os.environ.setdefault("BENCH_BERTH", "berth")
os.environ["BENCH_PORT"] = str(PORT)
os.environ["BENCH_SVC_CIDR"] = VIP.rsplit(".", 1)[0] + ".0/24"
import bench as B  # noqa: E402
import edge  # noqa: E402

STEPS = [
    "manifest change burst ended",
    "manifest scan published",
    "creating pod",
    "services programmed",
    "pod network ready",
    "pod sandbox ready",
    "image ready",
    "container running",
    "pod status published",
]


def stamp(line):
    try:
        return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
    except (ValueError, IndexError):
        return None


def events_since(log, t0_wall):
    out = []
    for line in log.read_text(errors="replace").splitlines():
        t = stamp(line)
        if t is None or t < t0_wall - 0.001:
            continue
        for s in STEPS:
            if s in line:
                name = s
                if s == "pod status published" and "phase=Some(" in line:
                    name += " " + line.split("phase=Some(")[1].split(")")[0].strip('"')
                out.append((name, (t - t0_wall) * 1000))
    return out


def main():
    B.wait_until(lambda: B.AGENT.get("/healthz") is not None, timeout=30, step=0.01, what="berth API")
    runs = []
    for i in range(N + 1):
        m = B.marker()
        doc = edge.web_pod("bt-first", m) + "---\n" + edge.service_doc("bt-first", VIP)
        t0_wall, t0 = time.time(), time.monotonic()
        B.put(W / "manifests" / "first.yaml", doc)
        B.wait_until(lambda: edge.http_ok(f"http://{VIP}/", 0.5, f"hello-{m}"), timeout=60, step=0.002, what="first 200")
        total = (time.monotonic() - t0) * 1000
        time.sleep(0.3)  # let the last log lines land
        ev = events_since(W / "agent.log", t0_wall)
        (W / "manifests" / "first.yaml").unlink()
        B.wait_until(lambda: B.none_running([m]), timeout=60, what="web removed")
        time.sleep(0.5)
        if i == 0:
            continue  # warm-up: the image is unpacked once
        seen = {}
        for name, off in ev:
            seen.setdefault(name, off)  # first occurrence of each step
        seen["first HTTP 200 (client)"] = total
        runs.append(seen)
        print(json.dumps({k: round(v, 1) for k, v in sorted(seen.items(), key=lambda kv: kv[1])}), flush=True)
    names = sorted({k for r in runs for k in r}, key=lambda k: statistics.median([r[k] for r in runs if k in r]))
    print(f"\nmedian over {len(runs)} runs, ms after the manifest's rename (uptime: {open('/proc/loadavg').read().split()[:3]})")
    for k in names:
        v = [r[k] for r in runs if k in r]
        print(f"  {statistics.median(v):7.1f}  {k}")


if __name__ == "__main__":
    main()
