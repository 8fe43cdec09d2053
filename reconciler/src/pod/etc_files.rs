//! The pod's `/etc/hosts` additions (`hostAliases`) and `/etc/resolv.conf`
//! (`dnsPolicy`, `dnsConfig`), rendered as kubelet renders them. When the
//! pod asks for more than the runtime's defaults, the worker hands the
//! whole files to the runtime with the sandbox's configuration.

use std::net::Ipv4Addr;

use berth_spec::k8s_openapi::api::core::v1::{HostAlias, PodSpec};

use crate::traits::PodNetwork;

/// Lines appended to the pod's hosts file, or `None` without aliases.
pub fn host_aliases(aliases: &[HostAlias]) -> Option<String> {
    if aliases.is_empty() {
        return None;
    }
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names: Vec<&str> = a.hostnames.iter().flatten().map(String::as_str).collect();
        if names.is_empty() {
            continue;
        }
        s.push_str(&format!("{}\t{}\n", a.ip, names.join("\t")));
    }
    Some(s)
}

/// The pod's whole hosts file when it differs from the runtime's default
/// (`localhost` lines and `<ip>\t<hostname>`): the pod's own line with its
/// FQDN when it has a subdomain, then the `hostAliases` entries.
pub fn hosts(
    ip: Option<Ipv4Addr>,
    host: &super::hostname::PodHost,
    aliases: &[HostAlias],
) -> Option<String> {
    let aliases = host_aliases(aliases);
    if host.domain.is_none() && aliases.is_none() {
        return None;
    }
    let mut s = String::from(crate::traits::HOSTS_LOCALHOST);
    if let Some(ip) = ip {
        s.push_str(&super::hostname::hosts_line(ip, host));
    }
    s.push_str(aliases.as_deref().unwrap_or_default());
    Some(s)
}

/// A resolver configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolv {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// (name, value)
    pub options: Vec<(String, Option<String>)>,
}

impl Resolv {
    /// From a resolv.conf file's text.
    pub fn parse(text: &str) -> Self {
        let mut r = Resolv::default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match w.next() {
                Some("nameserver") => r.nameservers.extend(w.next().map(str::to_string)),
                Some("search") | Some("domain") => r.searches = w.map(str::to_string).collect(),
                Some("options") => r.options.extend(w.map(|o| match o.split_once(':') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (o.to_string(), None),
                })),
                _ => {}
            }
        }
        r
    }

    /// The cluster's resolver for a pod: berth's DNS, search domains, ndots:5.
    fn cluster(servers: &[Ipv4Addr], search: &[String]) -> Self {
        Resolv {
            nameservers: servers.iter().map(Ipv4Addr::to_string).collect(),
            searches: search.to_vec(),
            options: vec![("ndots".into(), Some("5".into()))],
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for n in &self.nameservers {
            s.push_str(&format!("nameserver {n}\n"));
        }
        if !self.searches.is_empty() {
            s.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        if !self.options.is_empty() {
            let o: Vec<String> = self
                .options
                .iter()
                .map(|(n, v)| match v {
                    Some(v) => format!("{n}:{v}"),
                    None => n.clone(),
                })
                .collect();
            s.push_str(&format!("options {}\n", o.join(" ")));
        }
        s
    }
}

/// The pod's resolv.conf when its spec changes it (`dnsPolicy: None`, or a
/// `dnsConfig` merged into the policy's resolver); `None`: keep the
/// runtime's. `host` is the host's resolv.conf (for a pod without
/// berth's DNS, e.g. hostNetwork with ClusterFirst, as kubelet falls back).
pub fn resolv_conf(spec: &PodSpec, net: &PodNetwork, host: &str) -> Option<String> {
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cfg = spec.dns_config.as_ref();
    if policy != "None" && cfg.is_none() {
        return None;
    }
    let mut r = match policy {
        "None" => Resolv::default(),
        "Default" => Resolv::parse(host),
        _ if net.dns_servers.is_empty() => Resolv::parse(host),
        _ => Resolv::cluster(&net.dns_servers, &net.dns_search),
    };
    if let Some(c) = cfg {
        for n in c.nameservers.iter().flatten() {
            if !r.nameservers.contains(n) {
                r.nameservers.push(n.clone());
            }
        }
        for s in c.searches.iter().flatten() {
            if !r.searches.contains(s) {
                r.searches.push(s.clone());
            }
        }
        for o in c.options.iter().flatten() {
            let Some(name) = o.name.clone() else { continue };
            r.options.retain(|(n, _)| *n != name);
            r.options.push((name, o.value.clone()));
        }
    }
    // the resolver's own limits, as kubelet trims them
    r.nameservers
        .truncate(berth_spec::validate::dns::MAX_NAMESERVERS);
    r.searches.truncate(berth_spec::validate::dns::MAX_SEARCHES);
    Some(r.render())
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::{PodDNSConfig, PodDNSConfigOption};

    use super::*;

    fn net() -> PodNetwork {
        PodNetwork {
            netns: None,
            ip: None,
            dns_servers: vec![Ipv4Addr::new(10, 45, 0, 10)],
            dns_search: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
        }
    }

    fn cfg() -> PodDNSConfig {
        PodDNSConfig {
            nameservers: Some(vec!["192.0.2.1".into()]),
            searches: Some(vec![
                "ns1.svc.cluster-domain.example".into(),
                "my.dns.search.suffix".into(),
            ]),
            options: Some(vec![
                PodDNSConfigOption {
                    name: Some("ndots".into()),
                    value: Some("2".into()),
                },
                PodDNSConfigOption {
                    name: Some("edns0".into()),
                    value: None,
                },
            ]),
        }
    }

    #[test]
    fn hosts_file_only_when_the_pod_asks_for_more() {
        use crate::pod::hostname::pod_host;
        let ip = Some(Ipv4Addr::new(10, 44, 0, 7));
        let plain = pod_host("web-0", "shop", &PodSpec::default(), "cluster.local").unwrap();
        assert_eq!(hosts(ip, &plain, &[]), None, "the runtime's default");
        let spec = PodSpec {
            hostname: Some("web-0".into()),
            subdomain: Some("nginx".into()),
            ..Default::default()
        };
        let sub = pod_host("web-0", "shop", &spec, "cluster.local").unwrap();
        assert_eq!(
            hosts(ip, &sub, &[]).unwrap(),
            format!(
                "{}10.44.0.7\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n",
                crate::traits::HOSTS_LOCALHOST
            )
        );
        let alias = HostAlias {
            ip: "192.0.2.9".into(),
            hostnames: Some(vec!["foo.local".into(), "bar.local".into()]),
        };
        assert_eq!(
            hosts(ip, &plain, &[alias]).unwrap(),
            format!(
                "{}10.44.0.7\tweb-0\n\n# Entries added by HostAliases.\n192.0.2.9\tfoo.local\tbar.local\n",
                crate::traits::HOSTS_LOCALHOST
            )
        );
    }

    // the kubernetes/website dns-config example
    #[test]
    fn policy_none_uses_only_the_config() {
        let spec = PodSpec {
            dns_policy: Some("None".into()),
            dns_config: Some(cfg()),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&spec, &net(), "nameserver 9.9.9.9\n").unwrap(),
            "nameserver 192.0.2.1\nsearch ns1.svc.cluster-domain.example my.dns.search.suffix\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn cluster_first_merges() {
        let spec = PodSpec {
            dns_config: Some(cfg()),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&spec, &net(), "").unwrap(),
            "nameserver 10.45.0.10\nnameserver 192.0.2.1\nsearch default.svc.cluster.local svc.cluster.local ns1.svc.cluster-domain.example my.dns.search.suffix\noptions ndots:2 edns0\n"
        );
        // nothing asked: the runtime's file stays
        assert_eq!(resolv_conf(&PodSpec::default(), &net(), ""), None);
    }

    #[test]
    fn default_policy_starts_from_the_host() {
        let spec = PodSpec {
            dns_policy: Some("Default".into()),
            dns_config: Some(PodDNSConfig {
                searches: Some(vec!["lab".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(
                &spec,
                &net(),
                "nameserver 1.1.1.1\nsearch home\noptions rotate\n"
            )
            .unwrap(),
            "nameserver 1.1.1.1\nsearch home lab\noptions rotate\n"
        );
    }

    #[test]
    fn aliases_render_like_kubelet() {
        let a = vec![
            HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: Some(vec!["foo.local".into(), "bar.local".into()]),
            },
            HostAlias {
                ip: "10.1.2.3".into(),
                hostnames: Some(vec!["foo.remote".into()]),
            },
        ];
        assert_eq!(
            host_aliases(&a).unwrap(),
            "\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
        );
        assert_eq!(host_aliases(&[]), None);
    }
}
