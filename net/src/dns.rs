//! Embedded DNS responder on the bridge address (UDP and TCP port 53).
//!
//! Answers A queries for Services:
//! `SERVICE` (in the asking pod's namespace, known from its source address),
//! `SERVICE.NAMESPACE`, `SERVICE.NAMESPACE.svc` and
//! `SERVICE.NAMESPACE.svc.<cluster domain>`; for headless Services the ready
//! endpoints and their per-pod names, and SRV queries for named ports
//! ([`names`]). Other record types for those
//! names get an empty NOERROR answer; unknown names inside the cluster domain
//! get an authoritative NXDOMAIN. Everything else is relayed unchanged to the
//! host's resolvers (from `/etc/resolv.conf`, or configured): the responder
//! runs in the host namespace, so even a loopback resolver such as
//! 127.0.0.53 is reachable on the pod's behalf.
//!
//! Packet encoding uses `hickory-proto` only: berth's zone is a map that
//! changes with every Service sync and forwarding is a byte relay, so
//! `hickory-server`'s authority/catalog machinery would add weight without
//! doing any of the work.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

const TTL: u32 = 5;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("bind DNS responder on udp {addr}")]
    BindUdp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("bind DNS responder on tcp {addr}")]
    BindTcp {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("read resolver configuration {path}")]
    ResolvConf {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

mod names;

pub use names::{Lookup, Names, ServiceNames};

/// Shared between the responder tasks and `HostNetwork`.
#[derive(Debug)]
pub struct DnsState {
    pub names: RwLock<Names>,
    pub upstreams: Vec<SocketAddr>,
}

/// Nameservers of a resolv.conf file, port 53.
pub fn upstreams_from(path: &Path) -> Result<Vec<SocketAddr>, DnsError> {
    let text = std::fs::read_to_string(path).map_err(|source| DnsError::ResolvConf {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect())
}

/// The running responder; dropping it stops it.
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub async fn start(addr: SocketAddr, state: Arc<DnsState>) -> Result<DnsServer, DnsError> {
    let udp = Arc::new(
        UdpSocket::bind(addr)
            .await
            .map_err(|source| DnsError::BindUdp { addr, source })?,
    );
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| DnsError::BindTcp { addr, source })?;
    let st = state.clone();
    let u = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            let (udp, st, req) = (udp.clone(), st.clone(), buf[..n].to_vec());
            tokio::spawn(async move {
                if let Some(resp) = answer(&st, &req, from.ip(), false).await {
                    let _ = udp.send_to(&resp, from).await;
                }
            });
        }
    });
    let t = tokio::spawn(async move {
        loop {
            let Ok((conn, from)) = tcp.accept().await else {
                continue;
            };
            let st = state.clone();
            tokio::spawn(async move {
                let _ = serve_tcp(conn, from.ip(), &st).await;
            });
        }
    });
    Ok(DnsServer { tasks: vec![u, t] })
}

async fn serve_tcp(mut conn: TcpStream, from: IpAddr, st: &DnsState) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(Duration::from_secs(10), conn.read_u16()).await {
            Ok(Ok(l)) => l as usize,
            _ => return Ok(()),
        };
        let mut req = vec![0u8; len];
        conn.read_exact(&mut req).await?;
        if let Some(resp) = answer(st, &req, from, true).await {
            conn.write_u16(resp.len() as u16).await?;
            conn.write_all(&resp).await?;
        }
    }
}

/// The response bytes for one request (None: unparseable, dropped).
async fn answer(st: &DnsState, req: &[u8], from: IpAddr, tcp: bool) -> Option<Vec<u8>> {
    let msg = Message::from_vec(req).ok()?;
    if msg.metadata.message_type != MessageType::Query {
        return None;
    }
    let client = match from {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    };
    let lookup = match msg.queries.as_slice() {
        [q] => st
            .names
            .read()
            .expect("dns names lock")
            .lookup(&q.name().to_ascii(), client),
        _ => Lookup::Forward,
    };
    let mut resp = Message::response(msg.metadata.id, msg.metadata.op_code);
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = msg.queries.clone();
    match lookup {
        Lookup::Found { a, srv } => {
            resp.metadata.authoritative = true;
            let q = &msg.queries[0];
            match q.query_type() {
                RecordType::A => {
                    for ip in a {
                        resp.answers.push(Record::from_rdata(
                            q.name().clone(),
                            TTL,
                            RData::A(A(ip)),
                        ));
                    }
                }
                RecordType::SRV => {
                    for s in srv {
                        let Ok(target) = Name::from_ascii(format!("{}.", s.target)) else {
                            continue;
                        };
                        resp.answers.push(Record::from_rdata(
                            q.name().clone(),
                            TTL,
                            RData::SRV(SRV::new(0, 100, s.port, target.clone())),
                        ));
                        for ip in s.a {
                            resp.additionals.push(Record::from_rdata(
                                target.clone(),
                                TTL,
                                RData::A(A(ip)),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        Lookup::NxDomain => {
            resp.metadata.authoritative = true;
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        Lookup::Forward => match forward(&st.upstreams, req, tcp).await {
            Some(bytes) => return Some(bytes),
            None => resp.metadata.response_code = ResponseCode::ServFail,
        },
    }
    resp.to_vec().ok()
}

/// Relay the raw query to each upstream in turn until one answers.
async fn forward(upstreams: &[SocketAddr], req: &[u8], tcp: bool) -> Option<Vec<u8>> {
    for up in upstreams {
        let r = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
            if tcp {
                let mut s = TcpStream::connect(up).await.ok()?;
                s.write_u16(req.len() as u16).await.ok()?;
                s.write_all(req).await.ok()?;
                let n = s.read_u16().await.ok()? as usize;
                let mut b = vec![0u8; n];
                s.read_exact(&mut b).await.ok()?;
                Some(b)
            } else {
                let bind: SocketAddr = if up.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
                    .parse()
                    .ok()?;
                let s = UdpSocket::bind(bind).await.ok()?;
                s.send_to(req, up).await.ok()?;
                let mut b = vec![0u8; 4096];
                loop {
                    let (n, from) = s.recv_from(&mut b).await.ok()?;
                    if from == *up && n >= 2 && b[..2] == req[..2] {
                        b.truncate(n);
                        return Some(b);
                    }
                }
            }
        })
        .await;
        if let Ok(Some(b)) = r {
            return Some(b);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn names() -> Names {
        let mut n = Names::new("cluster.local");
        n.set_services([
            ("default".into(), "web".into(), Ipv4Addr::new(10, 45, 0, 1)),
            ("shop".into(), "db".into(), Ipv4Addr::new(10, 45, 0, 2)),
        ]);
        n.set_pods([(Ipv4Addr::new(10, 44, 0, 9), "shop".to_string())]);
        n
    }

    #[test]
    fn matches_all_service_name_forms() {
        let n = names();
        let web = Lookup::a(&[Ipv4Addr::new(10, 45, 0, 1)]);
        let db = Lookup::a(&[Ipv4Addr::new(10, 45, 0, 2)]);
        for q in [
            "web.default",
            "web.default.svc",
            "web.default.svc.cluster.local",
            "WEB.default.svc.cluster.local.",
        ] {
            assert_eq!(n.lookup(q, None), web, "{q}");
        }
        // short names resolve in the asking pod's namespace
        assert_eq!(n.lookup("db", Some(Ipv4Addr::new(10, 44, 0, 9))), db);
        assert_eq!(n.lookup("web", None), web);
        assert_eq!(n.lookup("db", None), Lookup::Forward);
        assert_eq!(n.lookup("db.shop.svc.cluster.local", None), db);
    }

    #[test]
    fn cluster_domain_is_authoritative_and_the_rest_forwards() {
        let n = names();
        assert_eq!(
            n.lookup("nope.default.svc.cluster.local", None),
            Lookup::NxDomain
        );
        assert_eq!(n.lookup("a.b.c.svc.cluster.local", None), Lookup::NxDomain);
        assert_eq!(n.lookup("x.cluster.local", None), Lookup::NxDomain);
        assert_eq!(n.lookup("nope.default.svc", None), Lookup::NxDomain);
        assert_eq!(n.lookup("example.com", None), Lookup::Forward);
        assert_eq!(n.lookup("www.example.com.", None), Lookup::Forward);
        assert_eq!(n.lookup("localhost", None), Lookup::Forward);
    }

    #[test]
    fn reads_resolv_conf() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("resolv.conf");
        std::fs::write(
            &p,
            "# x\nnameserver 10.0.0.53\nsearch a b\nnameserver ::1\noptions ndots:5\n",
        )
        .unwrap();
        let u = upstreams_from(&p).unwrap();
        assert_eq!(
            u,
            vec!["10.0.0.53:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
    }

    #[tokio::test]
    async fn answers_a_nxdomain_and_nodata_over_the_wire_format() {
        let st = DnsState {
            names: RwLock::new(names()),
            upstreams: vec![],
        };
        let ask = |name: &str, ty: RecordType| {
            let mut m = Message::query();
            m.add_query(hickory_proto::op::Query::query(name.parse().unwrap(), ty));
            m.to_vec().unwrap()
        };
        let r = answer(
            &st,
            &ask("web.default.svc.cluster.local.", RecordType::A),
            "10.44.0.3".parse().unwrap(),
            false,
        )
        .await
        .unwrap();
        let r = Message::from_vec(&r).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(10, 45, 0, 1))));
        let r = answer(
            &st,
            &ask("web.default.svc.cluster.local.", RecordType::AAAA),
            "10.44.0.3".parse().unwrap(),
            false,
        )
        .await
        .unwrap();
        let r = Message::from_vec(&r).unwrap();
        assert!(r.answers.is_empty());
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        let r = answer(
            &st,
            &ask("x.default.svc.cluster.local.", RecordType::A),
            "10.44.0.3".parse().unwrap(),
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            Message::from_vec(&r).unwrap().metadata.response_code,
            ResponseCode::NXDomain
        );
        // no upstream configured: SERVFAIL, not a hang
        let r = answer(
            &st,
            &ask("example.com.", RecordType::A),
            "10.44.0.3".parse().unwrap(),
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            Message::from_vec(&r).unwrap().metadata.response_code,
            ResponseCode::ServFail
        );
    }
}
