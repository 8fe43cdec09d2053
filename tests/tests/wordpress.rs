//! The Kubernetes tutorial "Deploying WordPress and MySQL with Persistent
//! Volumes" (issue 15) end to end through the real binary: the tutorial's
//! objects as written (tests/fixtures/k8s-examples/application/wordpress/),
//! the kustomization's secretGenerator as a plain Secret, only the images
//! swapped for the local busybox one and commands added: a "mysql" that
//! listens on 3306, checks the password and keeps its data in its volume, and
//! a "wordpress" that asks `wordpress-mysql:3306` by name on every HTTP
//! request on port 80. Checked as a user: all pods Ready, `kubectl get
//! pods,svc,pvc`, HTTP through the LoadBalancer port on the node's loopback,
//! and the mysql data surviving a new pod (a manifest change, Recreate).
//!
//! The LoadBalancer Service publishes port 80 (as written) on the host's
//! addresses while the test runs; the test talks to 127.0.0.1 only.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions, tcp_request, workspace_root};
use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";

/// The tutorial's `kustomization.yaml` secretGenerator, as a plain Secret.
const SECRET: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: mysql-pass
type: Opaque
stringData:
  password: s3cret-Pa55
"#;

/// "mysql": one id made on first start and kept in /var/lib/mysql (the
/// PVC's volume); each connection sends a password line and gets the id
/// back when it matches MYSQL_PASSWORD (from the Secret).
const MYSQL_CMD: &str = r#"        command:
        - sh
        - -c
        - |
          set -e
          cd /var/lib/mysql
          [ -s id ] || { echo "db-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')" > id.tmp; mv id.tmp id; }
          echo "start $(date +%s)" >> starts
          exec nc -ll -p 3306 -e sh -c 'read -r pw; if [ "$pw" = "$MYSQL_PASSWORD" ]; then echo "mysql-ok $(cat /var/lib/mysql/id) db=$MYSQL_DATABASE user=$MYSQL_USER"; else echo "mysql-denied"; fi'
"#;

/// "wordpress": HTTP on 80; every request asks mysql by the Service name.
const WORDPRESS_CMD: &str = r#"        command:
        - sh
        - -c
        - |
          echo "wordpress content" > /var/www/html/index.html
          exec nc -ll -p 80 -e sh -c 'while read -r l; do l=$(echo "$l" | tr -d "\r"); [ -z "$l" ] && break; done; r=$(echo "$WORDPRESS_DB_PASSWORD" | nc -w 3 "$WORDPRESS_DB_HOST" 3306); printf "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nwordpress as %s; db %s: %s\n" "$WORDPRESS_DB_USER" "$WORDPRESS_DB_HOST" "$r"'
"#;

/// The tutorial's file with its image swapped and a command added.
fn adapted(file: &str, image: &str, cmd: &str) -> anyhow::Result<String> {
    let p = workspace_root().join("tests/fixtures/k8s-examples/application/wordpress");
    let text = std::fs::read_to_string(p.join(file)).with_context(|| format!("reading {file}"))?;
    let from = format!("      - image: {image}\n");
    ensure!(text.contains(&from), "{file} no longer has {from:?}");
    let to = format!("      - image: {IMAGE}\n{cmd}");
    Ok(text.replace(&from, &to))
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The one pod of a Deployment (by its name prefix) once it is Ready.
fn ready_pod(v: &Value, deployment: &str) -> Option<String> {
    let pods: Vec<&Value> = v["items"]
        .as_array()?
        .iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .and_then(|n| n.strip_prefix(deployment))
                .and_then(|rest| rest.strip_prefix('-'))
                // "wordpress-mysql-..." is not a pod of "wordpress"
                .is_some_and(|rest| !rest.starts_with("mysql-"))
        })
        .collect();
    match pods.as_slice() {
        [p] if ready(p) && p["metadata"]["deletionTimestamp"].is_null() => {
            p["metadata"]["name"].as_str().map(str::to_string)
        }
        _ => None,
    }
}

fn http_lb(timeout: Duration) -> anyhow::Result<String> {
    let t0 = Instant::now();
    loop {
        let r = tcp_request(
            "127.0.0.1:80",
            b"GET / HTTP/1.1\r\nHost: wordpress\r\n\r\n",
            Duration::from_secs(5),
        );
        match r {
            Ok(body) if body.contains("mysql-ok") => return Ok(body),
            other if t0.elapsed() > timeout => {
                bail!("no answer from wordpress through mysql in {timeout:?}: {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn kubectl(a: &Agent, args: &[&str]) -> anyhow::Result<String> {
    let dir = a.dir.join("kubectl");
    std::fs::create_dir_all(dir.join("cache"))?;
    std::fs::write(dir.join("config"), "apiVersion: v1\nkind: Config\n")?;
    let out = Command::new("timeout")
        .arg("60")
        .arg(KUBECTL)
        .arg(format!("--server=http://127.0.0.1:{}", a.port))
        .arg(format!("--kubeconfig={}", dir.join("config").display()))
        .arg(format!("--cache-dir={}", dir.join("cache").display()))
        .args(args)
        .output()
        .context("running kubectl")?;
    ensure!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Columns of the row whose first column is `name` (kubectl pads with 2+ spaces).
fn row(table: &str, name: &str) -> Option<Vec<String>> {
    table.lines().find_map(|l| {
        let cols: Vec<String> = l
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        (cols.first().map(String::as_str) == Some(name)).then_some(cols)
    })
}

fn check_kubectl(a: &Agent, mysql_pod: &str, wp_pod: &str) -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        if std::env::var("BERTH_E2E_REQUIRED").is_ok_and(|v| v == "1") {
            bail!("{KUBECTL} not installed (BERTH_E2E_REQUIRED=1)");
        }
        eprintln!("wordpress: kubectl checks skipped: {KUBECTL} not installed");
        return Ok(());
    }
    let t = kubectl(a, &["get", "pods,svc,pvc"])?;
    for pod in [mysql_pod, wp_pod] {
        let r = row(&t, &format!("pod/{pod}")).with_context(|| format!("no pod/{pod} in:\n{t}"))?;
        ensure!(r[1] == "1/1" && r[2] == "Running", "pod row {r:?} in:\n{t}");
    }
    let lb = row(&t, "service/wordpress").with_context(|| format!("no service/wordpress:\n{t}"))?;
    ensure!(
        lb[1] == "LoadBalancer" && lb[3] != "<pending>" && lb[4].starts_with("80:"),
        "LoadBalancer row {lb:?} in:\n{t}"
    );
    let hl =
        row(&t, "service/wordpress-mysql").with_context(|| format!("no headless row:\n{t}"))?;
    ensure!(
        hl[1] == "ClusterIP" && hl[2] == "None",
        "headless row {hl:?} in:\n{t}"
    );
    for claim in ["mysql-pv-claim", "wp-pv-claim"] {
        let r = row(&t, &format!("persistentvolumeclaim/{claim}"))
            .with_context(|| format!("no pvc {claim} in:\n{t}"))?;
        ensure!(r[1] == "Bound", "pvc row {r:?} in:\n{t}");
    }
    Ok(())
}

#[test]
fn wordpress_and_mysql_tutorial() -> anyhow::Result<()> {
    if !preconditions("wordpress_and_mysql_tutorial") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btpfwp",
        net: 30,
        port: 17320,
        with_image: true,
    })?;
    let mysql = adapted("mysql-deployment.yaml", "mysql:8.0", MYSQL_CMD)?;
    a.write_manifest("secret.yaml", SECRET)?;
    a.write_manifest("mysql-deployment.yaml", &mysql)?;
    a.write_manifest(
        "wordpress-deployment.yaml",
        &adapted(
            "wordpress-deployment.yaml",
            "wordpress:6.2.1-apache",
            WORDPRESS_CMD,
        )?,
    )?;
    a.start()?;
    let (db1, wp) = a.wait_for("both pods Ready", Duration::from_secs(90), |v| {
        Some((ready_pod(v, "wordpress-mysql")?, ready_pod(v, "wordpress")?))
    })?;
    let first = http_lb(Duration::from_secs(30))?;
    ensure!(
        first.contains("wordpress as wordpress; db wordpress-mysql: mysql-ok db-")
            && first.contains("db=wordpress user=wordpress"),
        "unexpected page: {first}"
    );
    check_kubectl(&a, &db1, &wp)?;
    // PVCs in the API: Kubernetes-shaped, Bound
    let pvcs = a.get_json("/api/v1/namespaces/default/persistentvolumeclaims")?;
    let phases: Vec<(&str, &str)> = pvcs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or(""),
                p["status"]["phase"].as_str().unwrap_or(""),
            )
        })
        .collect();
    ensure!(
        phases.contains(&("mysql-pv-claim", "Bound")) && phases.contains(&("wp-pv-claim", "Bound")),
        "pvcs: {phases:?}"
    );
    let id = |page: &str| {
        page.split_whitespace()
            .find(|w| w.starts_with("db-"))
            .map(str::to_string)
    };
    let id1 = id(&first).context("no db id")?;

    // a manifest change replaces the mysql pod (strategy Recreate): the data stays
    a.write_manifest(
        "mysql-deployment.yaml",
        &mysql.replace(
            "          value: \"wordpress\"\n        - name: MYSQL_PASSWORD",
            "          value: \"wordpress\"\n        - name: MYSQL_GENERATION\n          value: \"2\"\n        - name: MYSQL_PASSWORD",
        ),
    )?;
    let db2 = a.wait_for("a new mysql pod Ready", Duration::from_secs(90), |v| {
        ready_pod(v, "wordpress-mysql").filter(|n| *n != db1)
    })?;
    let second = http_lb(Duration::from_secs(30))?;
    let id2 = id(&second).context("no db id after the new pod")?;
    assert_eq!(
        id1, id2,
        "the mysql volume lost its data: {db1} said {id1}, {db2} said {id2}"
    );
    // the new pod started on the same directory: two starts recorded in it
    let starts = std::fs::read_to_string(a.state_dir.join("volumes/default/mysql-pv-claim/starts"))
        .context("reading the mysql volume's start log")?;
    ensure!(
        starts.lines().count() == 2,
        "the mysql volume saw these starts: {starts:?}"
    );
    a.shutdown_clean()
}
