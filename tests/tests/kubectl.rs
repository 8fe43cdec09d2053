//! kubectl (the real `/usr/bin/kubectl`, v1.32) against the real agent: what
//! it prints for get / -o wide / describe / logs / events / top / explain
//! must be what it prints against a cluster for the same objects (the
//! expectations are written from kubectl's printer rules), and every write
//! (apply, create, delete, scale, patch, rollout restart, dry runs) must
//! reach berth's 405 that says to change the manifests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions, tail};

const KUBECTL: &str = "/usr/bin/kubectl";

fn required() -> bool {
    std::env::var("BERTH_E2E_REQUIRED").is_ok_and(|v| v == "1")
}

/// kubectl's own precondition: v1.32 installed.
fn have_kubectl(test: &str) -> bool {
    if Path::new(KUBECTL).exists() {
        return true;
    }
    let msg = format!("{test}: skipped: {KUBECTL} not installed");
    if required() {
        panic!("{msg} (BERTH_E2E_REQUIRED=1)");
    }
    eprintln!("{msg}");
    false
}

struct Kubectl {
    port: u16,
    /// An empty kubeconfig and a private discovery cache.
    dir: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(agent: &Agent) -> Result<Kubectl> {
        let dir = agent.dir.join("kubectl");
        std::fs::create_dir_all(dir.join("cache"))?;
        std::fs::write(dir.join("config"), "apiVersion: v1\nkind: Config\n")?;
        Ok(Kubectl {
            port: agent.port,
            dir,
        })
    }

    fn run(&self, args: &[&str]) -> Result<Out> {
        let out = Command::new("timeout")
            .arg("60")
            .arg(KUBECTL)
            .arg(format!("--server=http://127.0.0.1:{}", self.port))
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("config").display()
            ))
            .arg(format!("--cache-dir={}", self.dir.join("cache").display()))
            .arg("--request-timeout=30s")
            .args(args)
            .env("KUBECTL_EXTERNAL_DIFF", "")
            .env("EDITOR", "true")
            .output()
            .with_context(|| format!("running kubectl {args:?}"))?;
        Ok(Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> Result<String> {
        let o = self.run(args)?;
        if !o.ok {
            bail!("kubectl {args:?} failed:\n{}{}", o.stdout, o.stderr);
        }
        Ok(o.stdout)
    }

    /// stderr of a command that must fail.
    fn fails(&self, args: &[&str]) -> Result<String> {
        let o = self.run(args)?;
        if o.ok {
            bail!("kubectl {args:?} succeeded but must fail:\n{}", o.stdout);
        }
        Ok(o.stderr)
    }

    /// Poll until `f` accepts stdout of `args`.
    fn until(
        &self,
        what: &str,
        args: &[&str],
        timeout: Duration,
        f: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let t0 = Instant::now();
        loop {
            let o = self.run(args)?;
            if o.ok && f(&o.stdout) {
                return Ok(o.stdout);
            }
            if t0.elapsed() > timeout {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; kubectl {args:?} printed:\n{}{}",
                    o.stdout,
                    o.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The row of `name` in a kubectl table, split into columns (on 2+ spaces,
/// as kubectl pads them).
fn row(table: &str, name: &str) -> Option<Vec<String>> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(columns)
}

fn columns(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect()
}

fn header(table: &str) -> Vec<String> {
    table.lines().next().map(columns).unwrap_or_default()
}

fn manifests() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: {IMAGE}
        command: ["httpd", "-f", "-p", "8080", "-h", "/"]
        readinessProbe:
          tcpSocket: {{port: 8080}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
  b: "2"
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: hunter2
---
apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "echo crash-run $(cat /proc/uptime); exit 1"]
---
apiVersion: v1
kind: Pod
metadata:
  name: initfail
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: init
    image: {IMAGE}
    command: ["sh", "-c", "echo init-failing; exit 1"]
  containers:
  - name: main
    image: {IMAGE}
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: done
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {IMAGE}
    command: ["sh", "-c", "echo done-line-1; echo done-line-2"]
---
apiVersion: v1
kind: Pod
metadata:
  name: half
spec:
  restartPolicy: OnFailure
  terminationGracePeriodSeconds: 1
  containers:
  - name: quick
    image: {IMAGE}
    command: ["true"]
  - name: slow
    image: {IMAGE}
    command: ["sleep", "3600"]
"#
    )
}

/// Start an agent with the test manifests; wait until the web pods are ready.
fn start(instance: &str, net: u8, port: u16) -> Result<Agent> {
    let mut agent = Agent::new(AgentOpts {
        instance,
        net,
        port,
        with_image: true,
    })?;
    agent.extra_args = vec![
        "--node-name".into(),
        format!("{instance}-node"),
        "--node-labels".into(),
        "zone=lab".into(),
    ];
    agent.write_manifest("app.yaml", &manifests())?;
    agent.start()?;
    agent.wait_for("web pods ready", Duration::from_secs(90), |v| {
        let ready = v["items"]
            .as_array()?
            .iter()
            .filter(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("web-"))
                    && p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count();
        (ready == 2).then_some(())
    })?;
    Ok(agent)
}

#[test]
fn kubectl_sees_what_a_cluster_shows() -> Result<()> {
    if !preconditions("kubectl_sees_what_a_cluster_shows")
        || !have_kubectl("kubectl_sees_what_a_cluster_shows")
    {
        return Ok(());
    }
    let mut agent = start("btkc1", 105, 17210)?;
    let r = checks(&agent);
    if let Err(e) = &r {
        eprintln!("agent log tail:\n{}", tail(&agent.log(), 60));
        eprintln!("error: {e:#}");
    }
    let _ = agent.shutdown_clean();
    r
}

fn checks(agent: &Agent) -> Result<()> {
    let k = Kubectl::new(agent)?;
    let node = format!("{}-node", agent.instance);
    let long = Duration::from_secs(90);

    // --- get pods: STATUS by kubectl's printer rules ---
    let pods = k.until("pod statuses", &["get", "pods"], long, |t| {
        let st = |n: &str| row(t, n).map(|r| (r[1].clone(), r[2].clone()));
        st("crash").is_some_and(|(_, s)| s == "CrashLoopBackOff")
            && st("initfail").is_some_and(|(_, s)| s == "Init:CrashLoopBackOff")
            && st("done") == Some(("0/1".into(), "Completed".into()))
            && st("half") == Some(("1/2".into(), "NotReady".into()))
    })?;
    assert_eq!(
        header(&pods),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let web: Vec<Vec<String>> = pods
        .lines()
        .filter(|l| l.starts_with("web-"))
        .map(columns)
        .collect();
    assert_eq!(web.len(), 2, "{pods}");
    for r in &web {
        assert_eq!(
            (r[1].as_str(), r[2].as_str(), r[3].as_str()),
            ("1/1", "Running", "0"),
            "{pods}"
        );
    }
    // restarts with the age of the last one: "N (Xs ago)"
    let crash = row(&pods, "crash").unwrap();
    assert!(crash[3].contains(" ago)"), "restarts column {:?}", crash[3]);

    // --- -o wide ---
    let wide = k.ok(&["get", "pods", "-o", "wide"])?;
    assert_eq!(
        header(&wide),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    let w = row(&wide, &web[0][0]).unwrap();
    assert!(w[5].starts_with("10.124.210."), "pod IP {:?}", w[5]);
    assert_eq!(
        (w[6].as_str(), w[7].as_str(), w[8].as_str()),
        (node.as_str(), "<none>", "<none>")
    );
    let d = k.ok(&["get", "deploy", "-o", "wide"])?;
    assert_eq!(
        header(&d),
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let r = row(&d, "web").unwrap();
    assert_eq!((&r[1][..], &r[2][..], &r[3][..]), ("2/2", "2", "2"));
    assert_eq!(
        (&r[5][..], &r[6][..], &r[7][..]),
        ("httpd", IMAGE, "app=web")
    );
    let s = k.ok(&["get", "svc", "-o", "wide"])?;
    assert_eq!(
        header(&s),
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    let r = row(&s, "web").unwrap();
    assert_eq!(
        (&r[1][..], &r[3][..], &r[4][..], &r[6][..]),
        ("ClusterIP", "<none>", "80/TCP", "app=web")
    );
    assert!(r[2].starts_with("10.124.211."), "cluster IP {:?}", r[2]);

    // --- derived views: ReplicaSet, Endpoints, EndpointSlice, Node, get all ---
    let rs = k.ok(&["get", "rs"])?;
    assert_eq!(header(&rs), ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let rs_name = web[0][0].rsplit_once('-').unwrap().0.to_string();
    let r = row(&rs, &rs_name).with_context(|| format!("no {rs_name} in\n{rs}"))?;
    assert_eq!((&r[1][..], &r[2][..], &r[3][..]), ("2", "2", "2"));
    let ep = k.ok(&["get", "endpoints", "web"])?;
    let r = row(&ep, "web").unwrap();
    assert_eq!(r[1].matches(":8080").count(), 2, "{ep}");
    let es = k.ok(&["get", "endpointslices"])?;
    assert_eq!(
        header(&es),
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    );
    let r = row(&es, "web-berth").unwrap();
    assert_eq!((&r[1][..], &r[2][..]), ("IPv4", "8080"));
    let nodes = k.ok(&["get", "nodes"])?;
    assert_eq!(
        header(&nodes),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    );
    let r = row(&nodes, &node).unwrap();
    assert_eq!((&r[1][..], &r[2][..]), ("Ready", "<none>"));
    assert!(r[4].starts_with("v1.32.0-berth."), "{nodes}");
    let dn = k.ok(&["describe", "node", &node])?;
    for want in [
        "Labels:",
        "zone=lab",
        "Conditions:",
        "Ready",
        "KubeletReady",
        "Addresses:",
        "Hostname:",
        "Capacity:",
        "Allocatable:",
        "System Info:",
        "Kernel Version:",
        "Operating System:           linux",
        "berth://",
        "Non-terminated Pods:",
        "HolderIdentity:",
        "Allocated resources:",
    ] {
        assert!(dn.contains(want), "describe node lacks {want:?}:\n{dn}");
    }
    let pods_part = dn.split("Non-terminated Pods:").nth(1).unwrap_or("");
    assert!(
        pods_part.contains(&web[0][0]) && pods_part.contains("crash"),
        "{dn}"
    );
    assert!(
        !pods_part.contains(" done "),
        "a Succeeded pod is not non-terminated:\n{dn}"
    );
    let all = k.ok(&["get", "all"])?;
    for want in [
        "pod/crash",
        "service/web",
        "deployment.apps/web",
        &format!("replicaset.apps/{rs_name}"),
    ] {
        assert!(all.contains(want), "get all lacks {want:?}:\n{all}");
    }
    let pvc = k.run(&["get", "pvc"])?;
    assert!(pvc.ok, "get pvc: {}", pvc.stderr);

    // --- describe: events with involvedObject ---
    let dp = k.ok(&["describe", "pod", "done"])?;
    assert!(!dp.contains("Events:  <none>"), "{dp}");
    let started = dp
        .lines()
        .find(|l| l.contains("Started container main"))
        .unwrap_or("");
    assert_eq!(
        columns(started).first().map(String::as_str),
        Some("Normal"),
        "{dp}"
    );
    assert_eq!(
        columns(started).get(1).map(String::as_str),
        Some("Started"),
        "{dp}"
    );
    let dd = k.ok(&["describe", "deploy", "web"])?;
    assert!(
        dd.contains(&format!(
            "NewReplicaSet:   {rs_name} (2/2 replicas created)"
        )),
        "{dd}"
    );
    assert!(
        dd.contains("ScalingReplicaSet")
            && dd.contains(&format!("Scaled up replica set {rs_name} from 0 to 2")),
        "{dd}"
    );
    let ev = k.ok(&["events", "--for", "pod/done"])?;
    assert!(ev.contains("Started") && ev.contains("Pod/done"), "{ev}");
    assert!(
        !ev.contains("Pod/crash"),
        "events --for pod/done shows other pods:\n{ev}"
    );

    // --- logs ---
    assert_eq!(k.ok(&["logs", "done"])?, "done-line-1\ndone-line-2\n");
    assert_eq!(k.ok(&["logs", "done", "--tail=1"])?, "done-line-2\n");
    assert_eq!(k.ok(&["logs", "done", "--limit-bytes=8"])?, "done-lin");
    let ts = k.ok(&["logs", "done", "--timestamps"])?;
    let first = ts.lines().next().unwrap_or("");
    let (t, msg) = first.split_once(' ').unwrap_or(("", ""));
    assert!(
        t.parse::<TimeCheck>().is_ok() && msg == "done-line-1",
        "{ts:?}"
    );
    assert_eq!(
        k.ok(&["logs", "done", "--since=1h"])?,
        "done-line-1\ndone-line-2\n"
    );
    assert_eq!(
        k.ok(&["logs", "done", "--since-time=2099-01-01T00:00:00Z"])?,
        ""
    );
    let prev = k.ok(&["logs", "crash", "--previous"])?;
    let cur = k.ok(&["logs", "crash"])?;
    assert!(
        prev.starts_with("crash-run ") && cur.starts_with("crash-run "),
        "{prev:?} {cur:?}"
    );
    assert_ne!(prev, cur, "--previous shows the current run");
    let e = k.fails(&["logs", "done", "--previous"])?;
    assert!(
        e.contains("previous terminated container \"main\" in pod \"done\" not found"),
        "{e}"
    );
    let e = k.fails(&["logs", "initfail", "-c", "main"])?;
    assert!(e.contains("Error from server (BadRequest): container \"main\" in pod \"initfail\" is waiting to start: PodInitializing"), "{e}");
    let e = k.fails(&["logs", "nosuchpod"])?;
    assert!(e.contains("NotFound"), "{e}");

    // --- top ---
    let top = k.until("pod metrics", &["top", "pod"], long, |t| {
        row(t, &web[0][0]).is_some()
    })?;
    assert_eq!(header(&top), ["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    let topn = k.ok(&["top", "node"])?;
    assert!(
        header(&topn).starts_with(&["NAME".to_string(), "CPU(cores)".to_string()]),
        "{topn}"
    );
    assert!(row(&topn, &node).is_some(), "{topn}");

    // --- explain (OpenAPI v3) ---
    let ex = k.ok(&["explain", "pod.spec.containers"])?;
    assert!(
        ex.contains("KIND:       Pod") && ex.contains("FIELD: containers <[]Container>"),
        "{ex}"
    );
    let ex = k.ok(&["explain", "deployment.spec.replicas"])?;
    assert!(
        ex.contains("GROUP:      apps") && ex.contains("replicas"),
        "{ex}"
    );

    // --- writes: berth's 405 everywhere, the source named ---
    let file = agent.manifests.join("app.yaml");
    let f = file.display().to_string();
    let e = k.fails(&["apply", "-f", &f])?;
    assert!(
        e.contains("Error from server (MethodNotAllowed)")
            && e.contains("change the manifests (directory or Git)"),
        "{e}"
    );
    assert!(
        e.contains(&format!("{f}:1")),
        "apply does not name the source: {e}"
    );
    let e = k.fails(&["apply", "-f", &f, "--dry-run=server"])?;
    assert!(e.contains("MethodNotAllowed"), "{e}");
    for args in [
        vec!["delete", "pod", "crash"],
        vec!["scale", "deploy", "web", "--replicas=3"],
        vec!["rollout", "restart", "deploy/web"],
        vec!["patch", "cm", "settings", "-p", r#"{"data":{"a":"9"}}"#],
        vec!["create", "configmap", "extra", "--from-literal=a=b"],
        vec!["label", "pod", "done", "x=y"],
    ] {
        let e = k.fails(&args)?;
        assert!(
            e.contains("berth is declarative") && e.contains("change the manifests"),
            "{args:?}: {e}"
        );
    }
    let e = k.fails(&["delete", "cm", "settings"])?;
    assert!(
        e.contains(&format!("{f}:")),
        "delete does not name the source: {e}"
    );
    let e = k.fails(&["exec", "crash", "--", "ls"])?;
    assert!(e.contains("berth does not offer exec"), "{e}");
    // (the local side is one of this test's own ports; kubectl fails before it listens)
    let e = k.fails(&["port-forward", &format!("pod/{}", web[0][0]), "17219:8080"])?;
    assert!(e.contains("berth does not offer port-forward"), "{e}");
    // nothing changed
    assert!(row(&k.ok(&["get", "pods"])?, "crash").is_some());
    Ok(())
}

/// An RFC 3339 time as kubectl --timestamps prints it.
struct TimeCheck;
impl std::str::FromStr for TimeCheck {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let b = s.as_bytes();
        (b.len() >= 20 && b[4] == b'-' && b[10] == b'T' && s.ends_with('Z'))
            .then_some(TimeCheck)
            .ok_or(())
    }
}

// ---------------------------------------------------------------------------
// the Python `kubernetes` client (from PyPI)

/// A venv with the `kubernetes` package, made once and kept in the temp dir.
fn python_client() -> Result<PathBuf> {
    let venv = std::env::var("BERTH_PYK8S_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("berth-e2e-pyk8s"));
    let py = venv.join("bin/python3");
    let has = |py: &Path| {
        Command::new(py)
            .args(["-c", "import kubernetes"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if py.exists() && has(&py) {
        return Ok(py);
    }
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()?;
    if !st.success() {
        bail!("python3 -m venv failed (install python3-venv)");
    }
    let st = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "kubernetes"])
        .status()?;
    if !st.success() || !has(&py) {
        bail!("pip install kubernetes failed");
    }
    Ok(py)
}

const PY: &str = r#"
import sys, threading, time
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

port = sys.argv[1]
cfg = client.Configuration()
cfg.host = f"http://127.0.0.1:{port}"
api = client.ApiClient(cfg)
v1 = client.CoreV1Api(api)
apps = client.AppsV1Api(api)

pods = v1.list_namespaced_pod("default")
rv = pods.metadata.resource_version
assert rv, "list has no resourceVersion"
names = sorted(p.metadata.name for p in pods.items)
for p in pods.items:
    m = p.metadata
    assert m.uid and m.resource_version and m.creation_timestamp, f"{m.name}: metadata incomplete"
    assert p.status is not None and p.status.phase, f"{m.name}: no status"
print("list", names)

d = apps.read_namespaced_deployment("web", "default")
assert d.status.ready_replicas == 2, d.status
st = v1.read_namespaced_pod_status("done", "default")
assert st.status.phase == "Succeeded", st.status.phase
n = v1.list_node().items
assert len(n) == 1 and n[0].status.node_info.kernel_version, n
print("read ok")

# watch: the first ADDED event has a status; timeoutSeconds ends the stream
t0 = time.time()
seen = []
for ev in watch.Watch().stream(v1.list_namespaced_pod, "default", timeout_seconds=3):
    assert ev["object"].status.phase, ev
    seen.append((ev["type"], ev["object"].metadata.name))
took = time.time() - t0
# the current state first (one ADDED per pod), then changes (the crash-looping pods)
added = [n for t, n in seen[:len(names)] if t == "ADDED"]
assert sorted(added) == names, seen
assert all(t == "MODIFIED" for t, _ in seen[len(names):]), seen
assert 2.5 <= took < 15, f"timeoutSeconds=3 stream took {took:.1f}s"
print("watch", len(seen), f"{took:.1f}s")

# resume from the list's resourceVersion: only what changed since (the crash-looping
# pods), never an ADDED for what the list had, nothing for the settled pods
evs = list(watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=2))
for e in evs:
    m = e["object"].metadata
    assert e["type"] == "MODIFIED" and int(m.resource_version) > int(rv), (e["type"], m.name, m.resource_version, rv)
    assert m.name in ("crash", "initfail"), m.name
# bookmarks with sendInitialEvents
w = v1.list_namespaced_pod("default", watch=True, allow_watch_bookmarks=True, send_initial_events=True,
    resource_version_match="NotOlderThan", resource_version="", timeout_seconds=2, _preload_content=False)
body = w.read().decode()
assert '"BOOKMARK"' in body and "initial-events-end" in body, body[-400:]
# a version from before this agent started is gone (an ERROR event with a 410 Status,
# which the client's Watch turns into a relist)
w = v1.list_namespaced_pod("default", watch=True, resource_version="1", timeout_seconds=2, _preload_content=False)
body = w.read().decode()
assert '"ERROR"' in body and '"code":410' in body.replace(" ", ""), body
print("resume ok")

# a change shows up as an event after resuming
def change():
    time.sleep(1)
    open(sys.argv[2], "w").write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: added\ndata: {x: y}\n")
cms = v1.list_namespaced_config_map("default")
threading.Thread(target=change).start()
got = []
for ev in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=cms.metadata.resource_version, timeout_seconds=20):
    got.append((ev["type"], ev["object"].metadata.name))
    if ev["object"].metadata.name == "added":
        break
assert got == [("ADDED", "added")], got
print("change ok")

log = v1.read_namespaced_pod_log("done", "default")
assert log == "done-line-1\ndone-line-2\n", repr(log)
log = v1.read_namespaced_pod_log("done", "default", tail_lines=1, timestamps=True)
assert log.endswith(" done-line-2\n"), repr(log)
print("logs ok")

try:
    v1.delete_namespaced_pod("crash", "default")
    raise SystemExit("delete succeeded")
except ApiException as e:
    assert e.status == 405 and "change the manifests" in e.body, (e.status, e.body)
print("delete refused")
try:
    v1.read_namespaced_pod("nosuch", "default")
    raise SystemExit("read of a missing pod succeeded")
except ApiException as e:
    assert e.status == 404, e.status
print("python client ok")
"#;

#[test]
fn python_kubernetes_client() -> Result<()> {
    if !preconditions("python_kubernetes_client") {
        return Ok(());
    }
    let py = match python_client() {
        Ok(p) => p,
        Err(e) if !required() => {
            eprintln!("python_kubernetes_client: skipped: {e:#}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut agent = start("btkc2", 106, 17211)?;
    // "done" must have finished for its log and phase
    agent.wait_for("pod done to succeed", Duration::from_secs(60), |v| {
        (Agent::pod(v, "done")?["status"]["phase"] == "Succeeded").then_some(())
    })?;
    let script = agent.dir.join("client.py");
    std::fs::write(&script, PY)?;
    let out = Command::new("timeout")
        .arg("120")
        .arg(&py)
        .arg(&script)
        .arg(agent.port.to_string())
        .arg(agent.manifests.join("added.yaml"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stdout}");
    let r = if out.status.success() && stdout.contains("python client ok") {
        Ok(())
    } else {
        eprintln!("agent log tail:\n{}", tail(&agent.log(), 40));
        Err(anyhow::anyhow!(
            "python client failed ({}):\n{stdout}\n{stderr}",
            out.status
        ))
    };
    let _ = agent.shutdown_clean();
    r
}
