#!/usr/bin/env python3
"""bench/agent_mem.sh's driver: churn with 10 pods, then the agent's memory."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

PID = int(sys.argv[1])


def rollup(pid):
    out = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        p = line.split()
        if len(p) >= 2 and p[0].endswith(":") and p[1].isdigit():
            out[p[0][:-1]] = int(p[1])
    return out


def mappings(pid):
    rows, cur = [], None
    for line in open(f"/proc/{pid}/smaps"):
        p = line.split()
        if len(p) >= 5 and "-" in p[0] and not p[0].endswith(":"):
            a, b = (int(x, 16) for x in p[0].split("-"))
            cur = {"perm": p[1], "path": " ".join(p[5:]) or "[anon]", "size": (b - a) // 1024}
            rows.append(cur)
        elif cur is not None and p and p[0] in ("Rss:", "Pss:", "Anonymous:"):
            cur[p[0][:-1]] = int(p[1])
    return rows


def main():
    B.wait_until(lambda: B.AGENT.get("/healthz") is not None, timeout=30, step=0.01, what="berth API")
    man = B.W / "manifests" / "mem.yaml"
    for round_ in range(2):
        ms = [B.marker() for _ in range(10)]
        B.put(man, "---\n".join(B.pod_doc(f"bt-mem{j:02d}", m) for j, m in enumerate(ms)))
        B.wait_until(lambda: B.all_running(ms), timeout=300, step=0.05, what="10 pods running")
        if round_ == 0:
            man.unlink()
            B.wait_until(lambda: B.none_running(ms) and B.berth_freed(), timeout=300, step=0.05, what="pods removed")
    time.sleep(8)
    r = rollup(PID)
    threads = len(list(Path(f"/proc/{PID}/task").iterdir()))
    print(f"agent pid {PID}, 10 pods after churn: Rss {r['Rss']} kB, Pss {r['Pss']} kB, "
          f"Anonymous {r['Anonymous']} kB, file-backed {r['Rss'] - r['Anonymous']} kB, threads {threads}")
    rows = sorted(mappings(PID), key=lambda m: -m.get("Rss", 0))
    stacks = [m for m in rows if m["path"] == "[anon]" and m["size"] in (2048, 2052, 8192)]
    print(f"  2 MiB anonymous mappings (thread stacks, allocator regions): {len(stacks)}, RSS {sum(m.get('Rss', 0) for m in stacks)} kB")
    for m in rows[:14]:
        print(f"  {m.get('Rss', 0):7d} kB rss {m.get('Anonymous', 0):7d} kB anon {m['size']:8d} kB size  {m['perm']} {m['path']}")
    sup = [p for p in B.pids_by_comm(["berth-supervis"]) if B.in_instance(p)]
    if sup:
        rss = [B.kib(p, "VmRSS:") for p in sup]
        pss = [B.kib(p, "Pss:", "smaps_rollup") for p in sup]
        print(f"supervisors: {len(sup)}, RSS mean {sum(rss) / len(rss):.0f} kB, PSS mean {sum(pss) / len(pss):.0f} kB, "
              f"stack PSS (agent + supervisors) {(r['Pss'] + sum(pss)) / 1024:.1f} MiB (uptime {open('/proc/loadavg').read().split()[:3]})")


if __name__ == "__main__":
    main()
