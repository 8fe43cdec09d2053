//! Image references, normalised the way Docker and containerd do it.
//!
//! ```
//! use berth_image::reference::Reference;
//! let r: Reference = "busybox".parse().unwrap();
//! assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
//! let r: Reference = "localhost:5000/a/b:v1".parse().unwrap();
//! assert_eq!((r.registry(), r.repository(), r.tag()), ("localhost:5000", "a/b", Some("v1")));
//! ```
//!
//! Grammar (from `distribution/reference`): `[domain/]path[:tag][@digest]`.
//! The first component is a domain when it contains `.` or `:` or is
//! `localhost`; otherwise the image lives on `docker.io`, and a single path
//! component gets the `library/` prefix. No tag and no digest means `:latest`.

use std::fmt;
use std::str::FromStr;

use berth_contract::PullPolicy;

/// Registry name Docker Hub images are filed under.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    /// `sha256:<64 hex>`
    digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err("empty reference"));
        }
        if s.len() > 4096 {
            return Err(err("reference too long"));
        }
        let (rest, digest) = match s.rsplit_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(|e| err(&e))?;
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                validate_tag(t).map_err(|e| err(&e))?;
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(err("empty repository name"));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, p))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_domain(first).map_err(|e| err(&e))?;
                (first.to_string(), p.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if path.len() > 255 {
            return Err(err("repository name longer than 255 characters"));
        }
        for comp in path.split('/') {
            validate_path_component(comp).map_err(|e| err(&e))?;
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
    /// The same repository on another registry host (for mirrors).
    pub fn with_registry(&self, registry: &str) -> Reference {
        Reference {
            registry: registry.to_string(),
            ..self.clone()
        }
    }
    /// Kubernetes' default pull policy: `Always` for `:latest` (or no tag), else `IfNotPresent`.
    pub fn default_pull_policy(&self) -> PullPolicy {
        if self.digest.is_none() && self.tag.as_deref() == Some("latest") {
            PullPolicy::Always
        } else {
            PullPolicy::IfNotPresent
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Is `s` a valid tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`)?
pub fn is_valid_tag(s: &str) -> bool {
    validate_tag(s).is_ok()
}

fn validate_tag(t: &str) -> Result<(), String> {
    let ok_first = t
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_first
        || t.len() > 128
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!("invalid tag {t:?}"));
    }
    Ok(())
}

fn validate_digest(d: &str) -> Result<(), String> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err(format!("invalid digest {d:?}: expected algorithm:hex"));
    };
    if alg != "sha256" {
        return Err(format!(
            "unsupported digest algorithm {alg:?} (only sha256)"
        ));
    }
    if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!(
            "invalid sha256 digest {d:?}: expected 64 lowercase hex digits"
        ));
    }
    Ok(())
}

fn validate_domain(d: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // [ipv6]:port
        let Some((h, p)) = rest.split_once(']') else {
            return Err(format!("invalid registry host {d:?}"));
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 registry host {d:?}"));
        }
        (None, p.strip_prefix(':'))
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().is_err()
    {
        return Err(format!("invalid port in registry {d:?}"));
    }
    if let Some(h) = host {
        let ok = !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(format!("invalid registry host {d:?}"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn validate_path_component(c: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "invalid repository path component {c:?} (lowercase letters, digits and separators . _ __ - only)"
        ))
    };
    if c.is_empty() {
        return Err("empty repository path component".to_string());
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return bad();
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // a separator run
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|x| x == '-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            n("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(n("user/app:v2"), "docker.io/user/app:v2");
        assert_eq!(n("host:5000/a/b:tag"), "host:5000/a/b:tag");
        assert_eq!(n("localhost/app"), "localhost/app:latest");
        assert_eq!(n("berth.local/busybox:1.36"), "berth.local/busybox:1.36");
        assert_eq!(n("[::1]:5000/x:y"), "[::1]:5000/x:y");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            n(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            n(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        let r = Reference::parse("host:5000/a/b:tag").unwrap();
        assert_eq!(r.registry(), "host:5000");
        assert_eq!(r.repository(), "a/b");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.name(), "host:5000/a/b");
        // a port-looking thing without a slash is a tag on a Hub image
        assert_eq!(n("busybox:5000"), "docker.io/library/busybox:5000");
        assert_eq!(
            n("a__b/c-d/e.f---g:T_1.x-y"),
            "docker.io/a__b/c-d/e.f---g:T_1.x-y"
        );
    }

    #[test]
    fn rejects_invalid_with_clear_errors() {
        for (bad, why) in [
            ("", "empty"),
            ("Busybox", "invalid repository path component"),
            ("busybox:", "invalid tag"),
            ("busybox:-x", "invalid tag"),
            ("busybox@sha256:abc", "64 lowercase hex"),
            ("busybox@md5:abc", "unsupported digest algorithm"),
            ("a//b", "empty repository path component"),
            ("a/b_", "invalid repository path component"),
            ("a/b..c", "invalid repository path component"),
            ("host:port/x", "invalid port"),
            ("ho_st.io/x", "invalid registry host"),
            ("x y", "invalid repository path component"),
            ("/x", "empty repository path component"),
        ] {
            let e = Reference::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
            assert!(
                e.to_string().contains(&format!("{bad:?}")),
                "names the reference: {e}"
            );
        }
    }

    #[test]
    fn default_pull_policy_follows_kubernetes() {
        let p = |s: &str| Reference::parse(s).unwrap().default_pull_policy();
        assert_eq!(p("busybox"), PullPolicy::Always);
        assert_eq!(p("busybox:latest"), PullPolicy::Always);
        assert_eq!(p("busybox:1.36"), PullPolicy::IfNotPresent);
        assert_eq!(
            p(&format!("busybox@sha256:{}", "0".repeat(64))),
            PullPolicy::IfNotPresent
        );
    }
}
