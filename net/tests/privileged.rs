//! Privileged end-to-end tests of `HostNetwork` (root; skipped otherwise).
//! Each test has its own instance `btnet<N>`, pod CIDR 10.123.<2N>.0/24 and
//! service CIDR 10.123.<2N+1>.0/24, and its `Env` guard removes the bridge,
//! table, netns, veths and processes even on failure, then checks that the
//! host's other nft tables and routes are unchanged.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use berth_contract::{Classify, ErrorKind, Network, Protocol, ServiceEntry, ServicePort};
use common::{Env, get_id, hp, in_ns, ns_path, require_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_to_pod_pod_to_host_idempotence_and_removal() {
    require_root!();
    let mut env = Env::new(1);
    let net = env.net().await;
    let a = net.ensure_pod(&env.req("a", vec![])).await.unwrap();
    let b = net.ensure_pod(&env.req("b", vec![])).await.unwrap();
    assert_eq!(a.ip, Some(Ipv4Addr::new(10, 123, 2, 2)));
    assert_eq!(b.ip, Some(Ipv4Addr::new(10, 123, 2, 3)));
    assert_eq!(a.dns_servers, vec![Ipv4Addr::new(10, 123, 2, 1)]);
    assert_eq!(a.dns_search[0], "default.svc.cluster.local");
    // idempotent
    assert_eq!(net.ensure_pod(&env.req("a", vec![])).await.unwrap(), a);
    let (ok, out) = in_ns(
        &ns_path(&a),
        &["busybox", "ping", "-c", "1", "-W", "2", "10.123.2.3"],
    )
    .await;
    assert!(ok, "pod-to-pod ping: {out}");
    let (ok, out) = in_ns(
        &ns_path(&a),
        &["busybox", "ping", "-c", "1", "-W", "2", "10.123.2.1"],
    )
    .await;
    assert!(ok, "pod-to-host ping: {out}");
    env.serve(&ns_path(&b), 8080, "b");
    let (ok, out) = in_ns(
        &ns_path(&a),
        &[
            "busybox",
            "timeout",
            "5",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://10.123.2.3:8080/id",
        ],
    )
    .await;
    assert!(ok && out.trim() == "b", "pod-to-pod TCP: {out}");
    // MTU of the uplink on eth0
    let (_, link) = in_ns(&ns_path(&a), &["ip", "-o", "link", "show", "eth0"]).await;
    assert!(link.contains(&format!("mtu {}", net.mtu())), "{link}");
    assert_eq!(net.list_pods().await.unwrap().len(), 2);
    // removal takes netns, veth and address
    net.remove_pod(&env.pod("a")).await.unwrap();
    net.remove_pod(&env.pod("a")).await.unwrap();
    assert!(!ns_path(&a).exists());
    let vname = berth_net::host_ifname("btnet1", &env.pod("a").key());
    // the kernel destroys the pair with the namespace, a moment later
    assert!(
        links_gone(&[vname], Duration::from_secs(5)),
        "veth of a removed pod still there"
    );
    assert_eq!(net.list_pods().await.unwrap(), vec![env.pod("b")]);
    net.teardown_instance().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_from_loopback_and_from_another_host() {
    require_root!();
    let mut env = Env::new(2);
    let net = env.net().await;
    let p = net
        .ensure_pod(&env.req("web", vec![hp(18002, 8080)]))
        .await
        .unwrap();
    env.serve(&ns_path(&p), 8080, "web2");
    assert_eq!(
        get_id(Ipv4Addr::LOCALHOST, 18002).await.unwrap(),
        "web2",
        "hostPort via 127.0.0.1"
    );
    // a second pod asking for the same hostPort is refused, not silently overriding
    let e = net
        .ensure_pod(&env.req("other", vec![hp(18002, 80)]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
    // "another host": a netns joined to the host by a veth in 10.123.250.8/30
    let sh = |args: &[&str]| {
        assert!(
            std::process::Command::new(args[0])
                .args(&args[1..])
                .status()
                .unwrap()
                .success(),
            "{args:?}"
        )
    };
    env.extra_cleanup.push(vec![
        "ip".into(),
        "netns".into(),
        "del".into(),
        "btnetc2".into(),
    ]);
    env.extra_cleanup.push(vec![
        "ip".into(),
        "link".into(),
        "del".into(),
        "btc2h".into(),
    ]);
    sh(&["ip", "netns", "add", "btnetc2"]);
    sh(&[
        "ip", "link", "add", "btc2h", "type", "veth", "peer", "name", "btc2c", "netns", "btnetc2",
    ]);
    sh(&["ip", "addr", "add", "10.123.250.9/30", "dev", "btc2h"]);
    sh(&["ip", "link", "set", "btc2h", "up"]);
    sh(&[
        "ip",
        "-n",
        "btnetc2",
        "addr",
        "add",
        "10.123.250.10/30",
        "dev",
        "btc2c",
    ]);
    sh(&["ip", "-n", "btnetc2", "link", "set", "btc2c", "up"]);
    sh(&["ip", "-n", "btnetc2", "link", "set", "lo", "up"]);
    sh(&[
        "ip",
        "-n",
        "btnetc2",
        "route",
        "add",
        "default",
        "via",
        "10.123.250.9",
    ]);
    let out = tokio::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            "btnetc2",
            "busybox",
            "timeout",
            "5",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://10.123.250.9:18002/id",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "web2",
        "hostPort from another host: {out:?}"
    );
    // the pod reaches its own hostPort through the host (hairpin)
    let (ok, o) = in_ns(
        &ns_path(&p),
        &[
            "busybox",
            "timeout",
            "5",
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://10.123.250.9:18002/id",
        ],
    )
    .await;
    assert!(ok && o.trim() == "web2", "hairpin hostPort: {o}");
    net.remove_pod(&env.pod("web")).await.unwrap();
    assert!(
        get_id(Ipv4Addr::LOCALHOST, 18002).await.is_err(),
        "mapping must go with the pod"
    );
    net.teardown_instance().await.unwrap();
}

fn svc(ip: Option<Ipv4Addr>, endpoints: Vec<Ipv4Addr>, node_port: bool) -> ServiceEntry {
    ServiceEntry {
        namespace: "default".into(),
        name: "web".into(),
        cluster_ip: ip,
        node_port_type: node_port,
        ports: vec![ServicePort {
            name: None,
            protocol: Protocol::Tcp,
            port: 80,
            target_port: 8080,
            node_port: None,
        }],
        endpoints,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_vip_spread_removal_reject_nodeport_and_dns() {
    require_root!();
    let mut env = Env::new(3);
    let net = env.net().await;
    let a = net.ensure_pod(&env.req("a", vec![])).await.unwrap();
    let b = net.ensure_pod(&env.req("b", vec![])).await.unwrap();
    env.serve(&ns_path(&a), 8080, "a");
    env.serve(&ns_path(&b), 8080, "b");
    let (ia, ib) = (a.ip.unwrap(), b.ip.unwrap());
    let r = net
        .sync_services(&[svc(None, vec![ia, ib], true)])
        .await
        .unwrap();
    assert!(r[0].error.is_none(), "{:?}", r[0]);
    let vip = r[0].cluster_ip;
    assert_eq!(vip, Ipv4Addr::new(10, 123, 7, 1));
    let np = r[0].node_ports[0].1;
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        seen.insert(get_id(vip, 80).await.expect("VIP from host"));
    }
    assert_eq!(
        seen,
        BTreeSet::from(["a".to_string(), "b".to_string()]),
        "spread over both backends"
    );
    // from a pod, including hairpin (a reaching itself)
    let mut from_pod = BTreeSet::new();
    for _ in 0..12 {
        let (ok, o) = in_ns(
            &ns_path(&a),
            &[
                "busybox",
                "timeout",
                "5",
                "busybox",
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://{vip}/id"),
            ],
        )
        .await;
        assert!(ok, "pod -> VIP: {o}");
        from_pod.insert(o.trim().to_string());
    }
    assert_eq!(
        from_pod,
        BTreeSet::from(["a".to_string(), "b".to_string()]),
        "pod -> VIP reaches both, itself included"
    );
    // NodePort on loopback
    assert!(
        ["a", "b"].contains(
            &get_id(Ipv4Addr::LOCALHOST, np)
                .await
                .expect("NodePort via 127.0.0.1")
                .as_str()
        )
    );
    // DNS from inside a pod
    let (ok, o) = in_ns(
        &ns_path(&b),
        &[
            "busybox",
            "nslookup",
            "web.default.svc.cluster.local",
            "10.123.6.1",
        ],
    )
    .await;
    assert!(ok && o.contains(&vip.to_string()), "nslookup FQDN: {o}");
    let (ok, o) = in_ns(&ns_path(&b), &["busybox", "nslookup", "web", "10.123.6.1"]).await;
    assert!(
        ok && o.contains(&vip.to_string()),
        "nslookup short name: {o}"
    );
    // endpoint removed (readiness lost): only a answers; the VIP is stable
    let r = net
        .sync_services(&[svc(None, vec![ia], true)])
        .await
        .unwrap();
    assert_eq!(r[0].cluster_ip, vip);
    assert_eq!(r[0].node_ports[0].1, np);
    for _ in 0..10 {
        assert_eq!(get_id(vip, 80).await.unwrap(), "a");
    }
    // no endpoints: refused fast, not a hang
    net.sync_services(&[svc(None, vec![], true)]).await.unwrap();
    let t = Instant::now();
    let e = get_id(vip, 80).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    assert!(t.elapsed() < Duration::from_secs(1));
    let (ok, o) = in_ns(
        &ns_path(&a),
        &[
            "busybox",
            "timeout",
            "2",
            "busybox",
            "nc",
            &vip.to_string(),
            "80",
        ],
    )
    .await;
    assert!(!ok, "pod -> empty VIP must fail: {o}");
    // explicit clusterIP honoured
    let want = Ipv4Addr::new(10, 123, 7, 77);
    let r = net
        .sync_services(&[svc(Some(want), vec![ib], false)])
        .await
        .unwrap();
    assert_eq!(r[0].cluster_ip, want);
    assert_eq!(get_id(want, 80).await.unwrap(), "b");
    net.teardown_instance().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adoption_after_crash_keeps_pods_and_never_reuses_addresses() {
    require_root!();
    let mut env = Env::new(4);
    let a = {
        let net = env.net().await;
        let a = net
            .ensure_pod(&env.req("a", vec![hp(18004, 8080)]))
            .await
            .unwrap();
        env.serve(&ns_path(&a), 8080, "a4");
        net.sync_services(&[svc(None, vec![a.ip.unwrap()], false)])
            .await
            .unwrap();
        a
        // dropped without teardown: like kill -9 of the agent
    };
    // a long-lived connection opened before the restart must survive it
    use tokio::io::AsyncWriteExt;
    let mut conn = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, 18004))
        .await
        .unwrap();
    let net = env.net().await;
    assert_eq!(net.list_pods().await.unwrap(), vec![env.pod("a")]);
    assert_eq!(
        get_id(Ipv4Addr::LOCALHOST, 18004).await.unwrap(),
        "a4",
        "hostPort after restart"
    );
    assert_eq!(
        get_id(Ipv4Addr::new(10, 123, 9, 1), 80).await.unwrap(),
        "a4",
        "service after restart"
    );
    conn.write_all(b"GET /id HTTP/1.0\r\n\r\n").await.unwrap();
    let mut s = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut conn, &mut s)
        .await
        .unwrap();
    assert!(s.ends_with("a4"), "connection across restart: {s}");
    let again = net
        .ensure_pod(&env.req("a", vec![hp(18004, 8080)]))
        .await
        .unwrap();
    assert_eq!(again, a);
    let b = net.ensure_pod(&env.req("b", vec![])).await.unwrap();
    assert_ne!(b.ip, a.ip);
    net.teardown_instance().await.unwrap();
}

/// Host links named in `names` all gone within `limit`.
fn links_gone(names: &[String], limit: Duration) -> bool {
    let t = Instant::now();
    loop {
        let out = std::process::Command::new("ip")
            .args(["-br", "link"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !names.iter().any(|n| text.contains(n.as_str())) {
            return true;
        }
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removing many pods leaves the veths to the namespaces' destruction (one
/// batch in the kernel, not one RTNL delete and grace period per pod): all
/// go, the removals are not serial grace periods, and a pod re-created under
/// the same key at once gets a working pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_removals_batch_the_veths_and_a_same_key_pod_comes_back() {
    require_root!();
    let env = Env::new(120);
    let net = env.net().await;
    let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    for n in &names {
        net.ensure_pod(&env.req(n, vec![])).await.unwrap();
    }
    let vnames: Vec<String> = names
        .iter()
        .map(|n| berth_net::host_ifname("btnet120", &env.pod(n).key()))
        .collect();
    assert!(!links_gone(&vnames[..1], Duration::ZERO), "veth p0 missing");
    let t = Instant::now();
    for n in &names {
        net.remove_pod(&env.pod(n)).await.unwrap();
    }
    let removed = t.elapsed();
    assert!(
        links_gone(&vnames, Duration::from_secs(10)),
        "veths of removed pods still there after 10 s"
    );
    let gone = t.elapsed();
    eprintln!("20 pods: remove_pod calls {removed:?}, veths gone after {gone:?}");
    // one explicit veth delete costs a grace period (about 33 ms here), on
    // top of each removal's state write: 20 serial ones took 1.2 s under
    // load; the batch took 0.58 s under the same load (load average 17)
    assert!(gone < Duration::from_millis(1000), "removal took {gone:?}");
    // a pod of the same key, at once: a stale pair, if any, is replaced
    let a = net.ensure_pod(&env.req("p0", vec![])).await.unwrap();
    let (ok, out) = in_ns(
        &ns_path(&a),
        &["busybox", "ping", "-c", "1", "-W", "2", "10.123.240.1"],
    )
    .await;
    assert!(ok, "re-created pod reaches the bridge: {out}");
    net.teardown_instance().await.unwrap();
}
