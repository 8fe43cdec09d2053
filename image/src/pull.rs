//! Registry pulls over the OCI distribution API (`oci-client`).
//!
//! Flow for one reference: for each endpoint (the registry's mirrors first,
//! then the registry itself) fetch the manifest raw, hash it ourselves
//! (checked against the reference's digest when pinned), resolve a
//! multi-arch index to [`host_platform`], store index and manifest, then
//! stream the config and every missing layer blob into the content store
//! (each verified on commit). Blobs already present are not fetched again,
//! and one blob is fetched by one task at a time (keyed lock).
//!
//! Plain HTTP is used for loopback registries (`localhost`, `127.0.0.0/8`,
//! `::1`) and for those listed as insecure; everything else is HTTPS.
//! Credentials come from [`DockerAuth`]; oci-client does the Basic or
//! Bearer-token dance the registry asks for.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use crate::auth::DockerAuth;
use crate::content::{ContentError, ContentStore, Digest};
use crate::locks::KeyedLocks;
use crate::manifest::{self, AnyManifest, Descriptor, host_platform, select_platform};
use crate::reference::Reference;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("registry {endpoint}: {what} of {reference}")]
    Registry {
        endpoint: String,
        reference: String,
        what: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("registry {endpoint} sent manifest {actual} for {reference}, expected {expected}")]
    ManifestDigest {
        endpoint: String,
        reference: String,
        expected: String,
        actual: Digest,
    },
    #[error("no manifest for platform {platform} in {reference} (index has: {available})")]
    NoPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("manifest {digest} of {reference} is not a valid image manifest or index")]
    BadManifest {
        reference: String,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    #[error("image index {digest} of {reference} points at another index")]
    NestedIndex { reference: String, digest: String },
    #[error("invalid digest in manifest of {reference}")]
    BadDigest {
        reference: String,
        #[source]
        source: ContentError,
    },
    #[error(
        "cannot pull {reference} from {endpoint}: no usable CA certificates on this host, so no registry client (install the ca-certificates package, or set SSL_CERT_FILE)"
    )]
    NoTrustRoots {
        endpoint: String,
        reference: String,
        #[source]
        source: Arc<ClientError>,
    },
    #[error("storing content of {reference}")]
    Store {
        reference: String,
        #[source]
        source: ContentError,
    },
}

impl PullError {
    /// The registry could not be reached at all (connection refused, DNS,
    /// timeout, 5xx): the case where a local copy may stand in.
    pub fn is_unreachable(&self) -> bool {
        match self {
            PullError::Registry { source, .. } => match source.as_ref() {
                OciDistributionError::RequestError(e) => {
                    e.is_connect() || e.is_timeout() || e.is_request()
                }
                OciDistributionError::ServerError { code, .. } => *code >= 500,
                OciDistributionError::IoError(_) => true,
                _ => false,
            },
            // as good as unreachable: a local copy may stand in
            PullError::NoTrustRoots { .. } => true,
            _ => false,
        }
    }
}

/// What a pull left in the content store.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: Digest,
    /// `registry/repo@<top-level digest>` (the index digest for multi-arch images).
    pub repo_digest: String,
    pub extra_blobs: Vec<Digest>,
}

#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub insecure_registries: Vec<String>,
    pub mirrors: BTreeMap<String, Vec<String>>,
    pub auth: DockerAuth,
}

/// Counters exposed for tests and metrics.
#[derive(Debug, Default)]
pub struct PullCounters {
    pub manifests_fetched: AtomicU64,
    pub blobs_fetched: AtomicU64,
    pub bytes_fetched: AtomicU64,
}

pub struct Puller {
    /// The HTTPS and plain-HTTP clients, or why they cannot be made (no CA
    /// bundle on the host): then every registry pull fails with a clear
    /// error, and image archives still work.
    https: Result<Client, Arc<ClientError>>,
    http: Result<Client, Arc<ClientError>>,
    opts: RegistryOptions,
    pub counters: Arc<PullCounters>,
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if host_port.matches(':').count() > 1 {
        host_port // bare IPv6
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn config(protocol: ClientProtocol) -> ClientConfig {
    ClientConfig {
        protocol,
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..Default::default()
    }
}

/// Build a client, turning oci-client's panic into an error: its
/// `try_from` fills the remaining fields from `Client::default()`, which
/// calls `reqwest::Client::new()`, which panics when the TLS stack finds no
/// CA certificates on the host (even for a plain-HTTP client).
fn build(protocol: ClientProtocol) -> Result<Client, Arc<ClientError>> {
    match std::panic::catch_unwind(|| Client::try_from(config(protocol))) {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(Arc::new(ClientError(e.to_string()))),
        Err(p) => Err(Arc::new(ClientError(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the TLS stack panicked".into()),
        ))),
    }
}

/// Why a registry client could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

impl Puller {
    pub fn new(opts: RegistryOptions) -> Self {
        let https = build(ClientProtocol::Https);
        if let Err(e) = &https {
            tracing::warn!(error = %e, "no registry client (no CA certificates on this host?): registry pulls will fail; image archives still work");
        }
        Puller {
            https,
            http: build(ClientProtocol::Http),
            opts,
            counters: Arc::default(),
        }
    }

    /// Whether pulls over HTTPS can work (the host has CA certificates).
    pub fn https_available(&self) -> bool {
        self.https.is_ok()
    }

    /// Endpoints to try for a registry: mirrors first, then the registry.
    pub fn endpoints(&self, registry: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .opts
            .mirrors
            .get(registry)
            .map(|m| m.iter().map(|x| crate::auth::normalise_host(x)).collect())
            .unwrap_or_default();
        v.push(registry.to_string());
        v
    }

    /// Whether `endpoint` is spoken to over plain HTTP (loopback or listed insecure).
    fn plain_http(&self, endpoint: &str) -> bool {
        is_loopback(endpoint)
            || self
                .opts
                .insecure_registries
                .iter()
                .any(|r| crate::auth::normalise_host(r) == endpoint)
    }

    /// The client for `endpoint`, or the clear error when the host cannot
    /// make it (no CA certificates for HTTPS).
    fn client_for(&self, endpoint: &str, r: &Reference) -> Result<&Client, PullError> {
        let c = if self.plain_http(endpoint) {
            &self.http
        } else {
            &self.https
        };
        c.as_ref().map_err(|e| PullError::NoTrustRoots {
            endpoint: endpoint.to_string(),
            reference: r.to_string(),
            source: e.clone(),
        })
    }

    fn auth_for(&self, endpoint: &str) -> RegistryAuth {
        match self.opts.auth.for_registry(endpoint) {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Pull `r` into `store`, trying mirrors first.
    pub async fn pull(
        &self,
        r: &Reference,
        store: &ContentStore,
        locks: &KeyedLocks,
    ) -> Result<Pulled, PullError> {
        let endpoints = self.endpoints(r.registry());
        let mut last = None;
        for (i, ep) in endpoints.iter().enumerate() {
            match self.pull_from(ep, r, store, locks).await {
                Ok(p) => return Ok(p),
                Err(e) => {
                    if i + 1 < endpoints.len() {
                        tracing::warn!(reference = %r, mirror = %ep, err = %berth_contract::error_chain(&e), "mirror failed; trying next endpoint");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    fn oref(ep: &str, r: &Reference, digest: Option<&str>) -> oci_client::Reference {
        match (digest, r.tag()) {
            (Some(d), _) => oci_client::Reference::with_digest(
                ep.to_string(),
                r.repository().to_string(),
                d.to_string(),
            ),
            (None, Some(t)) => oci_client::Reference::with_tag(
                ep.to_string(),
                r.repository().to_string(),
                t.to_string(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                ep.to_string(),
                r.repository().to_string(),
                "latest".into(),
            ),
        }
    }

    async fn fetch_manifest(
        &self,
        ep: &str,
        r: &Reference,
        digest: Option<&str>,
        store: &ContentStore,
    ) -> Result<(Digest, Vec<u8>), PullError> {
        let oref = Self::oref(ep, r, digest);
        let (bytes, _) = self
            .client_for(ep, r)?
            .pull_manifest_raw(&oref, &self.auth_for(ep), manifest::ACCEPTED)
            .await
            .map_err(|source| PullError::Registry {
                endpoint: ep.to_string(),
                reference: r.to_string(),
                what: format!("manifest {}", digest.or(r.tag()).unwrap_or("latest")),
                source: Box::new(source),
            })?;
        self.counters
            .manifests_fetched
            .fetch_add(1, Ordering::Relaxed);
        let actual = Digest::of(&bytes);
        if let Some(expected) = digest
            && actual.to_string() != expected
        {
            return Err(PullError::ManifestDigest {
                endpoint: ep.to_string(),
                reference: r.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        store
            .put(&bytes, Some(&actual))
            .map_err(|source| PullError::Store {
                reference: r.to_string(),
                source,
            })?;
        Ok((actual, bytes.to_vec()))
    }

    async fn pull_from(
        &self,
        ep: &str,
        r: &Reference,
        store: &ContentStore,
        locks: &KeyedLocks,
    ) -> Result<Pulled, PullError> {
        let (top, data) = self.fetch_manifest(ep, r, r.digest(), store).await?;
        let bad = |digest: &Digest| {
            let digest = digest.clone();
            move |source| PullError::BadManifest {
                reference: r.to_string(),
                digest,
                source,
            }
        };
        let mut extra = Vec::new();
        let (manifest_digest, m) = match manifest::parse_any(&data).map_err(bad(&top))? {
            AnyManifest::Image(m) => (top.clone(), m),
            AnyManifest::Index(idx) => {
                let want = host_platform();
                let Some(d) = select_platform(&idx, &want) else {
                    return Err(PullError::NoPlatform {
                        reference: r.to_string(),
                        platform: format!(
                            "{}/{}{}",
                            want.os,
                            want.architecture,
                            want.variant
                                .as_deref()
                                .map(|v| format!("/{v}"))
                                .unwrap_or_default()
                        ),
                        available: idx
                            .manifests
                            .iter()
                            .filter_map(|d| {
                                d.platform
                                    .as_ref()
                                    .map(|p| format!("{}/{}", p.os, p.architecture))
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                };
                tracing::debug!(reference = %r, platform = ?want, manifest = %d.digest, "resolved multi-arch index");
                let (md, mdata) = self.fetch_manifest(ep, r, Some(&d.digest), store).await?;
                extra.push(top.clone());
                match manifest::parse_any(&mdata).map_err(bad(&md))? {
                    AnyManifest::Image(m) => (md, m),
                    AnyManifest::Index(_) => {
                        return Err(PullError::NestedIndex {
                            reference: r.to_string(),
                            digest: d.digest.clone(),
                        });
                    }
                }
            }
        };
        let mut blobs: Vec<Descriptor> = vec![m.config.clone()];
        blobs.extend(m.layers.iter().cloned());
        futures::stream::iter(
            blobs
                .into_iter()
                .map(|d| self.fetch_blob(ep, r, d, store, locks)),
        )
        .buffer_unordered(3)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(Pulled {
            manifest: manifest_digest,
            repo_digest: format!("{}@{}", r.name(), top),
            extra_blobs: extra,
        })
    }

    async fn fetch_blob(
        &self,
        ep: &str,
        r: &Reference,
        d: Descriptor,
        store: &ContentStore,
        locks: &KeyedLocks,
    ) -> Result<(), PullError> {
        let digest = Digest::parse(&d.digest).map_err(|source| PullError::BadDigest {
            reference: r.to_string(),
            source,
        })?;
        let _g = locks.lock(&format!("blob:{digest}")).await;
        if store.contains(&digest) {
            return Ok(());
        }
        let store_err = |source| PullError::Store {
            reference: r.to_string(),
            source,
        };
        let w = store.async_writer().await.map_err(store_err)?;
        let mut w = w;
        let oref = Self::oref(ep, r, r.digest());
        tracing::debug!(reference = %r, blob = %digest, size = d.size, "fetching blob");
        self.client_for(ep, r)?
            .pull_blob(&oref, d.digest.as_str(), &mut w)
            .await
            .map_err(|source| PullError::Registry {
                endpoint: ep.to_string(),
                reference: r.to_string(),
                what: format!("blob {digest}"),
                source: Box::new(source),
            })?;
        let size = (d.size > 0).then_some(d.size);
        w.commit(Some(&digest), size).await.map_err(store_err)?;
        self.counters.blobs_fetched.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_fetched
            .fetch_add(d.size, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "localhost.example:5000",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn mirrors_come_first_and_insecure_uses_http() {
        let p = Puller::new(RegistryOptions {
            insecure_registries: vec!["reg.lan:5000".into()],
            mirrors: [(
                "docker.io".to_string(),
                vec!["https://mirror.lan".to_string()],
            )]
            .into(),
            auth: DockerAuth::default(),
        });
        assert_eq!(p.endpoints("docker.io"), vec!["mirror.lan", "docker.io"]);
        assert_eq!(p.endpoints("quay.io"), vec!["quay.io"]);
        assert!(p.plain_http("reg.lan:5000"));
        assert!(p.plain_http("127.0.0.1:5000"));
        assert!(!p.plain_http("docker.io"));
        assert!(p.https_available(), "this host has CA certificates");
    }

    /// Set in the child process of `no_ca_bundle_is_a_clear_error_not_a_panic`.
    const NO_CA_CHILD: &str = "BERTH_TEST_NO_CA_CHILD";

    /// With no CA certificates (SSL_CERT_FILE and SSL_CERT_DIR point at
    /// nothing), making the puller does not panic and a pull fails with the
    /// clear error. Runs in a child
    /// process: the roots are read from the environment, which a test must
    /// not change in its own process.
    #[test]
    fn no_ca_bundle_is_a_clear_error_not_a_panic() {
        if std::env::var_os(NO_CA_CHILD).is_some() {
            let p = Puller::new(RegistryOptions::default());
            assert!(!p.https_available());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let t = tempfile::tempdir().unwrap();
            let store = ContentStore::open(t.path()).unwrap();
            let r = Reference::parse("registry.example/app:1").unwrap();
            let e = rt
                .block_on(p.pull(&r, &store, &KeyedLocks::default()))
                .unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, PullError::NoTrustRoots { .. }), "{msg}");
            assert!(msg.contains("ca-certificates"), "{msg}");
            assert!(e.is_unreachable(), "a local copy may stand in");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "pull::tests::no_ca_bundle_is_a_clear_error_not_a_panic",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NO_CA_CHILD, "1")
            .env("SSL_CERT_FILE", "/nonexistent/berth-test/ca.pem")
            .env("SSL_CERT_DIR", "/nonexistent/berth-test/certs")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed:\n{text}");
        assert!(text.contains("1 passed"), "the child ran no test:\n{text}");
    }
}
