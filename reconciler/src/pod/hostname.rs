//! The pod's hostname and its own `/etc/hosts` line, as kubelet makes them:
//! `spec.hostnameOverride`, else `spec.hostname`, else the pod name (cut to
//! 63 bytes), with
//! `spec.subdomain` the pod's domain `<subdomain>.<namespace>.svc.<cluster
//! domain>` and the hosts line `<ip>\t<hostname>.<domain>\t<hostname>`;
//! `setHostnameAsFQDN` puts the whole name in the UTS namespace (at most 64
//! bytes, the kernel's limit, or the pod cannot start).

use berth_spec::k8s_openapi::api::core::v1::PodSpec;

/// Longest hostname the kernel takes (`setHostnameAsFQDN`).
const KERNEL_HOSTNAME_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHost {
    /// What the UTS namespace and `/etc/hostname` hold.
    pub uts: String,
    /// The short hostname.
    pub short: String,
    /// `<subdomain>.<namespace>.svc.<domain>` when `spec.subdomain` is set.
    pub domain: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "hostname {fqdn:?} (setHostnameAsFQDN) is {len} characters long, more than the kernel's 64"
)]
pub struct FqdnTooLong {
    pub fqdn: String,
    pub len: usize,
}

/// The cluster domain of a pod's DNS search list (its last entry, as the
/// network makes it: `<ns>.svc.<d>`, `svc.<d>`, `<d>`), else `cluster.local`.
pub fn cluster_domain(dns_search: &[String]) -> &str {
    dns_search
        .iter()
        .find_map(|s| s.strip_prefix("svc."))
        .unwrap_or("cluster.local")
}

pub fn pod_host(
    name: &str,
    namespace: &str,
    spec: &PodSpec,
    cluster_domain: &str,
) -> Result<PodHost, FqdnTooLong> {
    // hostnameOverride, else hostname, else the pod's name
    let short = [&spec.hostname_override, &spec.hostname]
        .into_iter()
        .find_map(|h| h.as_deref().filter(|h| !h.is_empty()))
        .unwrap_or(name);
    let short = berth_spec::validate::names::pod_hostname(short).to_string();
    let domain = spec
        .subdomain
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}.{namespace}.svc.{cluster_domain}"));
    let uts = match &domain {
        Some(d) if spec.set_hostname_as_fqdn == Some(true) => {
            let fqdn = format!("{short}.{d}");
            if fqdn.len() > KERNEL_HOSTNAME_MAX {
                return Err(FqdnTooLong {
                    len: fqdn.len(),
                    fqdn,
                });
            }
            fqdn
        }
        _ => short.clone(),
    };
    Ok(PodHost { uts, short, domain })
}

/// The pod's own line in its hosts file.
pub fn hosts_line(ip: std::net::Ipv4Addr, h: &PodHost) -> String {
    match &h.domain {
        Some(d) => format!("{ip}\t{}.{d}\t{}\n", h.short, h.short),
        None => format!("{ip}\t{}\n", h.short),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hostname: Option<&str>, subdomain: Option<&str>, fqdn: Option<bool>) -> PodSpec {
        PodSpec {
            hostname: hostname.map(str::to_string),
            subdomain: subdomain.map(str::to_string),
            set_hostname_as_fqdn: fqdn,
            ..Default::default()
        }
    }

    #[test]
    fn hostname_and_subdomain_as_kubelet_writes_them() {
        let ip = "10.44.0.7".parse().unwrap();
        let h = pod_host("p", "default", &spec(None, None, None), "cluster.local").unwrap();
        assert_eq!(
            (h.uts.as_str(), hosts_line(ip, &h)),
            ("p", "10.44.0.7\tp\n".into())
        );
        let h = pod_host(
            "busybox-1",
            "shop",
            &spec(Some("busybox-1"), Some("default-subdomain"), None),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(h.uts, "busybox-1");
        assert_eq!(
            hosts_line(ip, &h),
            "10.44.0.7\tbusybox-1.default-subdomain.shop.svc.cluster.local\tbusybox-1\n"
        );
        // spec.hostname replaces the pod name; a subdomain alone keeps the name
        let h = pod_host("p", "default", &spec(Some("db"), None, None), "x").unwrap();
        assert_eq!((h.uts.as_str(), h.domain), ("db", None));
        let h = pod_host("p", "default", &spec(None, Some("s"), None), "x").unwrap();
        assert_eq!(h.domain.as_deref(), Some("s.default.svc.x"));
    }

    #[test]
    fn set_hostname_as_fqdn_puts_the_whole_name_in_uts_within_64_bytes() {
        let h = pod_host(
            "p",
            "ns",
            &spec(Some("a"), Some("s"), Some(true)),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(h.uts, "a.s.ns.svc.cluster.local");
        assert_eq!(h.short, "a");
        // without a subdomain there is no FQDN: the short name stays
        let h = pod_host(
            "p",
            "ns",
            &spec(Some("a"), None, Some(true)),
            "cluster.local",
        )
        .unwrap();
        assert_eq!(h.uts, "a");
        let long = "h".repeat(40);
        let e = pod_host(
            "p",
            "ns",
            &spec(Some(&long), Some("sub"), Some(true)),
            "cluster.local",
        )
        .unwrap_err();
        assert_eq!(e.len, 40 + ".sub.ns.svc.cluster.local".len());
    }

    #[test]
    fn the_cluster_domain_comes_from_the_search_list() {
        let s: Vec<String> = ["a.svc.corp.example", "svc.corp.example", "corp.example"]
            .map(String::from)
            .to_vec();
        assert_eq!(cluster_domain(&s), "corp.example");
        assert_eq!(cluster_domain(&[]), "cluster.local");
    }
}
