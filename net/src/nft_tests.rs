//! Golden tests of the rendered batch: the JSON is what `nft -j -f -` gets.

use super::*;
use berth_contract::{HostPortMapping, PodRef, ServiceEntry, ServicePort};

fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {} (run with BERTH_BLESS=1)", path.display()));
    assert_eq!(expected, actual, "golden file {} differs", path.display());
}

fn render_json(pods: &[PodAlloc], svcs: &[ProgrammedService]) -> String {
    let input = RenderInput {
        table: "btgold",
        bridge: "btgold0",
        pod_cidr: "10.123.0.0/24".parse().unwrap(),
        pods: pods.iter().collect(),
        services: svcs.iter().collect(),
    };
    serde_json::to_string_pretty(&render(&input)).unwrap() + "\n"
}

#[test]
fn empty_table_golden() {
    golden("empty.json", &render_json(&[], &[]));
}

#[test]
fn pods_and_services_golden() {
    let pod = PodAlloc {
        pod: PodRef {
            namespace: "default".into(),
            name: "web".into(),
            uid: "1".into(),
        },
        ip: Ipv4Addr::new(10, 123, 0, 2),
        host_ports: vec![
            HostPortMapping {
                host_port: 18080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            HostPortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: Protocol::Udp,
                host_ip: Some(Ipv4Addr::new(192, 0, 2, 2)),
            },
        ],
    };
    let port = ServicePort {
        name: None,
        protocol: Protocol::Tcp,
        port: 80,
        target_port: 8080,
        node_port: None,
    };
    let spread = ProgrammedService {
        entry: ServiceEntry {
            namespace: "default".into(),
            name: "web".into(),
            cluster_ip: None,
            node_port_type: true,
            ports: vec![port.clone()],
            endpoints: vec![Ipv4Addr::new(10, 123, 0, 2), Ipv4Addr::new(10, 123, 0, 3)],
            ..Default::default()
        },
        cluster_ip: Ipv4Addr::new(10, 123, 1, 1),
        node_ports: vec![(80, Protocol::Tcp, 30080)],
    };
    let empty = ProgrammedService {
        entry: ServiceEntry {
            name: "idle".into(),
            node_port_type: false,
            endpoints: vec![],
            ..spread.entry.clone()
        },
        cluster_ip: Ipv4Addr::new(10, 123, 1, 2),
        node_ports: vec![],
    };
    let json = render_json(&[pod], &[spread, empty]);
    golden("pods_services.json", &json);
    // whole-table semantics: the batch names only our table and starts with add + flush
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let objs = v["nftables"].as_array().unwrap();
    assert!(objs[0]["add"]["table"]["name"] == "btgold");
    assert!(objs[1]["flush"]["table"]["name"] == "btgold");
    for o in objs {
        let inner = o
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap();
        let t = inner.get("table").or(inner.get("name")).unwrap();
        assert_eq!(t, "btgold");
    }
}
