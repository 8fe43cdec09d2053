//! The subset of OCI / Docker v2 schema 2 manifests, indexes and image configs berth reads.

use std::collections::BTreeMap;

use berth_contract::ImageConfig;
use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Media types we ask registries for.
pub const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker v2 schema 2; same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image index / Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
pub enum AnyManifest {
    Image(Manifest),
    Index(Index),
}

/// Parse a manifest or index, telling them apart by `mediaType` (or by shape when absent).
pub fn parse_any(data: &[u8]) -> Result<AnyManifest, serde_json::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe = serde_json::from_slice(data)?;
    let is_index = match p.media_type.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(_) => false,
        None => p.manifests.is_some(),
    };
    Ok(if is_index {
        AnyManifest::Index(serde_json::from_slice(data)?)
    } else {
        AnyManifest::Image(serde_json::from_slice(data)?)
    })
}

/// This host's platform in OCI terms (`std::env::consts` mapped to GOARCH names).
pub fn host_platform() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "loongarch64" => ("loong64", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        other => (other, None), // riscv64, s390x and mips64 share names
    };
    Platform {
        architecture: arch.to_string(),
        os: std::env::consts::OS.to_string(),
        variant: variant.map(str::to_string),
    }
}

/// Pick the manifest for `want` from an index: same os and architecture,
/// preferring an exact variant match, then an entry without a variant
/// (`arm64` with no variant means v8), then any variant.
pub fn select_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    let variant = |d: &Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
    candidates
        .iter()
        .find(|d| variant(d) == want.variant)
        .or_else(|| candidates.iter().find(|d| variant(d).is_none()))
        .or_else(|| candidates.first())
        .copied()
}

/// The parts of an image config document berth reads.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ConfigFile {
    pub fn image_config(&self) -> ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|x| !x.is_empty());
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: non_empty(c.working_dir),
            user: non_empty(c.user),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
        }
    }
}

/// Chain IDs from diff IDs: `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest as _, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {d}")))
            ),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_match_the_spec() {
        // Example from the OCI image spec (config.md, "Layer ChainID").
        let a = "sha256:a".to_string();
        let ids = chain_ids(&[a.clone(), "sha256:b".into()]);
        assert_eq!(ids[0], a);
        let expect = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"sha256:a sha256:b"))
        );
        assert_eq!(ids[1], expect);
    }

    #[test]
    fn platform_selection() {
        let d = |arch: &str, variant: Option<&str>, dg: &str| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: dg.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
            annotations: Default::default(),
        };
        let idx = Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests: vec![
                d("arm", Some("v6"), "a6"),
                d("arm", Some("v7"), "a7"),
                d("arm64", None, "a64"),
                d("amd64", None, "x64"),
            ],
        };
        let p = |a: &str, v: Option<&str>| Platform {
            architecture: a.into(),
            os: "linux".into(),
            variant: v.map(Into::into),
        };
        assert_eq!(
            select_platform(&idx, &p("amd64", None)).unwrap().digest,
            "x64"
        );
        assert_eq!(
            select_platform(&idx, &p("arm64", Some("v8")))
                .unwrap()
                .digest,
            "a64"
        );
        assert_eq!(
            select_platform(&idx, &p("arm", Some("v7"))).unwrap().digest,
            "a7"
        );
        assert!(select_platform(&idx, &p("s390x", None)).is_none());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host_platform(), p("amd64", None));
        }
    }

    #[test]
    fn config_extraction() {
        let cfg: ConfigFile = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/e"],"Cmd":["a","b"],
            "Env":["PATH=/bin"],"WorkingDir":"/w","User":"app","ExposedPorts":{"80/tcp":{}},
            "Volumes":{"/data":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#,
        )
        .unwrap();
        let c = cfg.image_config();
        assert_eq!(c.entrypoint, vec!["/e"]);
        assert_eq!(c.cmd, vec!["a", "b"]);
        assert_eq!(c.env, vec!["PATH=/bin"]);
        assert_eq!(c.working_dir.as_deref(), Some("/w"));
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.exposed_ports, vec!["80/tcp"]);
        assert_eq!(c.volumes, vec!["/data"]);
        let empty: ConfigFile =
            serde_json::from_str(r#"{"rootfs":{"diff_ids":[]},"config":{"WorkingDir":""}}"#)
                .unwrap();
        assert_eq!(empty.image_config().working_dir, None);
    }
}
