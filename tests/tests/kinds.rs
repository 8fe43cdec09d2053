//! Issue 15 end to end, with the real binary: kinds berth does not run never
//! block pruning; headless and LoadBalancer Services.

use std::net::UdpSocket;
use std::time::Duration;

use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions, tcp_request};
use serde_json::Value;

fn ready(v: &Value, name: &str) -> bool {
    Agent::pod(v, name)
        .and_then(|p| p["status"]["conditions"].as_array().cloned())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn running(v: &Value, name: &str) -> bool {
    Agent::pod(v, name).is_some_and(|p| p["status"]["phase"] == "Running")
}

fn pod_names(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

const INGRESS: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
"#;

/// An Ingress file beside a Deployment while another manifest is deleted:
/// the Ingress is skipped with a warning, the source stays complete and the
/// delete happens.
#[test]
fn foreign_kind_beside_a_deployment_never_blocks_a_delete() -> anyhow::Result<()> {
    if !preconditions("foreign_kind_beside_a_deployment_never_blocks_a_delete") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btk81",
        net: 110,
        port: 17220,
        with_image: true,
    })?;
    a.write_manifest(
        "web.yaml",
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {IMAGE}
        command: ["sh", "-c", "exec sleep 17220"]
"#
        ),
    )?;
    a.write_manifest("ingress.yaml", INGRESS)?;
    a.write_manifest(
        "gone.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: gone}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {IMAGE}
    command: ["sh", "-c", "exec sleep 17221"]
"#
        ),
    )?;
    a.start()?;
    a.wait_for("both running", Duration::from_secs(90), |v| {
        let names = pod_names(v);
        let web = names.iter().find(|n| n.starts_with("web-"))?.clone();
        (running(v, &web) && running(v, "gone")).then_some(())
    })?;
    let st = a.get_json("/api/v1/status")?;
    assert_eq!(st["complete"], true, "{st}");
    assert_eq!(st["skipped"], 1, "{st}");
    let src = &st["sources"][0];
    assert_eq!(src["complete"], true, "{src}");
    assert_eq!(src["skipped"][0]["kind"], "Ingress", "{src}");
    assert_eq!(src["skipped"][0]["apiVersion"], "networking.k8s.io/v1");
    assert!(
        src["filesWithErrors"].as_array().is_some_and(Vec::is_empty),
        "{src}"
    );
    assert!(
        src["diagnostics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["severity"] == "warning"
                && d["text"].as_str().is_some_and(|t| t.contains("Ingress"))),
        "one warning names the Ingress: {src}"
    );
    a.remove_manifest("gone.yaml")?;
    a.wait_for("gone pruned", Duration::from_secs(60), |v| {
        (!pod_names(v).iter().any(|n| n == "gone")).then_some(())
    })?;
    let pods = a.get_json("/api/v1/pods")?;
    assert!(
        pod_names(&pods).iter().any(|n| n.starts_with("web-")),
        "the Deployment's pod stays: {pods}"
    );
    a.shutdown_clean()
}

fn web_pod(name: &str, hostname: Option<&str>) -> String {
    let host = hostname
        .map(|h| format!("  hostname: {h}\n  subdomain: nginx\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
{host}  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo I-am-{name} > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: [{{containerPort: 8080, name: web}}]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
"#
    )
}

/// A DNS query for `name` of type `qtype`; returns the answer count and the raw response.
fn dns_query(server: &str, name: &str, qtype: u16) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut q = vec![0x15, 0x20, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, (qtype >> 8) as u8, qtype as u8, 0, 1]);
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.send_to(&q, server)?;
    let mut buf = [0u8; 1500];
    let (n, _) = s.recv_from(&mut buf)?;
    anyhow::ensure!(n >= 12 && buf[..2] == q[..2], "bad DNS answer");
    Ok((u16::from_be_bytes([buf[6], buf[7]]), buf[..n].to_vec()))
}

/// Headless Service: DNS answers the ready pods' addresses, `web-0.nginx`
/// and SRV records for the named port; a LoadBalancer Service publishes its
/// port on the host's addresses and names the node's address in its status.
#[test]
fn headless_and_load_balancer_services() -> anyhow::Result<()> {
    if !preconditions("headless_and_load_balancer_services") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btk82",
        net: 111,
        port: 17221,
        with_image: true,
    })?;
    a.write_manifest("web0.yaml", &web_pod("web0", Some("web-0")))?;
    a.write_manifest("web1.yaml", &web_pod("web1", None))?;
    a.write_manifest(
        "svc.yaml",
        r#"apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 17229, targetPort: 8080}]
"#,
    )?;
    a.start()?;
    let ips = a.wait_for("both ready", Duration::from_secs(90), |v| {
        if !(ready(v, "web0") && ready(v, "web1")) {
            return None;
        }
        let ip = |n: &str| {
            Agent::pod(v, n)?["status"]["podIP"]
                .as_str()
                .map(str::to_string)
        };
        Some((ip("web0")?, ip("web1")?))
    })?;
    // the headless Service has no address
    let svc = a.get_json("/api/v1/namespaces/default/services/nginx")?;
    assert_eq!(svc["spec"]["clusterIP"], "None", "{svc}");
    // LoadBalancer: the port on the host's loopback, and the node's address in status
    let r = a.wait_for("lb answers", Duration::from_secs(20), |_| {
        tcp_request(
            "127.0.0.1:17229",
            b"GET / HTTP/1.0\r\nHost: x\r\n\r\n",
            Duration::from_secs(3),
        )
        .ok()
        .filter(|r| r.contains("I-am-web"))
    })?;
    assert!(r.contains("I-am-web"), "{r}");
    let lb = a.get_json("/api/v1/namespaces/default/services/lb")?;
    assert!(
        lb["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
        "{lb}"
    );
    assert!(
        lb["spec"]["ports"][0]["nodePort"].as_i64().is_some(),
        "{lb}"
    );
    // names, from a pod
    let log = a.run_client(
        "cat /etc/resolv.conf; echo ALL; nslookup nginx.default.svc.cluster.local; echo WEB0; nslookup web-0.nginx.default.svc.cluster.local; sleep 1",
    )?;
    let (all, web0) = log
        .split_once("ALL")
        .and_then(|(_, rest)| rest.split_once("WEB0"))
        .unwrap_or_default();
    assert!(
        all.contains(&ips.0) && all.contains(&ips.1),
        "the headless name answers both ready pods {ips:?}: {log}"
    );
    assert!(
        web0.contains(&ips.0),
        "web-0.nginx is web0 {}: {log}",
        ips.0
    );
    assert!(!web0.contains(&ips.1), "web-0.nginx is only web0: {log}");
    // SRV for the named port, asked from the host at the pods' nameserver
    let ns = log
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .map(|s| s.trim().to_string())
        .expect("nameserver in the pod's resolv.conf");
    let (answers, raw) = dns_query(
        &format!("{ns}:53"),
        "_web._tcp.nginx.default.svc.cluster.local",
        33,
    )?;
    assert_eq!(answers, 2, "one SRV record per ready pod");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("web-0"),
        "SRV target web-0.nginx...: {text:?}"
    );
    // a pod that stops being ready leaves the answers
    a.remove_manifest("web1.yaml")?;
    a.wait_for("one SRV record", Duration::from_secs(30), |_| {
        dns_query(
            &format!("{ns}:53"),
            "_web._tcp.nginx.default.svc.cluster.local",
            33,
        )
        .ok()
        .filter(|(n, _)| *n == 1)
    })?;
    a.shutdown_clean()
}
