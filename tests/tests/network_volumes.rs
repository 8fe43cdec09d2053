//! Networking and data through the real binary: hostPort from loopback,
//! Service VIP across two ready backends, NodePort, names, and volumes that
//! outlive pods and agent restarts.

use std::time::Duration;

use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions, tcp_request};
use serde_json::Value;

fn http_get(addr: &str) -> anyhow::Result<String> {
    tcp_request(
        addr,
        b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
}

fn ready(v: &Value, name: &str) -> bool {
    Agent::pod(v, name)
        .and_then(|p| p["status"]["conditions"].as_array().cloned())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn web_pod(name: &str, host_port: Option<u16>) -> String {
    let hp = host_port
        .map(|p| format!(", hostPort: {p}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo I-am-{name} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080{hp}}}]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"#
    )
}

#[test]
fn host_port_service_vip_node_port_and_dns() -> anyhow::Result<()> {
    if !preconditions("host_port_service_vip_node_port_and_dns") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btnw1",
        net: 11,
        port: 17111,
        with_image: true,
    })?;
    a.write_manifest("web1.yaml", &web_pod("web1", Some(18111)))?;
    a.write_manifest("web2.yaml", &web_pod("web2", None))?;
    a.write_manifest(
        "svc.yaml",
        r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30111}]
"#,
    )?;
    a.start()?;
    a.wait_for("both ready", Duration::from_secs(60), |v| {
        (ready(v, "web1") && ready(v, "web2")).then_some(())
    })?;
    // hostPort from the host's loopback
    let r = http_get("127.0.0.1:18111")?;
    assert!(r.contains("I-am-web1"), "hostPort answer: {r}");
    // Service VIP spreads over both backends
    let svc = a.get_json("/api/v1/namespaces/default/services/web")?;
    let vip = svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        vip.starts_with("10.124.23."),
        "clusterIP from the service CIDR: {svc}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        if let Ok(r) = http_get(&format!("{vip}:80")) {
            for n in ["web1", "web2"] {
                if r.contains(&format!("I-am-{n}")) {
                    seen.insert(n);
                }
            }
        }
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "VIP reached {seen:?}");
    // NodePort on loopback
    let r = http_get("127.0.0.1:30111")?;
    assert!(r.contains("I-am-web"), "NodePort answer: {r}");
    // names: a pod resolves the service name to the ClusterIP
    let log =
        a.run_client("nslookup web.default.svc.cluster.local; wget -q -O - http://web/ ; sleep 1")?;
    assert!(
        log.contains(&vip),
        "nslookup answered the ClusterIP {vip}: {log}"
    );
    assert!(log.contains("I-am-web"), "wget through the name: {log}");
    a.shutdown_clean()
}

#[test]
fn volume_data_survives_pod_deletion_and_agent_kill() -> anyhow::Result<()> {
    if !preconditions("volume_data_survives_pod_deletion_and_agent_kill") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btvol1",
        net: 12,
        port: 17112,
        with_image: true,
    })?;
    a.write_manifest(
        "vol.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: data}\n",
    )?;
    a.write_manifest(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {greeting: hello-v1}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: s3cret}\n",
    )?;
    let writer = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: w
    image: {IMAGE}
    command: ["sh", "-c", "echo line-$(date +%s%N) >> /data/log.txt; stat -L -c %a /creds/password > /data/secret-mode; cat /creds/password > /data/secret-copy; while true; do cat /conf/greeting > /data/greeting; sleep 1; done"]
    volumeMounts:
    - {{name: data, mountPath: /data}}
    - {{name: conf, mountPath: /conf}}
    - {{name: creds, mountPath: /creds, readOnly: true}}
  volumes:
  - {{name: data, persistentVolumeClaim: {{claimName: data}}}}
  - {{name: conf, configMap: {{name: conf}}}}
  - {{name: creds, secret: {{secretName: creds, defaultMode: 0400}}}}
"#
    );
    a.write_manifest("writer.yaml", &writer)?;
    a.start()?;
    let data = a.state_dir.join("volumes/default/data");
    a.wait_for("writer wrote", Duration::from_secs(60), |_| {
        std::fs::read_to_string(data.join("greeting"))
            .ok()
            .filter(|s| s.contains("hello-v1"))
    })?;
    assert_eq!(
        std::fs::read_to_string(data.join("secret-mode"))?.trim(),
        "400"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("secret-copy"))?.trim(),
        "s3cret"
    );
    // the secret never shows in the API
    let (_, secrets) = a.get("/api/v1/secrets")?;
    assert!(
        !secrets.contains("s3cret") && !secrets.contains("czNjcmV0"),
        "{secrets}"
    );
    // configMap update shows up in the running pod's files
    a.write_manifest(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {greeting: hello-v2}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: s3cret}\n",
    )?;
    a.wait_for("configMap update seen", Duration::from_secs(60), |_| {
        std::fs::read_to_string(data.join("greeting"))
            .ok()
            .filter(|s| s.contains("hello-v2"))
    })?;
    // kill -9 the agent, start again: data still there, the pod adopted
    a.kill9();
    a.start()?;
    // until the restarted agent has adopted its pods, the API lists only the
    // manifests' pods: a removal would look finished before it started
    a.wait_ready(Duration::from_secs(30))?;
    // delete the pod: the volume stays, a new pod appends
    a.remove_manifest("writer.yaml")?;
    a.wait_for("writer gone", Duration::from_secs(30), |v| {
        Agent::pod(v, "writer").is_none().then_some(())
    })?;
    assert_eq!(
        std::fs::read_to_string(data.join("log.txt"))?
            .lines()
            .count(),
        1
    );
    a.write_manifest("writer.yaml", &writer)?;
    a.wait_for("second line", Duration::from_secs(60), |_| {
        (std::fs::read_to_string(data.join("log.txt"))
            .ok()?
            .lines()
            .count()
            == 2)
            .then_some(())
    })?;
    let vols = a.get_json("/apis/berth.dev/v1alpha1/volumes")?;
    assert!(
        vols.to_string().contains("writer"),
        "volume shows its user: {vols}"
    );
    // removing the Volume manifest (Retain) keeps the data
    a.shutdown_clean()?;
    assert!(data.join("log.txt").exists(), "Retain keeps the data");
    Ok(())
}
