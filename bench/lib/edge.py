"""The scenarios edge users compare agents by (issue 21), run by bench.py.

* agent start to API ready, and a restarted agent to all pods adopted
  (`/readyz`), beside `podman system service` to its API and pod list;
* manifest to the first HTTP 200 from the pod through a Service, beside
  `podman kube play` to the first 200 through its hostPort;
* a readiness-gated rolling update of a 3-replica Deployment whose app handles
  SIGTERM, beside `podman kube play --replace`;
* a realistic two-layer Debian image (bench/lib/big_image.sh) imported from an
  archive beside `podman load`, and pulled from a local `docker-registry`
  beside `skopeo copy` and `podman pull`;
* the scaling curve of pod start and removal at 1, 10, 50, 100, 200 pods.

Helpers (markers, /proc scans, rows, the agent) come from bench.py.
"""

import ipaddress
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import bench as B

ENV = os.environ
QUICK = bool(ENV.get("BENCH_QUICK"))

# Published figures (not measured here): Eclipse Ankaios' own benchmark page
# and the k3s figures it reports beside them (issue 21).
PUBLISHED = [
    ("agent start to API ready", "68 ms", "480 ms"),
    ("apply to running", "515 ms", "2,306 ms"),
    ("apply to first HTTP 200", "624 ms", "2,481 ms"),
    ("rolling update (3 replicas)", "1,455 ms", "2,101 ms"),
    ("memory of the stack (PSS)", "about 11 MB (server + agent; podman not counted)", "490 MB"),
]


def ms(t0):
    return (time.monotonic() - t0) * 1000


def http_ok(url, timeout=0.5, want=None, connect_timeout=0.02):
    """One GET: 200 (and `want` in the body). The connect has its own short
    timeout: a SYN to an address nothing answers yet (a Service VIP before its
    rules exist) is dropped, and waiting 0.5 s for it would round the
    measurement up to the poller's timeout instead of the stack's readiness.
    A refused connect fails at once either way; once connected, the request
    has `timeout`."""
    u = urllib.parse.urlsplit(url)
    try:
        s = socket.create_connection((u.hostname, u.port or 80), timeout=connect_timeout)
    except OSError:
        return False
    try:
        s.settimeout(timeout)
        s.sendall(f"GET {u.path or '/'} HTTP/1.0\r\nHost: {u.hostname}\r\n\r\n".encode())
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    except OSError:
        return False
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split()[1])
    except (IndexError, ValueError):
        return False
    return status == 200 and (want is None or want.encode() in body)


def unix_get(path, url, timeout=2.0):
    """GET over a unix socket; (status, body) or None."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(f"GET {url} HTTP/1.0\r\nHost: d\r\n\r\n".encode())
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    except OSError:
        return None
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split()[1]), body
    except (IndexError, ValueError):
        return None


# ---------------------------------------------------------------- agent start


def berth_restart(n):
    """SIGTERM the agent (workloads keep running), start it again: (to API, to adopted) ms."""
    B.AGENT.stop()
    t0 = time.monotonic()
    B.AGENT.spawn()
    B.wait_until(lambda: B.AGENT.get("/healthz") is not None, timeout=30, step=0.001, what="berth API")
    api = ms(t0)
    B.wait_until(lambda: B.AGENT.get("/readyz") is not None, timeout=60, step=0.001, what="berth /readyz")
    ready = ms(t0)
    return api, ready


def podman_service(sock, n):
    """`podman system service` to its API (/_ping) and to a pod list holding all n pods: ms."""
    if os.path.exists(sock):
        os.unlink(sock)
    t0 = time.monotonic()
    p = subprocess.Popen(
        ["podman", "system", "service", "--time", "0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        B.wait_until(lambda: (unix_get(sock, "/_ping") or (0,))[0] == 200, timeout=60, step=0.001, what="podman API")
        api = ms(t0)

        def listed():
            r = unix_get(sock, "/v4.0.0/libpod/pods/json")
            if not r or r[0] != 200:
                return False
            pods = [x for x in json.loads(r[1]) if x.get("Name", "").startswith("bt-")]
            return len(pods) >= n and all(x.get("Status") == "Running" for x in pods)

        B.wait_until(listed, timeout=60, step=0.001, what="podman pod list")
        ready = ms(t0)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return api, ready


def agent_start(sizes, iters):
    """Restarted agent to API ready and to every pod adopted, with n pods running."""
    sock = str(B.W / "podman.sock")
    for n in sizes:
        ms_b = [B.marker() for _ in range(n)]
        ms_p = [B.marker() for _ in range(n)]
        peer = n <= int(ENV.get("BENCH_RESTART_PEER_MAX", "10"))
        if n:
            B.put(B.MAN / "adopt.yaml", "---\n".join(B.pod_doc(f"bt-ad{j:03d}", m) for j, m in enumerate(ms_b)))
            B.wait_until(lambda: B.all_running(ms_b), timeout=600, step=0.05, what=f"berth {n} pods")
            B.wait_until(lambda: B.AGENT.get("/readyz") is not None, timeout=60, step=0.05, what="berth ready")
            if peer:
                pf = B.PM / "adopt.yaml"
                pf.write_text("---\n".join(B.pod_doc(f"bt-ad{j:03d}", m) for j, m in enumerate(ms_p)))
                B.podman("kube", "play", str(pf))
                B.wait_until(lambda: B.all_running(ms_p), timeout=600, step=0.05, what=f"podman {n} pods")
        api_b, rdy_b, api_p, rdy_p = [], [], [], []
        for i in range(iters + 1):
            a, r = berth_restart(n)
            if not B.all_running(ms_b):
                raise RuntimeError("a pod stopped across the agent restart")
            if peer:
                pa, pr = podman_service(sock, n)
            if i > 0:
                api_b.append(a)
                rdy_b.append(r)
                if peer:
                    api_p.append(pa)
                    rdy_p.append(pr)
        B.log(f"  restart with {n} pods: berth api {api_b} ready {rdy_b}; podman api {api_p} list {rdy_p}")
        if n == 0:
            B.row("agent start -> API ready (/healthz), no pods", api_b, "podman system service -> /_ping", api_p, goal="< 50 ms")
        else:
            pn = "podman system service -> all pods listed" if peer else "-"
            goal = "< 200 ms" if n <= 10 else "< 1 s" if n <= 100 else ""
            B.row(f"agent restart -> API ready, {n} pods running", api_b, "podman system service -> /_ping" if peer else "-", api_p)
            B.row(f"agent restart -> all {n} pods adopted (/readyz)", rdy_b, pn, rdy_p, goal=goal)
        if n:
            (B.MAN / "adopt.yaml").unlink()
            if peer:
                B.podman("kube", "down", str(B.PM / "adopt.yaml"))
            B.wait_until(lambda: B.none_running(ms_b + ms_p) and B.berth_freed(), timeout=600, step=0.05, what="adopt pods removed")


# ---------------------------------------------------------------- first HTTP 200


def web_pod(name, m, host_port=None, labels=None, ready_probe=False):
    """busybox httpd serving a page with the marker; the shell exits on TERM."""
    lab = labels or {"app": name}
    lines = [
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        f"  name: {name}",
        f"  labels: {json.dumps(lab)}",
        "spec:",
        "  terminationGracePeriodSeconds: 10",
        "  containers:",
        "  - name: web",
        f"    image: {B.IMAGE}",
        "    imagePullPolicy: IfNotPresent",
        f"    command: {json.dumps(['sh', '-c', web_cmd(m)])}",
        "    ports:",
        "    - containerPort: 8080",
    ]
    if host_port:
        lines.append(f"      hostPort: {host_port}")
    return "\n".join(lines) + "\n"


def web_cmd(m):
    # httpd in the background, `sleep <marker>` is found in /proc; TERM ends both at once
    return (
        f"mkdir -p /tmp/w && echo hello-{m} > /tmp/w/index.html && httpd -p 8080 -h /tmp/w && "
        f"trap 'kill $(pidof httpd) 2>/dev/null; exit 0' TERM; sleep {m} & wait"
    )


def service_doc(name, vip):
    return (
        "apiVersion: v1\nkind: Service\nmetadata:\n"
        f"  name: {name}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {name}}}\n"
        "  ports:\n  - port: 80\n    targetPort: 8080\n"
    )


def svc_vip(k=10):
    net = ipaddress.ip_network(B.SVC_CIDR, strict=False)
    return str(net.network_address + k)


def first_http(iters):
    """Manifest lands -> first HTTP 200 from the new pod (berth: through its Service VIP)."""
    vip = svc_vip(10)
    pport = B.HOSTPORT + 2
    b, p = [], []
    for i in range(iters + 1):
        m = B.marker()
        doc = web_pod("bt-first", m) + "---\n" + service_doc("bt-first", vip)
        t0 = time.monotonic()
        B.put(B.MAN / "first.yaml", doc)
        B.wait_until(lambda: http_ok(f"http://{vip}/", 0.5, f"hello-{m}"), timeout=60, step=0.002, what="berth first 200")
        db = ms(t0)
        (B.MAN / "first.yaml").unlink()
        B.wait_until(lambda: B.none_running([m]) and B.berth_freed(), timeout=60, what="berth web removed")
        m = B.marker()
        pf = B.PM / "first.yaml"
        pf.write_text(web_pod("bt-first", m, host_port=pport))
        t0 = time.monotonic()
        B.podman("kube", "play", str(pf))
        B.wait_until(lambda: http_ok(f"http://127.0.0.1:{pport}/", 0.5, f"hello-{m}"), timeout=60, step=0.002, what="podman first 200")
        dp = ms(t0)
        B.podman("kube", "down", str(pf))
        B.wait_until(lambda: B.none_running([m]), timeout=60, what="podman web removed")
        if i > 0:
            b.append(db)
            p.append(dp)
    B.row("manifest -> first HTTP 200 (berth via Service VIP)", b, "podman kube play, via hostPort", p, goal="<= 0.3x")


# ---------------------------------------------------------------- rolling update


PROBE = """        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
"""


# the same probe at a Pod's container indentation (PROBE is a template's)
POD_PROBE = "".join(line[4:] + "\n" for line in PROBE.splitlines())


def deployment_doc(name, m, replicas=3):
    """No `ports:` list: podman 4.x publishes a containerPort without hostPort
    on the host's port of the same number, so 3 replicas would collide on
    8080. Nothing here needs it: the probe and a Service's numeric targetPort
    reach the pod's own address."""
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: {B.IMAGE}
        imagePullPolicy: IfNotPresent
        command: {json.dumps(['sh', '-c', web_cmd(m)])}
{PROBE}"""


def replica_pods_doc(name, m, replicas=3):
    """podman's side of the same Deployment: podman 4.3 `kube play` runs one
    pod per Deployment whatever `replicas` says, so it gets the replicas as
    `replicas` Pods (same template, same probe, no hostPort), and
    `kube play --replace` replaces all of them."""
    docs = []
    for k in range(replicas):
        docs.append(
            "apiVersion: v1\nkind: Pod\nmetadata:\n"
            f"  name: {name}-{k}\n  labels: {{app: {name}}}\n"
            "spec:\n  terminationGracePeriodSeconds: 10\n  containers:\n  - name: web\n"
            f"    image: {B.IMAGE}\n    imagePullPolicy: IfNotPresent\n"
            f"    command: {json.dumps(['sh', '-c', web_cmd(m)])}\n" + POD_PROBE
        )
    return "---\n".join(docs)


def listening(pid, port=8080):
    """The process's network namespace has a TCP socket listening on port
    (its /proc/PID/net/tcp or tcp6): httpd is up in that pod. busybox httpd
    binds [::] where the namespace has IPv6 (berth's pods), 0.0.0.0 where it
    has not: only tcp6 shows the first."""
    want = f"{port:04X}"
    rows = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows += [ln.split() for ln in f.readlines()[1:]]
        except OSError:
            pass
    return any(len(r) > 3 and r[1].rsplit(":", 1)[-1] == want and r[3] == "0A" for r in rows)


def serving(m_new, m_old, replicas):
    """`replicas` processes of the new template, each with httpd listening in its
    pod, and none of the old template left."""
    f = B.scan([m_new, m_old])
    return len(f[m_new]) == replicas and not f[m_old] and all(listening(p) for p in f[m_new])


def berth_rolled(name, m_new, m_old, replicas):
    if not serving(m_new, m_old, replicas):
        return False
    pods = B.AGENT.get("/api/v1/namespaces/default/pods")
    if not pods:
        return False
    mine = [x for x in pods.get("items", []) if x["metadata"].get("labels", {}).get("app") == name]
    if len(mine) != replicas:
        return False
    for x in mine:
        conds = x.get("status", {}).get("conditions", []) or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            return False
    return True


def rolling(iters):
    """3 ready replicas; the template changes -> 3 new ready pods, the old ones gone.

    Both sides run 3 pods of the same template with the same readiness probe
    and no hostPort. berth: one Deployment, rolled one pod at a time (maxSurge
    1, maxUnavailable 0), done when its API shows 3 Ready pods of the new
    template and no old process is left. podman 4.3 has no Deployment replicas
    and no readiness gating: 3 Pods in one file replaced at once by
    `kube play --replace`, done when the 3 new pods' httpd listen and no old
    process is left (the same end state, reached without gating)."""
    name, reps = "bt-roll", 3
    b, p = [], []
    pf = B.PM / "roll.yaml"
    for i in range(iters + 1):
        m1, m2 = B.marker(), B.marker()
        B.put(B.MAN / "roll.yaml", deployment_doc(name, m1, reps))
        B.wait_until(lambda: berth_rolled(name, m1, -1, reps), timeout=120, step=0.02, what="berth v1 ready")
        t0 = time.monotonic()
        B.put(B.MAN / "roll.yaml", deployment_doc(name, m2, reps))
        B.wait_until(lambda: berth_rolled(name, m2, m1, reps), timeout=120, step=0.005, what="berth rolled")
        db = ms(t0)
        (B.MAN / "roll.yaml").unlink()
        B.wait_until(lambda: B.none_running([m2]) and B.berth_freed(), timeout=60, what="berth rollout removed")
        m1, m2 = B.marker(), B.marker()
        pf.write_text(replica_pods_doc(name, m1, reps))
        B.podman("kube", "play", str(pf))
        B.wait_until(lambda: serving(m1, -1, reps), timeout=120, step=0.02, what="podman v1")
        pf.write_text(replica_pods_doc(name, m2, reps))
        t0 = time.monotonic()
        B.podman("kube", "play", "--replace", str(pf))
        B.wait_until(lambda: serving(m2, m1, reps), timeout=120, step=0.005, what="podman replaced")
        dp = ms(t0)
        B.podman("kube", "down", str(pf))
        B.wait_until(lambda: B.none_running([m2]), timeout=60, what="podman rollout removed")
        if i > 0:
            b.append(db)
            p.append(dp)
    B.NOTES.append(
        "rolling update: berth rolls a 3-replica Deployment one pod at a time, readiness-gated; podman 4.3 "
        "ignores replicas and readiness, so its side is the same template as 3 Pods (no hostPort) replaced "
        "at once by kube play --replace; both end when 3 new pods listen and no old process is left"
    )
    B.row(
        "rolling update, 3 replicas, readiness-gated -> all new ready, old gone",
        b,
        "podman kube play --replace (3 Pods)",
        p,
        goal="<= 0.5x",
    )


# ---------------------------------------------------------------- image


def _children_cpu_ms():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1000


def image(iters):
    """Two-layer ~100 MB Debian image: archive import and registry pull.

    Like with like: both tools import the same file, the OCI archive (gzip
    layers) and the docker archive (uncompressed layers), each into an empty
    store of its own (podman with its own --root) that nothing was deleted
    from just before: on an ext4 without a journal, creating inodes right
    after a large delete in the same block group is slowed by the kernel's
    recently-deleted-inode scan (ext4 recently_deleted()), which made the
    figure depend on which tool had deleted what last (bench/results/
    2026-12-01-image-import.md). Stores are removed after the loop. CPU time
    (user + sys of the tool and its children) is reported too: it does not
    depend on the other load of the machine."""
    ub = ENV.get("BENCH_UNPACK_BENCH", "")
    if not ub:
        B.NOTES.append("image: unpack_bench not built, skipped")
        return
    r = B.sh(["bash", str(Path(__file__).resolve().parent / "big_image.sh")], timeout=3600)
    cache = Path(r.stdout.strip().splitlines()[-1])
    ref = "berth.local/debian-big:1"
    archives = {"OCI archive, gzip layers": cache / "big-oci.tar", "docker archive, uncompressed layers": cache / "big-docker.tar"}
    unpacked = sum(f.stat().st_size for f in (cache / "oci/blobs/sha256").iterdir())
    scratch = B.W / "img"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)

    def podman_in(store, *args, check=True):
        return B.sh(
            ["podman", "--root", str(store / "root"), "--runroot", str(store / "run"), "--storage-driver", "overlay", *args],
            check=check,
        )

    wall = {k: ([], []) for k in archives}
    cpu = {k: ([], []) for k in archives}
    try:
        for i in range(iters + 1):
            for k, arc in archives.items():
                tag = "oci" if "OCI" in k else "docker"
                c0 = _children_cpu_ms()
                out = B.sh([ub, "import", str(arc), str(scratch / f"b{i}-{tag}"), ref], timeout=600).stdout
                cb = _children_cpu_ms() - c0
                B.log("  " + k + ": " + out.strip())
                tb = float(out.split("berth import: ")[1].split(" s")[0]) * 1000
                c0 = _children_cpu_ms()
                t0 = time.monotonic()
                podman_in(scratch / f"p{i}-{tag}", "load", "-q", "-i", str(arc))
                tp = ms(t0)
                cp = _children_cpu_ms() - c0
                if i > 0:
                    wall[k][0].append(tb)
                    wall[k][1].append(tp)
                    cpu[k][0].append(cb)
                    cpu[k][1].append(cp)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    B.NOTES.append(
        f"image: {ref}, 2 layers, {unpacked / 1e6:.0f} MB of blobs (gzip), "
        f"{archives['docker archive, uncompressed layers'].stat().st_size / 1e6:.0f} MB as an uncompressed archive, built by bench/lib/big_image.sh; "
        "each import into an empty store of its own (podman --root), none deleted from just before"
    )
    for k in archives:
        B.row(f"image archive import + unpack ({k}; Debian minbase + Python, 2 layers)", wall[k][0], "podman load (same file)", wall[k][1], goal="<= 1.2x")
        B.row(f"image archive import + unpack ({k}), CPU time user+sys", cpu[k][0], "podman load (same file)", cpu[k][1])
    # the same image through a local registry
    rport = int(ENV.get("BENCH_REGISTRY_PORT", str(B.PORT + 5)))
    rd = B.W / "registry"
    rd.mkdir(parents=True, exist_ok=True)
    (rd / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {rd}/data\n"
        f"http:\n  addr: 127.0.0.1:{rport}\n"
    )
    reg = subprocess.Popen(["docker-registry", "serve", str(rd / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (B.W / "registry.pid").write_text(str(reg.pid))
    try:
        B.wait_until(lambda: http_ok(f"http://127.0.0.1:{rport}/v2/"), timeout=30, step=0.05, what="registry")
        rref = f"127.0.0.1:{rport}/bench/debian-big:1"
        B.sh(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{cache}/oci:1", f"docker://{rref}"], timeout=600)
        fo_b, fo_p, full_b, full_p = [], [], [], []
        scratch.mkdir(parents=True, exist_ok=True)
        for i in range(iters + 1):
            out = B.sh([ub, "pull", rref, str(scratch / f"b{i}")], timeout=600).stdout
            B.log("  " + out.strip().replace("\n", "; "))
            fb = float(out.split("berth fetch only: ")[1].split(" s")[0]) * 1000
            eb = float(out.split("berth ensure")[1].split(": ")[1].split(" s")[0]) * 1000
            t0 = time.monotonic()
            B.sh(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{rref}", f"dir:{scratch}/skopeo{i}"], timeout=600)
            fp = ms(t0)
            t0 = time.monotonic()
            podman_in(scratch / f"p{i}", "pull", "-q", "--tls-verify=false", rref)
            ep = ms(t0)
            if i > 0:
                fo_b.append(fb)
                fo_p.append(fp)
                full_b.append(eb)
                full_p.append(ep)
        B.row("image pull from local registry, fetch only", fo_b, "skopeo copy to dir:", fo_p)
        B.row("image pull from local registry, fetch + unpack", full_b, "podman pull (empty --root)", full_p)
    finally:
        reg.terminate()
        try:
            reg.wait(10)
        except subprocess.TimeoutExpired:
            reg.kill()
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- scaling


def scaling(sizes, peer_max, rounds=1):
    """n Pods in one file -> all running, and removed -> gone and freed, for
    each n; `rounds` times over all sizes (BENCH_SCALE_ROUNDS), so a size's
    samples are spread over the run rather than back to back."""
    samples = {n: {} for n in sizes}  # n -> tool -> [(up, down)]
    for _ in range(rounds):
        for n in sizes:
            tools = ["berth"] + (["podman"] if n <= peer_max else [])
            for tool in tools:
                up, down = scale_once(tool, n)
                samples[n].setdefault(tool, []).append((up, down))
                B.log(f"  scale {n} {tool}: start {up:.0f} ms, removal {down:.0f} ms")
    curve = {}
    for n in sizes:
        res = samples[n]
        b = res["berth"]
        p = res.get("podman", [])
        curve[n] = (B.pct([s[0] for s in b], 0.5), B.pct([s[1] for s in b], 0.5))
        pn = "podman kube play" if p else "-"
        B.row(f"scaling: {n} Pods -> all running", [s[0] for s in b], pn, [s[0] for s in p])
        B.row(
            f"scaling: {n} Pods removed -> gone, freed",
            [s[1] for s in b],
            "podman kube down" if p else "-",
            [s[1] for s in p],
            goal="<= 0.1x" if n in (20, 100) else "",
        )
    # linearity: cost per pod at the largest size against the cost per pod at 10
    if 10 in curve and len(curve) > 1:
        big = max(curve)
        per = lambda n, k: curve[n][k] / n  # noqa: E731
        for k, what in ((0, "start"), (1, "removal")):
            B.NOTES.append(
                f"scaling, {what} (p50 of {rounds}): per pod {', '.join(f'{n}: {per(n, k):.1f} ms' for n in sorted(curve))}; "
                f"per-pod cost at {big} / at 10 = {per(big, k) / per(10, k):.2f} (linear: about 1 or less)"
            )


def scale_once(tool, n):
    """One sample: (ms to all running, ms to all gone and freed)."""
    ms_ = [B.marker() for _ in range(n)]
    docs = "---\n".join(B.pod_doc(f"bt-sc{j:03d}", m) for j, m in enumerate(ms_))
    # Start: from the write to the kernel's start stamp of the last pod's
    # process, read once all run. The poll is slow on purpose: one scan reads
    # /proc/*/cmdline of every process (about 14 us each, 3 per pod), so a
    # 10 ms poll took about half a core from the agent at 200 pods and a sixth
    # at 10 (a superlinear cost of the measurement itself on 2 cores).
    agent = B.AGENT.proc.pid
    c0 = B.cpu_ticks(agent)
    b0 = B.boot_now()
    if tool == "berth":
        B.put(B.MAN / "scale.yaml", docs)
    else:
        pf = B.PM / "scale.yaml"
        pf.write_text(docs)
        B.podman("kube", "play", str(pf))
    B.wait_until(lambda: B.all_running(ms_), timeout=1800, step=B.SCALE_STEP, what=f"{tool} {n} pods running")
    up = round((B.started_at(ms_) - b0) * 1000, 1)
    if tool == "berth":
        cpu = (B.cpu_ticks(agent) - c0) * 1000 / os.sysconf("SC_CLK_TCK")
        B.log(f"  scale {n} berth: agent CPU while starting {cpu:.0f} ms ({cpu / n:.1f} ms per pod)")
    time.sleep(1)
    t0 = time.monotonic()
    if tool == "berth":
        (B.MAN / "scale.yaml").unlink()
        B.wait_until(lambda: B.none_running(ms_) and B.berth_freed(), timeout=1800, step=0.01, what="berth removed")
    else:
        B.podman_down(B.PM / "scale.yaml")
        B.wait_until(lambda: B.none_running(ms_), timeout=1800, step=0.01, what="podman removed")
    return up, ms(t0)


def published_table():
    out = [
        "Published figures, not measured here (Eclipse Ankaios' benchmark and the k3s figures it",
        "reports; other hardware, other methods: for orientation only):",
        "",
        "| scenario | Ankaios (published) | k3s (published) |",
        "|---|---|---|",
    ]
    out += [f"| {s} | {a} | {k} |" for s, a, k in PUBLISHED]
    return "\n".join(out)
