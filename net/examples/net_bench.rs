//! Network benchmark (root): `cargo run --release -p berth-net --example net_bench`.
//!
//! Prints ensure_pod p50/p95 over 30 pods, and TCP throughput of a fixed byte
//! count over: a bare veth pair between two namespaces (baseline), pod-to-pod
//! over the bridge, host loopback through a hostPort, and pod-to-Service VIP.
//! Uses its own instance `btbench` and 10.123.60.0/24 + 10.123.61.0/24; removes
//! everything at the end.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_contract::{
    HostPortMapping, Network, PodNetRequest, PodRef, Protocol, ServiceEntry, ServicePort,
};
use berth_net::{HostNetwork, NetConfig, cleanup_instance};
use nix::sched::CloneFlags;

const BYTES: u64 = 1 << 30;
const PORT: u16 = 5201;

fn enter(ns: &Option<PathBuf>) {
    if let Some(p) = ns {
        nix::sched::setns(std::fs::File::open(p).unwrap(), CloneFlags::CLONE_NEWNET).unwrap();
    }
}

/// A sink server in `ns` (reads every connection to EOF).
fn sink(ns: Option<PathBuf>, bind: Ipv4Addr) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&ns);
        let l = TcpListener::bind((bind, PORT)).unwrap();
        tx.send(()).unwrap();
        for c in l.incoming() {
            let mut c = c.unwrap();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while c.read(&mut buf).unwrap_or(0) > 0 {}
            });
        }
    });
    rx.recv().unwrap();
}

/// Gbit/s of sending BYTES from `ns` to `to`.
fn blast(ns: Option<PathBuf>, to: SocketAddr) -> f64 {
    std::thread::spawn(move || {
        enter(&ns);
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).unwrap();
        let buf = vec![0x5au8; 1 << 16];
        let t = Instant::now();
        let mut sent = 0u64;
        while sent < BYTES {
            s.write_all(&buf).unwrap();
            sent += buf.len() as u64;
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = [0u8; 16];
        let _ = s.read(&mut rest);
        (sent * 8) as f64 / t.elapsed().as_secs_f64() / 1e9
    })
    .join()
    .unwrap()
}

fn sh(args: &[&str]) {
    let ok = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap()
        .success();
    assert!(ok, "{args:?}");
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    assert!(nix::unistd::Uid::effective().is_root(), "needs root");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = NetConfig::new("btbench");
    cfg.pod_cidr = "10.123.60.0/24".parse().unwrap();
    cfg.service_cidr = "10.123.61.0/24".parse().unwrap();
    cfg.run_dir = dir.path().join("run");
    cfg.state_dir = dir.path().join("state");
    cfg.dns_upstreams = Some(vec![]);
    let run_dir = cfg.run_dir.clone();
    let result = std::panic::AssertUnwindSafe(run(cfg));
    let r = futures::FutureExt::catch_unwind(result).await;
    let _ = Command::new("ip")
        .args(["netns", "del", "btbenchx"])
        .status();
    let _ = Command::new("ip")
        .args(["netns", "del", "btbenchy"])
        .status();
    cleanup_instance("btbench", &run_dir).await.unwrap();
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

async fn run(cfg: NetConfig) {
    let net = HostNetwork::new(cfg).await.unwrap();
    let pod = |i: usize| PodRef {
        namespace: "bench".into(),
        name: format!("p{i}"),
        uid: "1".into(),
    };
    let mut times = Vec::new();
    let mut nets = Vec::new();
    for i in 0..30 {
        let ports = if i == 1 {
            vec![HostPortMapping {
                host_port: 18600,
                container_port: PORT,
                protocol: Protocol::Tcp,
                host_ip: None,
            }]
        } else {
            vec![]
        };
        let t = Instant::now();
        let n = net
            .ensure_pod(&PodNetRequest {
                pod: pod(i),
                host_network: false,
                host_ports: ports,
            })
            .await
            .unwrap();
        times.push(t.elapsed());
        nets.push(n);
    }
    let t = Instant::now();
    net.ensure_pod(&PodNetRequest {
        pod: pod(0),
        host_network: false,
        host_ports: vec![],
    })
    .await
    .unwrap();
    let again = t.elapsed();
    println!(
        "ensure_pod over 30 pods: p50 {:?}  p95 {:?}  max {:?}  (idempotent re-ensure {:?})",
        pct(&mut times.clone(), 0.5),
        pct(&mut times.clone(), 0.95),
        pct(&mut times, 1.0),
        again
    );
    let t = Instant::now();
    let b_ip = nets[1].ip.unwrap();
    let svc = net
        .sync_services(&[ServiceEntry {
            namespace: "bench".into(),
            name: "sink".into(),
            cluster_ip: None,
            node_port_type: false,
            ports: vec![ServicePort {
                name: None,
                protocol: Protocol::Tcp,
                port: 80,
                target_port: PORT,
                node_port: None,
            }],
            endpoints: vec![b_ip],
            ..Default::default()
        }])
        .await
        .unwrap();
    println!("sync_services (1 service, 30 pods): {:?}", t.elapsed());

    // baseline: bare veth between two namespaces
    sh(&["ip", "netns", "add", "btbenchx"]);
    sh(&["ip", "netns", "add", "btbenchy"]);
    sh(&[
        "ip", "-n", "btbenchx", "link", "add", "btbx", "type", "veth", "peer", "name", "btby",
        "netns", "btbenchy",
    ]);
    sh(&[
        "ip",
        "-n",
        "btbenchx",
        "addr",
        "add",
        "10.123.62.1/30",
        "dev",
        "btbx",
    ]);
    sh(&[
        "ip",
        "-n",
        "btbenchy",
        "addr",
        "add",
        "10.123.62.2/30",
        "dev",
        "btby",
    ]);
    sh(&[
        "ip",
        "-n",
        "btbenchx",
        "link",
        "set",
        "btbx",
        "mtu",
        &net.mtu().to_string(),
        "up",
    ]);
    sh(&[
        "ip",
        "-n",
        "btbenchy",
        "link",
        "set",
        "btby",
        "mtu",
        &net.mtu().to_string(),
        "up",
    ]);
    let x = Some(PathBuf::from("/run/netns/btbenchx"));
    let y = Some(PathBuf::from("/run/netns/btbenchy"));
    sink(y, Ipv4Addr::new(10, 123, 62, 2));
    sink(nets[1].netns.clone(), Ipv4Addr::UNSPECIFIED);
    let a = nets[0].netns.clone();
    let gb = |v: f64| format!("{v:6.2} Gbit/s");
    let bare = blast(
        x,
        SocketAddr::new(Ipv4Addr::new(10, 123, 62, 1 + 1).into(), PORT),
    );
    let p2p = blast(a.clone(), SocketAddr::new(b_ip.into(), PORT));
    let hostport = blast(None, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 18600));
    let vip = blast(a, SocketAddr::new(svc[0].cluster_ip.into(), 80));
    println!(
        "TCP throughput, {} MiB per path, MTU {}:",
        BYTES >> 20,
        net.mtu()
    );
    println!("  bare veth (baseline)   {}", gb(bare));
    println!(
        "  pod -> pod (bridge)    {}  ({:+.1}%)",
        gb(p2p),
        (p2p / bare - 1.0) * 100.0
    );
    println!(
        "  127.0.0.1 -> hostPort  {}  ({:+.1}%)",
        gb(hostport),
        (hostport / bare - 1.0) * 100.0
    );
    println!(
        "  pod -> Service VIP     {}  ({:+.1}%)",
        gb(vip),
        (vip / bare - 1.0) * 100.0
    );
    let _ = Path::new("/");
    net.teardown_instance().await.unwrap();
}
