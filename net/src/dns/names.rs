//! The names berth answers for: Services (ClusterIP, or the ready endpoints
//! of a headless Service), per-pod names of headless Services
//! (`web-0.nginx.default.svc.cluster.local`, from `spec.hostname` and
//! `spec.subdomain`; other endpoints as `10-44-0-5.nginx...`), and SRV
//! records for named ports (`_http._tcp.web.default.svc.cluster.local`).

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// One Service as DNS sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceNames {
    pub namespace: String,
    pub name: String,
    /// The ClusterIP, or the ready endpoints of a headless Service.
    pub ips: Vec<Ipv4Addr>,
    pub headless: bool,
    /// Named ports: (name, "tcp"/"udp", port).
    pub ports: Vec<(String, &'static str, u16)>,
    /// Headless: (hostname, address) of ready endpoints with a hostname.
    pub hosts: Vec<(String, Ipv4Addr)>,
}

/// One SRV answer: port and target name, with the target's addresses (sent
/// as additional records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub port: u16,
    pub target: String,
    pub a: Vec<Ipv4Addr>,
}

/// What a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A name of ours: its addresses (for A queries) and SRV records (for
    /// SRV queries). Either may be empty (then the other type has no data).
    Found { a: Vec<Ipv4Addr>, srv: Vec<Srv> },
    /// Inside the cluster domain but unknown.
    NxDomain,
    /// Not ours: ask the host's resolvers.
    Forward,
}

impl Lookup {
    /// An A answer only (tests, ClusterIP Services).
    pub fn a(ips: &[Ipv4Addr]) -> Self {
        Lookup::Found {
            a: ips.to_vec(),
            srv: Vec::new(),
        }
    }
}

/// The Service names and the pods' namespaces (by pod IP).
#[derive(Debug, Default)]
pub struct Names {
    pub domain: String,
    services: HashMap<(String, String), ServiceNames>,
    pods: HashMap<Ipv4Addr, String>,
}

/// `10-44-0-5`: the DNS label of an endpoint without a hostname.
fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

impl Names {
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.trim_matches('.').to_ascii_lowercase(),
            ..Self::default()
        }
    }

    /// ClusterIP Services by (namespace, name, address).
    #[cfg(test)]
    pub fn set_services(&mut self, s: impl IntoIterator<Item = (String, String, Ipv4Addr)>) {
        self.set_service_names(s.into_iter().map(|(namespace, name, ip)| ServiceNames {
            namespace,
            name,
            ips: vec![ip],
            ..Default::default()
        }));
    }

    pub fn set_service_names(&mut self, s: impl IntoIterator<Item = ServiceNames>) {
        self.services = s
            .into_iter()
            .map(|s| ((s.namespace.clone(), s.name.clone()), s))
            .collect();
    }

    pub fn set_pods(&mut self, p: impl IntoIterator<Item = (Ipv4Addr, String)>) {
        self.pods = p.into_iter().collect();
    }

    fn svc(&self, ns: &str, name: &str) -> Option<&ServiceNames> {
        self.services.get(&(ns.to_string(), name.to_string()))
    }

    fn fqdn(&self, labels: &[&str]) -> String {
        format!("{}.svc.{}", labels.join("."), self.domain)
    }

    /// Resolve labels below `.svc.<domain>`: `svc.ns`, `host.svc.ns`, `_port._proto.svc.ns`.
    fn below_svc(&self, labels: &[&str]) -> Option<Lookup> {
        match labels {
            [name, ns] => {
                let s = self.svc(ns, name)?;
                Some(Lookup::a(&s.ips))
            }
            [host, name, ns] => {
                let s = self.svc(ns, name).filter(|s| s.headless)?;
                let ips: Vec<Ipv4Addr> = s
                    .hosts
                    .iter()
                    .filter(|(h, _)| h == host)
                    .map(|(_, ip)| *ip)
                    .chain(s.ips.iter().copied().filter(|ip| dashed(*ip) == *host))
                    .collect();
                (!ips.is_empty()).then(|| Lookup::a(&ips))
            }
            [port, proto, name, ns] => {
                let (port, proto) = (port.strip_prefix('_')?, proto.strip_prefix('_')?);
                let s = self.svc(ns, name)?;
                let &(_, _, number) = s.ports.iter().find(|(n, p, _)| n == port && *p == proto)?;
                let srv = if s.headless {
                    s.ips
                        .iter()
                        .map(|ip| {
                            let host = s
                                .hosts
                                .iter()
                                .find(|(_, h)| h == ip)
                                .map_or_else(|| dashed(*ip), |(h, _)| h.clone());
                            Srv {
                                port: number,
                                target: self.fqdn(&[&host, name, ns]),
                                a: vec![*ip],
                            }
                        })
                        .collect()
                } else {
                    vec![Srv {
                        port: number,
                        target: self.fqdn(&[name, ns]),
                        a: s.ips.clone(),
                    }]
                };
                Some(Lookup::Found { a: Vec::new(), srv })
            }
            _ => None,
        }
    }

    /// Resolve `qname` for a client at `client` (pod IP, for the namespace of short names).
    pub fn lookup(&self, qname: &str, client: Option<Ipv4Addr>) -> Lookup {
        let q = qname.trim_end_matches('.').to_ascii_lowercase();
        let client_ns = client
            .and_then(|c| self.pods.get(&c))
            .map(String::as_str)
            .unwrap_or("default");
        let svc_suffix = format!(".svc.{}", self.domain);
        if let Some(rest) = q.strip_suffix(&svc_suffix) {
            let labels: Vec<&str> = rest.split('.').collect();
            return self.below_svc(&labels).unwrap_or(Lookup::NxDomain);
        }
        if q == self.domain || q.ends_with(&format!(".{}", self.domain)) {
            return Lookup::NxDomain;
        }
        if let Some(rest) = q.strip_suffix(".svc") {
            let labels: Vec<&str> = rest.split('.').collect();
            return self.below_svc(&labels).unwrap_or(Lookup::NxDomain);
        }
        if !q.contains('.') {
            return self
                .svc(client_ns, &q)
                .map_or(Lookup::Forward, |s| Lookup::a(&s.ips));
        }
        match q.split('.').collect::<Vec<_>>().as_slice() {
            [name, ns] => self
                .svc(ns, name)
                .map_or(Lookup::Forward, |s| Lookup::a(&s.ips)),
            _ => Lookup::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headless() -> Names {
        let mut n = Names::new("cluster.local");
        n.set_service_names([
            ServiceNames {
                namespace: "default".into(),
                name: "nginx".into(),
                ips: vec![Ipv4Addr::new(10, 44, 0, 5), Ipv4Addr::new(10, 44, 0, 6)],
                headless: true,
                ports: vec![("web".into(), "tcp", 80)],
                hosts: vec![("web-0".into(), Ipv4Addr::new(10, 44, 0, 5))],
            },
            ServiceNames {
                namespace: "default".into(),
                name: "api".into(),
                ips: vec![Ipv4Addr::new(10, 45, 0, 1)],
                headless: false,
                ports: vec![("http".into(), "tcp", 8080)],
                hosts: vec![],
            },
        ]);
        n
    }

    #[test]
    fn headless_names_answer_ready_endpoints_and_hostnames() {
        let n = headless();
        let both = Lookup::a(&[Ipv4Addr::new(10, 44, 0, 5), Ipv4Addr::new(10, 44, 0, 6)]);
        assert_eq!(n.lookup("nginx.default.svc.cluster.local", None), both);
        assert_eq!(n.lookup("nginx", None), both);
        let web0 = Lookup::a(&[Ipv4Addr::new(10, 44, 0, 5)]);
        assert_eq!(
            n.lookup("web-0.nginx.default.svc.cluster.local.", None),
            web0
        );
        assert_eq!(n.lookup("web-0.nginx.default.svc", None), web0);
        assert_eq!(
            n.lookup("10-44-0-6.nginx.default.svc.cluster.local", None),
            Lookup::a(&[Ipv4Addr::new(10, 44, 0, 6)])
        );
        assert_eq!(
            n.lookup("web-9.nginx.default.svc.cluster.local", None),
            Lookup::NxDomain
        );
        // per-pod names exist only for headless Services
        assert_eq!(
            n.lookup("web-0.api.default.svc.cluster.local", None),
            Lookup::NxDomain
        );
    }

    #[test]
    fn srv_records_for_named_ports() {
        let n = headless();
        let Lookup::Found { a, srv } = n.lookup("_web._tcp.nginx.default.svc.cluster.local", None)
        else {
            panic!("not found")
        };
        assert!(a.is_empty());
        let targets: Vec<(&str, u16)> = srv.iter().map(|s| (s.target.as_str(), s.port)).collect();
        assert_eq!(
            targets,
            [
                ("web-0.nginx.default.svc.cluster.local", 80),
                ("10-44-0-6.nginx.default.svc.cluster.local", 80)
            ]
        );
        let Lookup::Found { srv, .. } = n.lookup("_http._tcp.api.default.svc.cluster.local", None)
        else {
            panic!("not found")
        };
        assert_eq!(srv[0].target, "api.default.svc.cluster.local");
        assert_eq!(srv[0].a, [Ipv4Addr::new(10, 45, 0, 1)]);
        assert_eq!(
            n.lookup("_http._udp.api.default.svc.cluster.local", None),
            Lookup::NxDomain
        );
    }
}
