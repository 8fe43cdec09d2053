#!/usr/bin/env python3
"""berth side by side with podman (kube play), crun and runc, in one run.

Started by bench/run.sh, which installs the tools, builds berth, builds the
busybox image, prepares the host for podman/crun and cleans up afterwards.
This file runs the scenarios, back to back and interleaved per iteration, and
writes the results as JSON and markdown. Only stdlib.

Every scenario uses the same manifest for berth and for podman. A container's
process is found by a unique marker in its command (`sleep <marker>`), by
scanning /proc: neither tool is asked whether it is done.
"""

import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ENV = os.environ
W = Path(ENV["BENCH_WORK"])  # work dir (manifests, logs, state)
BERTH = ENV["BENCH_BERTH"]  # release berth binary
START_BENCH = ENV.get("BENCH_START_BENCH", "")  # runtime/examples/start_bench
INST = ENV.get("BENCH_INSTANCE", "btbr")
PORT = int(ENV.get("BENCH_PORT", "17660"))
POD_CIDR = ENV.get("BENCH_POD_CIDR", "10.126.16.0/24")
SVC_CIDR = ENV.get("BENCH_SVC_CIDR", "10.126.17.0/24")
HOSTPORT = int(ENV.get("BENCH_HOSTPORT", "17661"))
QUICK = bool(ENV.get("BENCH_QUICK"))  # bench/run.sh --quick: fewer iterations, about 10 min
N = int(ENV.get("BENCH_N", "3" if QUICK else "10"))  # iterations of the one-pod scenarios
R = int(ENV.get("BENCH_R", "1" if QUICK else "4"))  # iterations of the 20-pod scenarios
STEADY = [int(x) for x in ENV.get("BENCH_STEADY", "1 10 100").split()]
STEADY_S = int(ENV.get("BENCH_STEADY_S", "5" if QUICK else "30"))
SCALE = [int(x) for x in ENV.get("BENCH_SCALE", "1 10 50 100 200").split()]
SCALE_PEER_MAX = int(ENV.get("BENCH_SCALE_PEER_MAX", "50" if QUICK else "200"))
SCALE_ROUNDS = int(ENV.get("BENCH_SCALE_ROUNDS", "1"))  # samples per size of the scaling curve
SCALE_STEP = float(ENV.get("BENCH_SCALE_STEP", "0.25"))  # s between its /proc scans (see edge.scale_once)
RESTART_SIZES = [int(x) for x in ENV.get("BENCH_RESTART_SIZES", "0 10 100").split()]
ONLY = set(ENV.get("BENCH_ONLY", "").split())
IMAGE = "berth.local/busybox:1.36"
RESULTS = []  # rows of the table
NOTES = []

API = f"http://127.0.0.1:{PORT}"
MAN = W / "manifests"  # berth's watched directory
PM = W / "podman"  # podman's copies of the same manifests
MARK = [int(time.time()) % 10000 * 1000 + 100000]  # unique sleep markers


def marker():
    MARK[0] += 1
    return MARK[0]


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------- manifests


def pod_doc(name, m, host_network=False, host_port=None):
    """A Pod whose container runs `sleep m` under a shell that exits on TERM."""
    lines = [
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        f"  name: {name}",
    ]
    lines += ["spec:", "  restartPolicy: Always", "  terminationGracePeriodSeconds: 10"]
    if host_network:
        lines.append("  hostNetwork: true")
    lines += [
        "  containers:",
        "  - name: main",
        f"    image: {IMAGE}",
        "    imagePullPolicy: IfNotPresent",
        f"    command: [\"sh\", \"-c\", \"trap 'exit 0' TERM; sleep {m} & wait\"]",
    ]
    if host_port:
        lines += ["    ports:", f"    - containerPort: 8080", f"      hostPort: {host_port}"]
    return "\n".join(lines) + "\n"


def put(path, text):
    """Atomic write: temp file + rename, as an editor or `git checkout` does."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


# ---------------------------------------------------------------- processes


def scan(markers):
    """marker -> set of pids whose cmdline is `sleep <marker>`."""
    want = {str(m).encode(): m for m in markers}
    found = {m: set() for m in markers}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                c = f.read()
        except OSError:
            continue
        parts = c.split(b"\0")
        if len(parts) >= 2 and parts[0].endswith(b"sleep") and parts[1] in want:
            found[want[parts[1]]].add(int(d))
    return found


def wait_until(pred, timeout=120, step=0.002, what="condition"):
    t_end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > t_end:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def all_running(markers, exclude=None):
    exclude = exclude or set()
    f = scan(markers)
    return all(f[m] - exclude for m in markers)


def boot_now():
    """Now on the clock /proc/PID/stat's start times count from (boot time)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def started_at(markers):
    """Boot-clock seconds at which the last marker's process started (its first
    `sleep`, by the kernel's own start stamp in /proc/PID/stat, 1/CLK_TCK
    resolution, rounded down), or None while one is missing. Read after
    `all_running`, so the time taken does not depend on how often one polls."""
    hz = os.sysconf("SC_CLK_TCK")
    last = 0.0
    for m, pids in scan(markers).items():
        first = None
        for pid in pids:
            try:
                s = open(f"/proc/{pid}/stat").read()
            except OSError:
                continue
            t = int(s[s.rindex(")") + 2 :].split()[19]) / hz
            first = t if first is None else min(first, t)
        if first is None:
            return None
        last = max(last, first)
    return last


def none_running(markers):
    f = scan(markers)
    return not any(f[m] for m in markers)


def berth_freed():
    """No pod cgroup left under the instance, no veth on the bridge."""
    for h in ("pids", "memory", "cpu,cpuacct", "unified", ""):
        base = Path("/sys/fs/cgroup") / h / INST if h else Path("/sys/fs/cgroup") / INST
        if base.is_dir() and any(p.is_dir() for p in base.iterdir()):
            return False
    brif = Path(f"/sys/class/net/{INST}0/brif")
    return not (brif.is_dir() and any(brif.iterdir()))


def sh(cmd, check=True, **kw):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return r


def kib(pid, key, f="status"):
    try:
        for line in open(f"/proc/{pid}/{f}"):
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def top_mappings(pid, k=8):
    """The k largest mappings of pid by RSS, as 'rss_kib name' strings."""
    out, cur = [], None
    try:
        for line in open(f"/proc/{pid}/smaps"):
            f = line.split()
            if f and "-" in f[0] and len(f) >= 5 and len(f[1]) == 4:
                cur = (f[1] + " " + (f[5] if len(f) > 5 else "[anon]")).strip()
            elif f and f[0] == "Rss:" and cur:
                out.append((int(f[1]), cur))
    except OSError:
        return []
    out.sort(reverse=True)
    return [f"{r} kB {n}" for r, n in out[:k]]


def cpu_ticks(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
        f = s[s.rindex(")") + 2 :].split()
        return int(f[11]) + int(f[12])  # utime + stime
    except (OSError, ValueError):
        return 0


def pids_by_comm(prefixes):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                c = open(f"/proc/{d}/comm").read().strip()
            except OSError:
                continue
            if any(c.startswith(p) for p in prefixes):
                out.append(int(d))
    return out


def in_instance(pid, inst=None):
    """The process sits in a cgroup of this bench's berth instance (other
    agents' supervisors on the same host are not ours to count)."""
    try:
        return f"/{inst or INST}/" in open(f"/proc/{pid}/cgroup").read()
    except OSError:
        return False


def system_ticks():
    f = open("/proc/stat").readline().split()[1:]
    return sum(int(x) for x in f)


# ---------------------------------------------------------------- stats


def pct(v, p):
    v = sorted(v)
    if not v:
        return float("nan")
    i = max(0, min(len(v) - 1, int(round(p * (len(v) - 1)))))
    return v[i]


def row(scenario, berth, peer_name, peer, unit="ms", goal="", higher_better=False):
    """berth/peer: lists of samples."""
    r = {
        "scenario": scenario,
        "unit": unit,
        "berth": berth,
        "peer_name": peer_name,
        "peer": peer,
        "goal": goal,
        "higher_better": higher_better,
    }
    RESULTS.append(r)
    b50, p50 = pct(berth, 0.5), pct(peer, 0.5)
    log(
        f"  -> {scenario}: berth p50 {b50:.1f} p95 {pct(berth, 0.95):.1f} {unit} | "
        f"{peer_name} p50 {p50:.1f} p95 {pct(peer, 0.95):.1f} {unit} | ratio {b50 / p50 if p50 else float('nan'):.2f}"
    )
    save()


def save():
    (W / "results.json").write_text(json.dumps({"rows": RESULTS, "notes": NOTES}, indent=1))


# ---------------------------------------------------------------- berth agent


class Agent:
    def __init__(self):
        self.proc = None

    def start(self):
        MAN.mkdir(parents=True, exist_ok=True)
        (MAN / "README.yaml").write_text("# berth bench: manifests appear here\n")
        self.spawn()
        wait_until(lambda: self.get("/healthz") is not None, timeout=30, step=0.05, what="berth API")

    def spawn(self):
        """Start the agent process (the API comes up a moment later)."""
        self.log = open(W / "agent.log", "ab")
        self.proc = subprocess.Popen(
            [
                BERTH,
                "--instance", INST,
                "--manifests", str(MAN),
                "--state-dir", str(W / "state"),
                "--run-dir", f"/run/{INST}",
                "--image-dir", str(W / "images"),
                "--listen", f"127.0.0.1:{PORT}",
                "--pod-cidr", POD_CIDR,
                "--service-cidr", SVC_CIDR,
                "--node-name", "bench",
            ],
            stdout=self.log,
            stderr=self.log,
            env={**ENV, "RUST_LOG": ENV.get("BENCH_RUST_LOG", "warn")},
        )
        (W / "agent.pid").write_text(str(self.proc.pid))

    def get(self, path):
        try:
            with urllib.request.urlopen(API + path, timeout=2) as r:
                body = r.read()
                if r.status != 200:
                    return None
                try:
                    return json.loads(body)
                except ValueError:
                    return body.decode(errors="replace") or "ok"
        except Exception:
            return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


AGENT = Agent()


def berth_clear():
    for f in MAN.glob("*.yaml"):
        if f.name != "README.yaml":
            f.unlink()


# ---------------------------------------------------------------- podman


def podman(*args, check=True):
    return sh(["podman", *args], check=check)


def podman_down(path):
    """`podman kube down`; podman 4.3 on this v1 host sometimes exits 125
    with EBUSY on a pod's hugetlb cgroup after its containers are gone. The
    callers wait for the processes to be gone; the error goes in the notes."""
    r = podman("kube", "down", str(path), check=False)
    if r.returncode != 0:
        first = (r.stderr.strip().splitlines() or [""])[0][:200]
        note = f"podman kube down exited {r.returncode} (pods removed anyway): {first}"
        if note not in NOTES:
            NOTES.append(note)


def podman_down(path):
    podman("kube", "down", str(path), check=False)


# ---------------------------------------------------------------- scenarios


def one_pod(net):
    """Pod YAML lands -> process running; file deleted -> gone and freed."""
    hn = net == "host"
    start_b, start_p, rm_b, rm_p = [], [], [], []
    for i in range(N + 1):  # the first is a warm-up
        # berth
        m = marker()
        doc = pod_doc(f"bt-one-{net}", m, host_network=hn, host_port=None if hn else HOSTPORT)
        f = MAN / f"one-{net}.yaml"
        t0 = time.monotonic()
        put(f, doc)
        wait_until(lambda: all_running([m]), what="berth pod running")
        t1 = time.monotonic()
        f.unlink()
        wait_until(lambda: none_running([m]) and berth_freed(), what="berth pod removed")
        t2 = time.monotonic()
        # podman, same manifest
        m = marker()
        doc = pod_doc(f"bt-one-{net}", m, host_network=hn, host_port=None if hn else HOSTPORT)
        pf = PM / f"one-{net}.yaml"
        pf.write_text(doc)
        t3 = time.monotonic()
        podman("kube", "play", str(pf))
        wait_until(lambda: all_running([m]), what="podman pod running")
        t4 = time.monotonic()
        podman("kube", "down", str(pf))
        wait_until(lambda: none_running([m]), what="podman pod removed")
        t5 = time.monotonic()
        if i > 0:
            start_b.append((t1 - t0) * 1000)
            rm_b.append((t2 - t1) * 1000)
            start_p.append((t4 - t3) * 1000)
            rm_p.append((t5 - t4) * 1000)
    label = "host network" if hn else "bridge + hostPort"
    row(f"1 Pod file -> running ({label})", start_b, "podman kube play", start_p, goal="<= 0.5x")
    row(f"1 Pod removed -> gone, freed ({label})", rm_b, "podman kube down", rm_p, goal="<= 0.1x")


def twenty_pods():
    n = 20
    one_b, one_p, files_b, files_p, rm_b, rm_p = [], [], [], [], [], []
    for i in range(R + 1):
        # one file with 20 pods
        ms = [marker() for _ in range(n)]
        docs = "---\n".join(pod_doc(f"bt-s{j:02d}", m) for j, m in enumerate(ms))
        t0 = time.monotonic()
        put(MAN / "twenty.yaml", docs)
        wait_until(lambda: all_running(ms), what="berth 20 pods running")
        t1 = time.monotonic()
        (MAN / "twenty.yaml").unlink()
        wait_until(lambda: none_running(ms) and berth_freed(), what="berth 20 pods removed")
        t2 = time.monotonic()
        ms = [marker() for _ in range(n)]
        pf = PM / "twenty.yaml"
        pf.write_text("---\n".join(pod_doc(f"bt-s{j:02d}", m) for j, m in enumerate(ms)))
        t3 = time.monotonic()
        podman("kube", "play", str(pf))
        wait_until(lambda: all_running(ms), what="podman 20 pods running")
        t4 = time.monotonic()
        podman("kube", "down", str(pf))
        wait_until(lambda: none_running(ms), what="podman 20 pods removed")
        t5 = time.monotonic()
        # 20 files at once
        ms = [marker() for _ in range(n)]
        tmps = []
        for j, m in enumerate(ms):
            t = MAN / f".f{j:02d}.tmp"
            t.write_text(pod_doc(f"bt-f{j:02d}", m))
            tmps.append(t)
        t6 = time.monotonic()
        for j, t in enumerate(tmps):
            os.rename(t, MAN / f"f{j:02d}.yaml")
        wait_until(lambda: all_running(ms), what="berth 20 files running")
        t7 = time.monotonic()
        berth_clear()
        wait_until(lambda: none_running(ms) and berth_freed(), what="berth 20 files removed")
        ms = [marker() for _ in range(n)]
        files = []
        for j, m in enumerate(ms):
            p = PM / f"f{j:02d}.yaml"
            p.write_text(pod_doc(f"bt-f{j:02d}", m))
            files.append(str(p))
        t8 = time.monotonic()
        procs = [subprocess.Popen(["podman", "kube", "play", f], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for f in files]
        for p in procs:
            if p.wait() != 0:
                raise RuntimeError("podman kube play failed: " + p.stderr.read().decode()[:300])
        wait_until(lambda: all_running(ms), what="podman 20 files running")
        t9 = time.monotonic()
        procs = [subprocess.Popen(["podman", "kube", "down", f], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for f in files]
        for p in procs:
            p.wait()
        wait_until(lambda: none_running(ms), what="podman 20 files removed")
        if i > 0:
            one_b.append((t1 - t0) * 1000)
            rm_b.append((t2 - t1) * 1000)
            one_p.append((t4 - t3) * 1000)
            rm_p.append((t5 - t4) * 1000)
            files_b.append((t7 - t6) * 1000)
            files_p.append((t9 - t8) * 1000)
    row("20 Pods in one file -> all running", one_b, "podman kube play", one_p, goal="<= 0.3x")
    row("20 Pod files at once -> all running", files_b, "20 x podman kube play, parallel", files_p, goal="<= 0.3x")
    row("20 Pods removed -> gone, freed", rm_b, "podman kube down", rm_p, goal="<= 0.1x")


def restart():
    """SIGKILL the container's main process -> a new one runs (first restart)."""
    b, p = [], []

    def one(start, stop):
        m = marker()
        start(m)
        pids = wait_until(lambda: (lambda f: f[m] or None)(scan([m])), what="pod running")
        time.sleep(0.3)
        # the container's main process is the `sh` parent of the sleep
        sleep_pid = next(iter(pids))
        main = int(open(f"/proc/{sleep_pid}/stat").read().rsplit(")", 1)[1].split()[1])
        t0 = time.monotonic()
        os.kill(main, signal.SIGKILL)
        wait_until(lambda: all_running([m], exclude=pids), what="restarted")
        d = (time.monotonic() - t0) * 1000
        stop(m)
        return d

    def b_start(m):
        put(MAN / "restart.yaml", pod_doc("bt-restart", m))

    def b_stop(m):
        (MAN / "restart.yaml").unlink()
        wait_until(lambda: none_running([m]) and berth_freed(), what="removed")

    pf = PM / "restart.yaml"

    def p_start(m):
        pf.write_text(pod_doc("bt-restart", m))
        podman("kube", "play", str(pf))

    def p_stop(m):
        podman("kube", "down", str(pf))

    for i in range(N + 1):
        db = one(b_start, b_stop)
        dp = one(p_start, p_stop)
        if i > 0:
            b.append(db)
            p.append(dp)
    row("SIGKILL -> new process running (first restart)", b, "podman, restartPolicy Always", p)


def raw_start():
    if not START_BENCH:
        NOTES.append("raw start: start_bench not built, skipped")
        return
    r = sh([START_BENCH, str(max(N * 2, 20))], timeout=900)
    out = r.stdout
    (W / "start_bench.txt").write_text(out)
    log(out)

    def grab(label):
        mm = re.search(re.escape(label) + r".*?p50\s+([\d.]+) ms\s+p95\s+([\d.]+) ms", out)
        return [float(mm.group(1)), float(mm.group(2))] if mm else None

    b = grab("berth run+wait+remove (/bin/true)")
    for peer, label in (("crun run", "crun run -b"), ("runc run", "runc run -b")):
        pv = grab(label)
        if b and pv:
            # p50 and p95 come from the same interleaved run; keep them as a 2-sample list
            RESULTS.append(
                {
                    "scenario": "raw start: create+start+wait+delete /bin/true",
                    "unit": "ms",
                    "berth": b,
                    "peer_name": peer,
                    "peer": pv,
                    "goal": "<= 3x crun" if peer == "crun run" else "",
                    "higher_better": False,
                    "p50p95": True,
                }
            )
        else:
            mm = re.search(re.escape(peer) + r"\s+(failed: .*|not installed)", out)
            NOTES.append(f"raw start vs {peer}: {mm.group(1) if mm else 'no figures'}")
    mm = re.search(r"shim pid \d+: VmRSS (\d+) KiB, Pss (\d+) KiB", out)
    if mm:
        NOTES.append(f"start_bench shim (one container): VmRSS {mm.group(1)} KiB, Pss {mm.group(2)} KiB")
    save()


def steady(n):
    """n pods running: time to all running, then memory and CPU over STEADY_S."""
    hz = os.sysconf("SC_CLK_TCK")
    res = {}
    for tool in ("berth", "podman"):
        ms = [marker() for _ in range(n)]
        docs = "---\n".join(pod_doc(f"bt-st{j:03d}", m) for j, m in enumerate(ms))
        t0 = time.monotonic()
        if tool == "berth":
            put(MAN / "steady.yaml", docs)
        else:
            pf = PM / "steady.yaml"
            pf.write_text(docs)
            podman("kube", "play", str(pf))
        wait_until(lambda: all_running(ms), timeout=600, step=0.02, what=f"{tool} {n} pods running")
        up = (time.monotonic() - t0) * 1000
        time.sleep(5)
        if tool == "berth":
            helpers = [p for p in pids_by_comm(["berth-shim", "berth-supervis"]) if in_instance(p)]
            mains = [AGENT.proc.pid]
        else:
            helpers = pids_by_comm(["conmon"])
            mains = []
        rss = [kib(p, "VmRSS:") for p in helpers]
        pss = [kib(p, "Pss:", "smaps_rollup") for p in helpers]
        main_pss = sum(kib(p, "Pss:", "smaps_rollup") for p in mains)
        t_sys0 = system_ticks()
        c0 = {p: cpu_ticks(p) for p in helpers + mains}
        time.sleep(STEADY_S)
        c1 = {p: cpu_ticks(p) for p in helpers + mains}
        secs = STEADY_S
        helper_cpu = sum(c1[p] - c0[p] for p in helpers) / hz / secs * 100
        main_cpu = sum(c1[p] - c0[p] for p in mains) / hz / secs * 100
        if tool == "berth":
            log(f"  steady {n} berth agent's largest mappings at the end: " + "; ".join(top_mappings(AGENT.proc.pid)))
        res[tool] = {
            "up_ms": up,
            "helpers": len(helpers),
            "helper_rss_kib": sum(rss) / max(1, len(rss)),
            "helper_pss_kib": sum(pss) / max(1, len(pss)),
            "helper_cpu_pct": helper_cpu,
            "main_rss_kib": sum(kib(p, "VmRSS:") for p in mains),
            "stack_pss_kib": sum(pss) + main_pss,
            "main_cpu_pct": main_cpu,
        }
        t1 = time.monotonic()
        if tool == "berth":
            (MAN / "steady.yaml").unlink()
            wait_until(lambda: none_running(ms) and berth_freed(), timeout=600, step=0.02, what="berth removed")
        else:
            podman_down(PM / "steady.yaml")
            wait_until(lambda: none_running(ms), timeout=600, step=0.02, what="podman removed")
        res[tool]["down_ms"] = (time.monotonic() - t1) * 1000
        log(f"  steady {n} {tool}: {res[tool]}")
    b, p = res["berth"], res["podman"]
    row(f"{n} Pods in one file -> all running", [b["up_ms"]], "podman kube play", [p["up_ms"]])
    row(f"{n} Pods removed -> gone", [b["down_ms"]], "podman kube down", [p["down_ms"]])
    row(
        f"{n} Pods: per-container supervisor RSS",
        [b["helper_rss_kib"] / 1024],
        "conmon",
        [p["helper_rss_kib"] / 1024],
        unit="MiB",
        goal="< 1 MiB",
    )
    row(
        f"{n} Pods: per-container supervisor PSS",
        [b["helper_pss_kib"] / 1024],
        "conmon",
        [p["helper_pss_kib"] / 1024],
        unit="MiB",
    )
    row(
        f"{n} Pods: whole stack PSS at idle (agent + supervisors)",
        [b["stack_pss_kib"] / 1024],
        "conmons (podman has no daemon)",
        [p["stack_pss_kib"] / 1024],
        unit="MiB",
        goal="< 20 MB; Ankaios ~11 MB (published)" if n == 10 else "",
    )
    row(
        f"{n} Pods: agent RSS (podman has no daemon)",
        [b["main_rss_kib"] / 1024],
        "-",
        [],
        unit="MiB",
        goal="< 20 MB" if n == 10 else "",
    )
    row(
        f"{n} Pods: CPU over {STEADY_S} s, agent + supervisors (% of a core)",
        [b["main_cpu_pct"] + b["helper_cpu_pct"]],
        "conmons",
        [p["helper_cpu_pct"]],
        unit="%",
        goal="< 1 %" if n >= 100 else "",
    )


def wrk(url, secs):
    r = sh(["wrk", "-t1", "-c8", f"-d{secs}s", "--latency", url], timeout=secs + 30)
    mm = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", r.stdout)
    if errs:
        raise RuntimeError(f"wrk {url}: {errs.group(0)}")
    return float(mm.group(1))


def http():
    """Requests/s of one HTTP server per path: direct to the pod IP, via a
    Service VIP, via a hostPort on 127.0.0.1; podman's pod IP and hostPort.

    busybox httpd closes every connection first, so each request leaves a
    TIME_WAIT socket in the server's netns for 60 s, and the client walks its
    ~28k ephemeral ports per destination. With `tcp_timestamps=1` (Linux's
    default: a random timestamp offset per connection) a new SYN that lands
    on a tuple still in TIME_WAIT fails PAWS half the time: the server answers
    with an ACK, the client resets and resends its SYN 10-15 ms later. Two
    paths that end at the same server (the Service VIP and the pod IP are the
    same tuple after DNAT; a masqueraded hostPort is too) poison each other,
    and the path measured later in a round looked 2-4x slower (issue 21's
    "bimodal" VIP figure). So every path gets its own pod, and a path never
    sends more connections per minute than one port range.
    """
    secs = int(ENV.get("BENCH_WRK_S", "1"))
    rounds = int(ENV.get("BENCH_WRK_ROUNDS", "3"))
    m = marker()

    def pod(name, app, host_port=None):
        hp = f"\n      hostPort: {host_port}" if host_port else ""
        return f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {app}}}
spec:
  containers:
  - name: web
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /tmp/w && echo hello-{m} > /tmp/w/index.html && exec httpd -f -p 8080 -h /tmp/w"]
    ports:
    - containerPort: 8080{hp}
"""

    svc = """apiVersion: v1
kind: Service
metadata:
  name: bt-web
spec:
  selector: {app: bt-web-vip}
  ports:
  - port: 80
    targetPort: 8080
"""
    web = "---\n".join([pod("bt-web-direct", "bt-web-direct"), pod("bt-web-vip", "bt-web-vip"), pod("bt-web-hp", "bt-web-hp", HOSTPORT), svc])
    put(MAN / "web.yaml", web)

    def ready():
        ips = {}
        for n in ("bt-web-direct", "bt-web-vip", "bt-web-hp"):
            p = AGENT.get(f"/api/v1/namespaces/default/pods/{n}")
            ips[n] = p and p.get("status", {}).get("podIP")
        s = AGENT.get("/api/v1/namespaces/default/services/bt-web")
        vip = s and s.get("spec", {}).get("clusterIP")
        if not (all(ips.values()) and vip):
            return None
        try:
            urllib.request.urlopen(f"http://{ips['bt-web-direct']}:8080/", timeout=1).read()
            urllib.request.urlopen(f"http://{vip}/", timeout=1).read()
            urllib.request.urlopen(f"http://127.0.0.1:{HOSTPORT}/", timeout=1).read()
            return ips["bt-web-direct"], vip
        except Exception:
            return None

    ip, vip = wait_until(ready, timeout=60, step=0.2, what="web pods and service")
    # podman: one Pod for its pod IP, another for its hostPort
    pport = HOSTPORT + 1
    pf = PM / "web.yaml"
    pf.write_text(pod("bt-web-pd", "bt-web-pd") + "---\n" + pod("bt-web-ph", "bt-web-ph", pport))
    podman("kube", "play", str(pf))
    fmt_ip = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    pip = podman("inspect", "-f", fmt_ip, "bt-web-pd-web").stdout.strip()
    if not pip:  # kube play: the network belongs to the pod's infra container
        infra = podman("pod", "inspect", "-f", "{{.InfraContainerID}}", "bt-web-pd").stdout.strip()
        pip = podman("inspect", "-f", fmt_ip, infra).stdout.strip()
    wait_until(lambda: sh(["wrk", "-t1", "-c1", "-d1s", f"http://{pip}:8080/"], check=False).returncode == 0, timeout=30, step=0.2, what="podman web")
    wait_until(lambda: sh(["wrk", "-t1", "-c1", "-d1s", f"http://127.0.0.1:{pport}/"], check=False).returncode == 0, timeout=30, step=0.2, what="podman hostPort")
    targets = {
        "direct": f"http://{ip}:8080/",
        "vip": f"http://{vip}:80/",
        "hostport": f"http://127.0.0.1:{HOSTPORT}/",
        "p_direct": f"http://{pip}:8080/",
        "p_hostport": f"http://127.0.0.1:{pport}/",
    }
    got = {k: [] for k in targets}
    syn = {k: 0 for k in targets}
    # the readiness probes above left TIME_WAIT sockets; let them go
    time.sleep(61)
    for _ in range(rounds):
        for k, u in targets.items():
            before = syn_retrans()
            got[k].append(wrk(u, secs))
            syn[k] += syn_retrans() - before
    log(f"  http req/s: {got}; SYN retransmissions per path: {syn}")
    NOTES.append(
        "HTTP: one server pod per path (see bench.py http()); SYN retransmissions per path "
        f"(PAWS rejects on TIME_WAIT reuse; 0 means the figure is the path's own): {syn}"
    )
    podman("kube", "down", str(pf))
    (MAN / "web.yaml").unlink()
    wait_until(lambda: berth_freed(), timeout=60, what="web removed")
    kw = dict(unit="req/s", higher_better=True)
    row("HTTP via Service VIP", got["vip"], "direct to pod IP", got["direct"], goal=">= 0.9x", **kw)
    row("HTTP via hostPort (127.0.0.1)", got["hostport"], "direct to pod IP", got["direct"], **kw)
    row("HTTP via hostPort (127.0.0.1)", got["hostport"], "podman hostPort", got["p_hostport"], **kw)
    row("HTTP direct to pod IP", got["direct"], "podman pod IP", got["p_direct"], **kw)


def build_kind():
    """How the measured binaries were built: run.sh builds release, or takes
    them from BENCH_BIN_DIR (the CI's `vm` profile: release without fat LTO)."""
    d = ENV.get("BENCH_BIN_DIR")
    sup = supervisor_kind()
    if not d:
        return f"release build, {sup}"
    prof = Path(d).resolve().name
    vm = " (`vm` profile: release without fat LTO)" if prof == "vm" else ""
    return f"binaries from {d}{vm}, {sup}"


def supervisor_kind():
    """Whether the measured berth-supervise is the shipped kind (static, as
    scripts/package.sh links it) or a plain dynamic build: its RSS differs by
    more than 1 MiB."""
    sup = Path(ENV.get("BENCH_BERTH", "berth")).with_name("berth-supervise")
    try:
        out = subprocess.run(["readelf", "-l", str(sup)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "supervisor: unknown link"
    if not out:
        return "supervisor: unknown link"
    return "supervisor dynamic (not the shipped build)" if "program interpreter" in out else "supervisor static (as shipped)"


def syn_retrans():
    """The host's TCPSynRetrans counter (the client side of every path)."""
    lines = open("/proc/net/netstat").read().splitlines()
    for h, v in zip(lines[::2], lines[1::2]):
        if h.startswith("TcpExt:"):
            return int(dict(zip(h.split()[1:], v.split()[1:]))["TCPSynRetrans"])
    return 0


# ---------------------------------------------------------------- report


def fmt(v):
    if v != v:  # nan
        return "-"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"


def table():
    out = [
        "| scenario | berth p50 / p95 | peer | peer p50 / p95 | ratio (p50) | goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in RESULTS:
        b, p = r["berth"], r["peer"]
        if r.get("p50p95"):
            b50, b95, p50, p95 = b[0], b[1], p[0], p[1]
        else:
            b50, b95, p50, p95 = pct(b, 0.5), pct(b, 0.95), pct(p, 0.5), pct(p, 0.95)
        u = r["unit"]
        single = len(b) == 1 and not r.get("p50p95")
        bs = f"{fmt(b50)} {u}" if single else f"{fmt(b50)} / {fmt(b95)} {u}"
        ps = "-" if not p else (f"{fmt(p50)} {u}" if len(p) == 1 else f"{fmt(p50)} / {fmt(p95)} {u}")
        if r["higher_better"]:
            # throughput: median and minimum over the rounds
            bs = f"{fmt(b50)} (min {fmt(min(b))}) {u}"
            ps = f"{fmt(p50)} (min {fmt(min(p))}) {u}"
        ratio = f"{b50 / p50:.2f}x" if p and p50 else "-"
        out.append(f"| {r['scenario']} | {bs} | {r['peer_name']} | {ps} | {ratio} | {r['goal']} |")
    return "\n".join(out)


def versions():
    def v(cmd):
        try:
            return sh(cmd, check=False).stdout.strip().splitlines()[0]
        except Exception:
            return "not found"

    rev = sh(["git", "-C", str(Path(__file__).resolve().parents[2]), "rev-parse", "--short", "HEAD"], check=False).stdout.strip()
    mem = next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
    return {
        "berth": f"{rev} ({build_kind()})",
        "podman": v(["podman", "--version"]),
        "crun": v(["crun", "--version"]),
        "runc": v(["runc", "--version"]),
        "conmon": v(["conmon", "--version"]),
        "wrk": v(["wrk", "-v"]).split(" Copyright")[0],
        "kernel": platform.release(),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {int(mem) // 1024} MiB",
        "cgroups": "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1 (hybrid)",
    }


def report(t_start, load0):
    date = time.strftime("%Y-%m-%d %H:%M %Z")
    vs = versions()
    load1 = open("/proc/loadavg").read().split()[:3]
    md = [
        f"# berth benchmark, {date}",
        "",
        "Produced by `bench/run.sh`: berth and its peer on the same manifests, in the same run,",
        "interleaved per iteration. Times are from the moment the manifest lands (berth: file",
        "renamed into the watched directory; podman: `podman kube play` starts) until the",
        "container's process is found in /proc. Ratio = berth p50 / peer p50 (lower is",
        "better for times, higher for requests/s).",
        "",
        f"- iterations: {N} per one-pod scenario, {R} per 20-pod scenario (after one warm-up), "
        f"steady state over {STEADY_S} s{' (quick mode)' if QUICK else ''}",
        f"- load average: {' '.join(load0)} at start, {' '.join(load1)} at the end; "
        f"run took {(time.monotonic() - t_start) / 60:.1f} min",
    ]
    md += [f"- {k}: {v}" for k, v in vs.items()]
    md += ["", table(), ""]
    if NOTES:
        md += ["Notes:", ""] + [f"- {n}" for n in NOTES] + [""]
    md += [edge.published_table(), ""]
    text = "\n".join(md)
    out = Path(ENV.get("BENCH_RESULTS", "bench/results"))
    out.mkdir(parents=True, exist_ok=True)
    f = out / (time.strftime("%Y-%m-%d-%H%M") + ".md")
    f.write_text(text)
    log("\n" + text)
    log(f"\nwritten: {f}")
    return f


def scenario_cleanup():
    """After a failed scenario: berth's pods removed (the agent restarted if it
    died), podman's bt- pods removed, so the next scenario starts clean."""
    berth_clear()
    if AGENT.proc is None or AGENT.proc.poll() is not None:
        AGENT.start()
    try:
        wait_until(lambda: berth_freed(), timeout=120, step=0.1, what="berth pods gone")
    except TimeoutError as e:
        log(f"warning: {e}")
    pods = sh(["podman", "pod", "ps", "-q", "--filter", "name=^bt-"], check=False).stdout.split()
    if pods:
        podman("pod", "rm", "-f", "-t", "0", *pods, check=False)
    for f in PM.glob("*.yaml"):
        f.unlink()


def main():
    t_start = time.monotonic()
    load0 = open("/proc/loadavg").read().split()[:3]
    PM.mkdir(parents=True, exist_ok=True)
    want = lambda s: not ONLY or s in ONLY  # noqa: E731
    if want("raw"):
        log("== raw start (runtime, crun, runc)")
        raw_start()
    AGENT.start()
    # warm-up: image imported and unpacked once
    m = marker()
    put(MAN / "warm.yaml", pod_doc("bt-warm", m))
    wait_until(lambda: all_running([m]), timeout=120, step=0.05, what="warm-up pod")
    (MAN / "warm.yaml").unlink()
    wait_until(lambda: none_running([m]) and berth_freed(), what="warm-up removed")
    hot = kib(AGENT.proc.pid, "VmRSS:")
    # the agent gives freed heap and start-up code back every 3 s
    # (HEAP_TRIM_INTERVAL in agent/src/main.rs): idle means after one trim
    time.sleep(4)
    idle = kib(AGENT.proc.pid, "VmRSS:")
    log(f"agent up, RSS right after the warm-up pod went {hot} KiB, idle (4 s later) {idle} KiB")
    NOTES.append(
        f"agent RSS after warm-up, no pods: {hot / 1024:.1f} MiB right after the pod went, "
        f"{idle / 1024:.1f} MiB idle (4 s later, after a heap trim)"
    )

    def run(key, title, fn, *args):
        """One scenario; a failure is reported and cleaned up, and the run goes on."""
        if not want(key):
            return
        log(f"== {title}")
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 (any failure of one scenario)
            log(f"  FAILED: {type(e).__name__}: {e}")
            NOTES.append(f"{title}: FAILED ({type(e).__name__}: {str(e)[:200]})")
            scenario_cleanup()

    try:
        for net in ("host", "bridge"):
            run("one", f"one pod, {net}", one_pod, net)
        run("twenty", "20 pods", twenty_pods)
        run("restart", "restart after SIGKILL", restart)
        run("http", "HTTP", http)
        run("start", "agent start and restart (adoption)", edge.agent_start, RESTART_SIZES, N)
        run("first", "manifest -> first HTTP 200", edge.first_http, N)
        run("rolling", "rolling update", edge.rolling, max(R, 2) if QUICK else N // 2)
        for n in STEADY:
            run("steady", f"steady state, {n} pods", steady, n)
        run("scale", "scaling curve", edge.scaling, SCALE, SCALE_PEER_MAX, SCALE_ROUNDS)
        run("image", "image import and pull", edge.image, 2 if QUICK else 5)
    finally:
        berth_clear()
        try:
            wait_until(lambda: berth_freed(), timeout=60, step=0.1, what="berth pods gone")
        except TimeoutError as e:
            log(f"warning: {e}")
        AGENT.stop()
    report(t_start, load0)


sys.modules.setdefault("bench", sys.modules[__name__])
import edge  # noqa: E402  (the issue-21 scenarios; uses this module's helpers)

if __name__ == "__main__":
    sys.exit(main())
