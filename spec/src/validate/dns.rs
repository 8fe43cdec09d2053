//! `dnsPolicy`, `dnsConfig` and `hostAliases` of a pod, with kube-apiserver's
//! limits (3 nameservers, 32 search domains of at most 253 characters).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::PodSpec;

use super::Out;

pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCHES: usize = 32;
const MAX_SEARCH_LEN: usize = 253;
const MAX_ALIASES: usize = 1000;

pub(crate) fn pod_spec(o: &mut Out, base: &str, s: &PodSpec) {
    match s.dns_policy.as_deref() {
        None | Some("ClusterFirst") | Some("ClusterFirstWithHostNet") | Some("Default") => {}
        Some("None") => {
            if s.dns_config
                .as_ref()
                .and_then(|c| c.nameservers.as_ref())
                .is_none_or(Vec::is_empty)
            {
                o.err(
                    format!("{base}.dnsPolicy"),
                    "dnsPolicy None needs at least one nameserver in dnsConfig",
                );
            }
        }
        Some(x) => o.err(
            format!("{base}.dnsPolicy"),
            format!("{x:?} is not valid (ClusterFirst, ClusterFirstWithHostNet, Default or None)"),
        ),
    }
    if let Some(c) = &s.dns_config {
        let p = format!("{base}.dnsConfig");
        let ns = c.nameservers.as_deref().unwrap_or_default();
        if ns.len() > MAX_NAMESERVERS {
            o.err(
                format!("{p}.nameservers"),
                format!("at most {MAX_NAMESERVERS} nameservers, got {}", ns.len()),
            );
        }
        for (i, n) in ns.iter().enumerate() {
            if n.parse::<IpAddr>().is_err() {
                o.err(
                    format!("{p}.nameservers[{i}]"),
                    format!("{n:?} is not an IP address"),
                );
            }
        }
        let se = c.searches.as_deref().unwrap_or_default();
        if se.len() > MAX_SEARCHES {
            o.err(
                format!("{p}.searches"),
                format!("at most {MAX_SEARCHES} search domains, got {}", se.len()),
            );
        }
        for (i, d) in se.iter().enumerate() {
            let ok = !d.is_empty()
                && d.len() <= MAX_SEARCH_LEN
                && d.split('.')
                    .filter(|l| !l.is_empty())
                    .all(super::is_dns1123_label);
            if !ok {
                o.err(
                    format!("{p}.searches[{i}]"),
                    format!("{d:?} is not a valid DNS search domain"),
                );
            }
        }
        for (i, opt) in c.options.iter().flatten().enumerate() {
            let name = opt.name.as_deref().unwrap_or("");
            if name.is_empty() || name.chars().any(|ch| ch.is_whitespace() || ch == ':') {
                o.err(
                    format!("{p}.options[{i}].name"),
                    format!("{name:?} is not a valid resolver option name"),
                );
            }
            if opt
                .value
                .as_deref()
                .is_some_and(|v| v.chars().any(char::is_whitespace))
            {
                o.err(
                    format!("{p}.options[{i}].value"),
                    "may not contain whitespace",
                );
            }
        }
    }
    let aliases = s.host_aliases.as_deref().unwrap_or_default();
    if aliases.len() > MAX_ALIASES {
        o.err(
            format!("{base}.hostAliases"),
            format!("at most {MAX_ALIASES} entries"),
        );
    }
    for (i, a) in aliases.iter().enumerate() {
        let p = format!("{base}.hostAliases[{i}]");
        if a.ip.parse::<IpAddr>().is_err() {
            o.err(
                format!("{p}.ip"),
                format!("{:?} is not an IP address", a.ip),
            );
        }
        for (j, h) in a.hostnames.iter().flatten().enumerate() {
            let ok = !h.is_empty()
                && h.len() <= MAX_SEARCH_LEN
                && h.split('.').all(super::is_dns1123_label);
            if !ok {
                o.err(
                    format!("{p}.hostnames[{j}]"),
                    format!("{h:?} is not a valid host name"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig};

    use super::*;

    fn paths(s: &PodSpec) -> Vec<String> {
        let mut o = Out(Vec::new());
        pod_spec(&mut o, "spec", s);
        o.0.into_iter().filter_map(|p| p.path).collect()
    }

    #[test]
    fn none_needs_a_nameserver() {
        let mut s = PodSpec {
            dns_policy: Some("None".into()),
            ..Default::default()
        };
        assert_eq!(paths(&s), ["spec.dnsPolicy"]);
        s.dns_config = Some(PodDNSConfig {
            nameservers: Some(vec!["192.0.2.1".into()]),
            searches: Some(vec!["ns1.svc.cluster-domain.example".into()]),
            ..Default::default()
        });
        assert!(paths(&s).is_empty());
    }

    #[test]
    fn bad_values_are_named() {
        let s = PodSpec {
            dns_config: Some(PodDNSConfig {
                nameservers: Some(vec!["x".into()]),
                searches: Some(vec!["a..b/c".into()]),
                ..Default::default()
            }),
            host_aliases: Some(vec![HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: Some(vec!["foo.local".into(), "bad name".into()]),
            }]),
            ..Default::default()
        };
        assert_eq!(
            paths(&s),
            [
                "spec.dnsConfig.nameservers[0]",
                "spec.dnsConfig.searches[0]",
                "spec.hostAliases[0].hostnames[1]"
            ]
        );
    }
}
