//! Registry credentials from a Docker-style `config.json`.
//!
//! Reads `auths.<registry>.auth` (base64 `user:password`) or
//! `auths.<registry>.username`/`password`. Keys may be bare hosts
//! (`host:5000`), URLs (`https://host/v2/`) or Docker Hub's legacy
//! `https://index.docker.io/v1/`. Credential helpers (`credsStore`,
//! `credHelpers`) are not supported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::DOCKER_HUB;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("reading Docker config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Docker config {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("Docker config {path}: auth for {registry:?} is not base64 of user:password")]
    BadAuth { path: PathBuf, registry: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Clone)]
pub struct DockerAuth {
    by_host: BTreeMap<String, Credentials>,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://h:5000/x` -> `h:5000`.
pub fn normalise_host(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        h => h.to_string(),
    }
}

impl DockerAuth {
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no Docker config; anonymous pulls only");
                return Ok(DockerAuth::default());
            }
            Err(source) => {
                return Err(AuthError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::parse(&data, path)
    }

    pub fn parse(data: &[u8], path: &Path) -> Result<Self, AuthError> {
        let cfg: ConfigJson = serde_json::from_slice(data).map_err(|source| AuthError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let mut by_host = BTreeMap::new();
        for (key, e) in cfg.auths {
            let bad = || AuthError::BadAuth {
                path: path.to_path_buf(),
                registry: key.clone(),
            };
            let creds = if let Some(a) = e.auth.filter(|a| !a.is_empty()) {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .map_err(|_| bad())?;
                let s = String::from_utf8(raw).map_err(|_| bad())?;
                let (u, p) = s.split_once(':').ok_or_else(bad)?;
                Credentials {
                    username: u.to_string(),
                    password: p.to_string(),
                }
            } else if let (Some(u), Some(p)) = (e.username, e.password) {
                Credentials {
                    username: u,
                    password: p,
                }
            } else {
                continue;
            };
            by_host.insert(normalise_host(&key), creds);
        }
        Ok(DockerAuth { by_host })
    }

    /// Credentials for a registry host (as in a reference: `docker.io`, `host:5000`).
    pub fn for_registry(&self, registry: &str) -> Option<&Credentials> {
        self.by_host.get(&normalise_host(registry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config() {
        let cfg = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNzOndpdGg6Y29sb25z"},
            "127.0.0.1:5000":{"username":"u","password":"p"},
            "https://reg.example/v2/":{"auth":""}}}"#;
        let a = DockerAuth::parse(cfg, Path::new("c.json")).unwrap();
        assert_eq!(
            a.for_registry("docker.io"),
            Some(&Credentials {
                username: "user".into(),
                password: "pass:with:colons".into()
            })
        );
        assert_eq!(a.for_registry("127.0.0.1:5000").unwrap().username, "u");
        assert_eq!(a.for_registry("reg.example"), None);
        let e = DockerAuth::parse(br#"{"auths":{"x":{"auth":"!!"}}}"#, Path::new("c.json"))
            .unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
        assert!(
            DockerAuth::load(Path::new("/nonexistent/config.json"))
                .unwrap()
                .for_registry("x")
                .is_none()
        );
    }
}
