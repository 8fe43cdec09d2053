use super::*;
use berth_contract::ServicePort;

fn svc(ns: &str, name: &str, ip: Option<Ipv4Addr>, nodeport: bool) -> ServiceEntry {
    ServiceEntry {
        namespace: ns.into(),
        name: name.into(),
        cluster_ip: ip,
        node_port_type: nodeport,
        ports: vec![ServicePort {
            name: None,
            protocol: Protocol::Tcp,
            port: 80,
            target_port: 8080,
            node_port: None,
        }],
        endpoints: vec![],
        ..Default::default()
    }
}

fn load(dir: &Path) -> Services {
    Services::load(dir, "10.123.1.0/24".parse().unwrap(), (30000, 30002)).unwrap()
}

#[test]
fn cluster_ips_are_stable_unique_and_persisted() {
    let d = tempfile::tempdir().unwrap();
    let mut s = load(d.path());
    let a = s
        .sync(&[svc("d", "a", None, false), svc("d", "b", None, false)])
        .unwrap();
    assert_eq!(a[0].cluster_ip, Ipv4Addr::new(10, 123, 1, 1));
    assert_eq!(a[1].cluster_ip, Ipv4Addr::new(10, 123, 1, 2));
    // order changes and a new service: existing ones keep their address
    let b = s
        .sync(&[
            svc("d", "c", None, false),
            svc("d", "b", None, false),
            svc("d", "a", None, false),
        ])
        .unwrap();
    assert_eq!(b[2].cluster_ip, a[0].cluster_ip);
    assert_eq!(b[1].cluster_ip, a[1].cluster_ip);
    assert_eq!(b[0].cluster_ip, Ipv4Addr::new(10, 123, 1, 3));
    // restart
    let mut s2 = load(d.path());
    let c = s2.sync(&[svc("d", "a", None, false)]).unwrap();
    assert_eq!(c[0].cluster_ip, a[0].cluster_ip);
    assert_eq!(s2.programmed().count(), 1);
}

#[test]
fn explicit_cluster_ip_is_honoured_and_validated() {
    let d = tempfile::tempdir().unwrap();
    let mut s = load(d.path());
    let want = Ipv4Addr::new(10, 123, 1, 1);
    // "a" had .1 implicitly; "b" asks for .1 explicitly: the explicit request wins
    s.sync(&[svc("d", "a", None, false)]).unwrap();
    let r = s
        .sync(&[svc("d", "a", None, false), svc("d", "b", Some(want), false)])
        .unwrap();
    assert_eq!(r[1].cluster_ip, want);
    assert_ne!(r[0].cluster_ip, want);
    assert!(r.iter().all(|x| x.error.is_none()));
    let r = s
        .sync(&[svc("d", "x", Some(Ipv4Addr::new(10, 9, 9, 9)), false)])
        .unwrap();
    assert!(
        r[0].error
            .as_deref()
            .unwrap()
            .contains("not a usable address")
    );
    assert_eq!(
        s.programmed().count(),
        0,
        "a service in error is not programmed"
    );
    let r = s
        .sync(&[
            svc("d", "x", Some(want), false),
            svc("d", "y", Some(want), false),
        ])
        .unwrap();
    assert!(r[0].error.is_none());
    assert!(r[1].error.as_deref().unwrap().contains("already used"));
}

#[test]
fn node_ports_allocate_in_range_and_stay() {
    let d = tempfile::tempdir().unwrap();
    let mut s = load(d.path());
    let r = s
        .sync(&[svc("d", "a", None, true), svc("d", "b", None, true)])
        .unwrap();
    assert_eq!(r[0].node_ports, vec![(80, 30000)]);
    assert_eq!(r[1].node_ports, vec![(80, 30001)]);
    let mut req = svc("d", "c", None, true);
    req.ports[0].node_port = Some(30001);
    let r = s.sync(&[svc("d", "b", None, true), req.clone()]).unwrap();
    // explicit request wins over b's earlier allocation, which moves
    assert_eq!(r[1].node_ports, vec![(80, 30001)]);
    assert_eq!(r[0].node_ports, vec![(80, 30000)]);
    req.ports[0].node_port = Some(40000);
    let r = s.sync(&[req]).unwrap();
    assert!(r[0].error.as_deref().unwrap().contains("outside the range"));
}

#[test]
fn rules_reject_without_endpoints_and_spread_with_them() {
    let mut e = svc("d", "a", None, true);
    let p = ProgrammedService {
        entry: e.clone(),
        cluster_ip: Ipv4Addr::new(10, 123, 1, 1),
        node_ports: vec![(80, Protocol::Tcp, 30000)],
    };
    let r = rules(&p);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|(c, _)| *c == "no_endpoints"));
    e.endpoints = vec![Ipv4Addr::new(10, 123, 0, 2), Ipv4Addr::new(10, 123, 0, 3)];
    let p = ProgrammedService { entry: e, ..p };
    let r = rules(&p);
    assert!(r.iter().all(|(c, _)| *c == "services"));
    let json = serde_json::to_string(&r[0].1).unwrap();
    assert!(
        json.contains(r#""numgen":{"mode":"random","mod":2,"offset":0}"#),
        "{json}"
    );
}

/// Issue 15: a headless Service gets no address, no node ports and no rules;
/// a LoadBalancer also publishes its port on the host's addresses.
#[test]
fn headless_and_load_balancer_services() {
    let d = tempfile::tempdir().unwrap();
    let mut s = load(d.path());
    let mut h = svc("d", "h", None, true);
    h.headless = true;
    h.endpoints = vec![Ipv4Addr::new(10, 123, 0, 2)];
    let a = s.sync(&[h, svc("d", "a", None, false)]).unwrap();
    assert_eq!(a[0].error, None);
    assert_eq!(a[0].cluster_ip, Ipv4Addr::UNSPECIFIED);
    assert!(a[0].node_ports.is_empty());
    assert_eq!(
        a[1].cluster_ip,
        Ipv4Addr::new(10, 123, 1, 1),
        "the headless one took no address"
    );
    let prog: Vec<&ProgrammedService> = s.programmed().collect();
    let headless = prog.iter().find(|p| p.entry.name == "h").unwrap();
    assert!(rules(headless).is_empty());

    let mut lb = svc("d", "lb", None, true);
    lb.load_balancer = true;
    lb.endpoints = vec![Ipv4Addr::new(10, 123, 0, 2)];
    let p = ProgrammedService {
        entry: lb,
        cluster_ip: Ipv4Addr::new(10, 123, 1, 3),
        node_ports: vec![(80, Protocol::Tcp, 30001)],
    };
    let r = rules(&p);
    // VIP, node port, and the service port on the host's addresses
    assert_eq!(r.len(), 3, "{r:?}");
    let host_port = serde_json::to_string(&r[2].1).unwrap();
    assert!(host_port.contains(r#""right":80"#), "{host_port}");
    assert!(host_port.contains("local"), "{host_port}");
}
