//! `seccompProfile: {type: Localhost, localhostProfile: <path>}`: the profile
//! (OCI seccomp JSON, as kubelet hands to its runtime) is read from beneath
//! `<state-dir>/seccomp/`; the path may not leave that directory, not even
//! through a symlink, and the file is bounded in size.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use berth_spec::k8s_openapi::api::core::v1::{Container, PodSecurityContext, SeccompProfile};

/// The largest profile read.
pub const MAX_PROFILE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccompProfile Localhost needs localhostProfile")]
    NoPath,
    #[error("seccomp profile {0:?} must be a relative path beneath the seccomp directory")]
    Escapes(String),
    #[error("seccomp profile {path:?} not found in {dir}")]
    Missing {
        path: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path:?}: larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("seccomp profile {path:?}: reading it")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("seccomp profile {path:?} is not valid JSON")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The container's effective profile (its own over the pod's).
fn effective<'a>(
    c: &'a Container,
    pod: Option<&'a PodSecurityContext>,
) -> Option<&'a SeccompProfile> {
    c.security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod.and_then(|p| p.seccomp_profile.as_ref()))
}

/// The Localhost profile's text, when the container has one.
pub fn profile(
    c: &Container,
    pod: Option<&PodSecurityContext>,
    state_dir: &Path,
) -> Result<Option<String>, SeccompError> {
    let Some(p) = effective(c, pod).filter(|p| p.type_ == "Localhost") else {
        return Ok(None);
    };
    let rel = p
        .localhost_profile
        .as_deref()
        .filter(|r| !r.is_empty())
        .ok_or(SeccompError::NoPath)?;
    read_beneath(&state_dir.join("seccomp"), rel).map(Some)
}

fn read_beneath(dir: &Path, rel: &str) -> Result<String, SeccompError> {
    let lexical_ok = Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !lexical_ok {
        return Err(SeccompError::Escapes(rel.into()));
    }
    let missing = |source| SeccompError::Missing {
        path: rel.into(),
        dir: dir.to_path_buf(),
        source,
    };
    let root = dir.canonicalize().map_err(missing)?;
    let real = dir.join(rel).canonicalize().map_err(missing)?;
    // a symlink inside the directory may not lead out of it
    if !real.starts_with(&root) {
        return Err(SeccompError::Escapes(rel.into()));
    }
    let read = |source| SeccompError::Read {
        path: rel.into(),
        source,
    };
    let f = std::fs::File::open(&real).map_err(read)?;
    let mut text = String::new();
    f.take(MAX_PROFILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(SeccompError::TooLarge { path: rel.into() });
    }
    serde_json::from_str::<serde_json::Value>(&text).map_err(|source| SeccompError::Json {
        path: rel.into(),
        source,
    })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::SecurityContext;

    use super::*;

    fn ctr(path: &str) -> Container {
        Container {
            name: "c".into(),
            security_context: Some(SecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "Localhost".into(),
                    localhost_profile: Some(path.into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn profiles_stay_beneath_the_directory() {
        let t = std::env::temp_dir().join(format!("berth-seccomp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let dir = t.join("seccomp");
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        std::fs::write(
            dir.join("profiles/audit.json"),
            r#"{"defaultAction":"SCMP_ACT_LOG"}"#,
        )
        .unwrap();
        std::fs::write(t.join("outside.json"), "{}").unwrap();
        std::os::unix::fs::symlink(t.join("outside.json"), dir.join("link.json")).unwrap();
        std::fs::write(dir.join("bad.json"), "{").unwrap();
        let got = profile(&ctr("profiles/audit.json"), None, &t).unwrap();
        assert!(got.unwrap().contains("SCMP_ACT_LOG"));
        assert!(matches!(
            profile(&ctr("../outside.json"), None, &t),
            Err(SeccompError::Escapes(_))
        ));
        assert!(matches!(
            profile(&ctr("/etc/passwd"), None, &t),
            Err(SeccompError::Escapes(_))
        ));
        assert!(matches!(
            profile(&ctr("link.json"), None, &t),
            Err(SeccompError::Escapes(_))
        ));
        assert!(matches!(
            profile(&ctr("none.json"), None, &t),
            Err(SeccompError::Missing { .. })
        ));
        assert!(matches!(
            profile(&ctr("bad.json"), None, &t),
            Err(SeccompError::Json { .. })
        ));
        // RuntimeDefault is not read from anywhere
        let c = Container::default();
        assert_eq!(profile(&c, None, &t).unwrap(), None);
        std::fs::remove_dir_all(&t).unwrap();
    }
}
