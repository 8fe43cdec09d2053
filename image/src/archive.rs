//! Air-gap import of `docker save` archives and OCI archives (`oci-archive`),
//! plain, gzip- or zstd-compressed.
//!
//! An archive is extracted into `<root>/tmp` (the `tar` crate's `unpack`,
//! which refuses paths outside the target), its blobs are hashed and moved
//! into the content store, and each named image is committed like a pulled
//! one (layers unpacked, index entry written).
//!
//! Names: docker archives carry `RepoTags`. OCI archives carry, per
//! manifest, `io.containerd.image.name` (preferred) or
//! `org.opencontainers.image.ref.name`. The latter is a full reference when
//! it contains `/`, `:` or `@`; otherwise it is only a tag, and the image is
//! named `<archive file stem>:<tag>` (a warning is logged).
//!
//! `imports.json` remembers (size, mtime) of archives already imported, so
//! restarts do not import them again unless an image they named is gone.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::content::{ContentError, ContentStore, Digest};
use crate::fsutil::{atomic_write, unique_name};
use crate::manifest::{self, AnyManifest, Descriptor, Manifest};
use crate::reference::{Reference, is_valid_tag};
use crate::store::ImageStore;
use crate::unpack::{Compression, sniff};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("not an image archive: neither manifest.json (docker save) nor index.json (OCI) found")]
    NotAnImageArchive,
    #[error("{file} in the archive is not valid")]
    BadJson {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("archive entry {path:?} is missing or outside the archive")]
    BadPath { path: String },
    #[error("blob {digest} in the archive")]
    Blob {
        digest: String,
        #[source]
        source: ContentError,
    },
    #[error("no manifest for this host's platform in index {digest}")]
    NoPlatform { digest: String },
    #[error("archive expands to more than {max} bytes (entry {entry:?})")]
    TooLarge { entry: String, max: u64 },
    #[error(
        "archive of {compressed} bytes expands to more than {expanded} bytes (over {MAX_RATIO}x): refused as a decompression bomb"
    )]
    Bomb { compressed: u64, expanded: u64 },
    #[error("archive has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
}

/// A compressed archive may expand at most this much (beyond
/// [`ArchiveLimits::bomb_floor`]); image archives hold compressed layers and
/// expand little.
const MAX_RATIO: u64 = 100;
const MAX_ENTRIES: u64 = 1_000_000;

/// Bounds on one archive import, checked at each entry header, before
/// anything is written.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLimits {
    /// What the archive may expand to in all.
    pub max_bytes: u64,
    /// Expansion above this size must stay within [`MAX_RATIO`] of the file.
    pub bomb_floor: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_bytes: 16 << 30,
            bomb_floor: 256 << 20,
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { op, path, source }
}

/// One image found in an archive, its blobs already in the content store.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    pub reference: String,
    pub manifest: Digest,
}

/// Extract `archive` and move its blobs into `content`; returns the named images.
pub fn import_archive(
    archive: &Path,
    content: &ContentStore,
    tmp: &Path,
    limits: ArchiveLimits,
) -> Result<Vec<ImportedImage>, ArchiveError> {
    let work = tmp.join(unique_name("import"));
    fs::create_dir_all(&work).map_err(io_err("create", &work))?;
    let res = (|| {
        let mut f = File::open(archive).map_err(io_err("open", archive))?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).map_err(io_err("read", archive))?;
        f.rewind().map_err(io_err("seek", archive))?;
        let compressed = f.metadata().map_err(io_err("stat", archive))?.len();
        let comp = sniff(&head[..n]);
        let r = io::BufReader::with_capacity(1 << 20, f);
        let reader: Box<dyn Read> = match comp {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::Decoder::new(r).map_err(io_err("zstd", archive))?),
        };
        let mut ar = tar::Archive::new(crate::targuard::TarGuard::new(reader));
        ar.set_preserve_permissions(false);
        ar.set_unpack_xattrs(false);
        // Entry by entry, so the declared sizes are checked before anything
        // is written: a bomb is refused at its first oversized header.
        let mut expanded = 0u64;
        let mut entries = 0u64;
        for entry in ar.entries().map_err(io_err("read", archive))? {
            let mut entry = entry.map_err(io_err("read", archive))?;
            entries += 1;
            if entries > MAX_ENTRIES {
                return Err(ArchiveError::TooManyEntries);
            }
            expanded = expanded.saturating_add(entry.size());
            if expanded > limits.max_bytes {
                return Err(ArchiveError::TooLarge {
                    entry: entry
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    max: limits.max_bytes,
                });
            }
            if comp != Compression::None
                && expanded > limits.bomb_floor
                && expanded / compressed.max(1) > MAX_RATIO
            {
                return Err(ArchiveError::Bomb {
                    compressed,
                    expanded,
                });
            }
            // `unpack_in` refuses paths that climb out of `work` and writes
            // through no symlink it created.
            entry.unpack_in(&work).map_err(io_err("extract", archive))?;
        }
        let stem = archive_stem(archive);
        if work.join("manifest.json").is_file() {
            import_docker(&work, content)
        } else if work.join("index.json").is_file() {
            import_oci(&work, content, &stem)
        } else {
            Err(ArchiveError::NotAnImageArchive)
        }
    })();
    let _ = fs::remove_dir_all(&work);
    res
}

fn archive_stem(p: &Path) -> String {
    let name = p
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut s = name.as_str();
    for ext in [".tar.gz", ".tar.zst", ".tar.zstd", ".tgz", ".tar"] {
        if let Some(x) = s.strip_suffix(ext) {
            s = x;
            break;
        }
    }
    s.to_ascii_lowercase()
}

/// Resolve a path named inside the archive, refusing anything outside it.
fn inside(work: &Path, rel: &str) -> Result<PathBuf, ArchiveError> {
    let bad = || ArchiveError::BadPath {
        path: rel.to_string(),
    };
    let p = work.join(crate::unpack::clean_path(Path::new(rel)).map_err(|_| bad())?);
    let canon = p.canonicalize().map_err(|_| bad())?;
    let root = work.canonicalize().map_err(|_| bad())?;
    if !canon.starts_with(&root) || !canon.is_file() {
        return Err(bad());
    }
    Ok(canon)
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path, file: &str) -> Result<T, ArchiveError> {
    let data = fs::read(p).map_err(io_err("read", p))?;
    serde_json::from_slice(&data).map_err(|source| ArchiveError::BadJson {
        file: file.to_string(),
        source,
    })
}

fn parse_name(value: &str, what: &str) -> Option<String> {
    match Reference::parse(value) {
        Ok(r) => Some(r.to_string()),
        Err(e) => {
            tracing::warn!(name = value, source = what, err = %e, "skipping image with an invalid name");
            None
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn import_docker(work: &Path, content: &ContentStore) -> Result<Vec<ImportedImage>, ArchiveError> {
    let entries: Vec<DockerEntry> = read_json(&work.join("manifest.json"), "manifest.json")?;
    let mut moved: HashMap<PathBuf, (Digest, u64, Compression)> = HashMap::new();
    let mut put = |rel: &str| -> Result<(Digest, u64, Compression), ArchiveError> {
        let p = inside(work, rel)?;
        if let Some(x) = moved.get(&p) {
            return Ok(x.clone());
        }
        let size = fs::metadata(&p).map_err(io_err("stat", &p))?.len();
        let mut head = [0u8; 4];
        let n = File::open(&p)
            .and_then(|mut f| f.read(&mut head))
            .map_err(io_err("read", &p))?;
        let d = content
            .put_file(&p, None)
            .map_err(|source| ArchiveError::Blob {
                digest: rel.to_string(),
                source,
            })?;
        let v = (d, size, sniff(&head[..n]));
        moved.insert(p, v.clone());
        Ok(v)
    };
    let mut out = Vec::new();
    for e in entries {
        let (config, csize, _) = put(&e.config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let (d, size, comp) = put(l)?;
            layers.push(Descriptor {
                media_type: match comp {
                    Compression::None => manifest::OCI_LAYER_TAR,
                    Compression::Gzip => manifest::OCI_LAYER_GZIP,
                    Compression::Zstd => manifest::OCI_LAYER_ZSTD,
                }
                .to_string(),
                digest: d.to_string(),
                size,
                platform: None,
                annotations: BTreeMap::new(),
            });
        }
        let m = Manifest {
            schema_version: 2,
            media_type: Some(manifest::OCI_MANIFEST.to_string()),
            config: Descriptor {
                media_type: manifest::OCI_CONFIG.to_string(),
                digest: config.to_string(),
                size: csize,
                platform: None,
                annotations: BTreeMap::new(),
            },
            layers,
        };
        let data = serde_json::to_vec(&m).expect("manifest serialises");
        let md = content
            .put(&data, None)
            .map_err(|source| ArchiveError::Blob {
                digest: "<synthesised manifest>".into(),
                source,
            })?;
        let tags = e.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            tracing::warn!(image_id = %config, "docker archive image without RepoTags skipped");
        }
        for t in tags {
            if let Some(reference) = parse_name(&t, "RepoTags") {
                out.push(ImportedImage {
                    reference,
                    manifest: md.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn oci_blob(work: &Path, content: &ContentStore, digest: &str) -> Result<Digest, ArchiveError> {
    let d = Digest::parse(digest).map_err(|source| ArchiveError::Blob {
        digest: digest.to_string(),
        source,
    })?;
    if content.contains(&d) {
        return Ok(d);
    }
    let p = inside(work, &format!("blobs/sha256/{}", d.hex()))?;
    content
        .put_file(&p, Some(&d))
        .map_err(|source| ArchiveError::Blob {
            digest: digest.to_string(),
            source,
        })
}

/// The name of an OCI index entry (see the module docs).
pub fn oci_name(annotations: &BTreeMap<String, String>, stem: &str) -> Option<String> {
    if let Some(n) = annotations.get("io.containerd.image.name") {
        return parse_name(n, "io.containerd.image.name");
    }
    let n = annotations.get("org.opencontainers.image.ref.name")?;
    if n.contains('/') || n.contains(':') || n.contains('@') {
        return parse_name(n, "org.opencontainers.image.ref.name");
    }
    if !is_valid_tag(n) {
        tracing::warn!(name = %n, "skipping OCI image with an invalid ref.name");
        return None;
    }
    tracing::warn!(tag = %n, repository = stem, "OCI ref.name is only a tag; naming the image after the archive file");
    parse_name(&format!("{stem}:{n}"), "archive file name + ref.name")
}

fn import_oci(
    work: &Path,
    content: &ContentStore,
    stem: &str,
) -> Result<Vec<ImportedImage>, ArchiveError> {
    let idx: manifest::Index = read_json(&work.join("index.json"), "index.json")?;
    let mut out = Vec::new();
    for d in &idx.manifests {
        let Some(reference) = oci_name(&d.annotations, stem) else {
            tracing::warn!(manifest = %d.digest, "OCI archive manifest without a usable name skipped");
            continue;
        };
        let top = oci_blob(work, content, &d.digest)?;
        let data = content
            .read_verified(&top)
            .map_err(|source| ArchiveError::Blob {
                digest: d.digest.clone(),
                source,
            })?;
        let bad = |source| ArchiveError::BadJson {
            file: format!("blobs/{}", d.digest),
            source,
        };
        let (md, m) =
            match manifest::parse_any(&data).map_err(bad)? {
                AnyManifest::Image(m) => (top, m),
                AnyManifest::Index(i) => {
                    let sel = manifest::select_platform(&i, &manifest::host_platform())
                        .ok_or_else(|| ArchiveError::NoPlatform {
                            digest: d.digest.clone(),
                        })?;
                    let md = oci_blob(work, content, &sel.digest)?;
                    let data = content
                        .read_verified(&md)
                        .map_err(|source| ArchiveError::Blob {
                            digest: sel.digest.clone(),
                            source,
                        })?;
                    match manifest::parse_any(&data).map_err(bad)? {
                        AnyManifest::Image(m) => (md, m),
                        AnyManifest::Index(_) => {
                            return Err(ArchiveError::NoPlatform {
                                digest: sel.digest.clone(),
                            });
                        }
                    }
                }
            };
        oci_blob(work, content, &m.config.digest)?;
        for l in &m.layers {
            oci_blob(work, content, &l.digest)?;
        }
        out.push(ImportedImage {
            reference,
            manifest: md,
        });
    }
    Ok(out)
}

// === the import directory ===

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ImportState {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    files: BTreeMap<String, ImportRecord>,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct ImportRecord {
    size: u64,
    mtime_ns: i128,
    refs: Vec<String>,
    #[serde(default)]
    error: Option<String>,
}

impl ImportState {
    pub fn load(root: &Path) -> Self {
        let path = root.join("imports.json");
        let mut s: ImportState = fs::read(&path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or_default();
        s.version = 1;
        s.path = path;
        s
    }
    /// Archives whose last import failed, as (file name, error).
    pub fn failures(&self) -> Vec<(String, String)> {
        self.files
            .iter()
            .filter_map(|(name, r)| r.error.clone().map(|e| (name.clone(), e)))
            .collect()
    }

    fn save(&self) {
        let data = serde_json::to_vec_pretty(self).expect("serialises");
        if let Err(err) = atomic_write(&self.path, &data) {
            tracing::warn!(path = %self.path.display(), %err, "could not record imported archives");
        }
    }
}

/// An archive modified more recently than this may still be being written.
const IMPORT_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest a pull waits for archives in the import dir to settle.
pub const IMPORT_FIRST_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What one scan of the import dir did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: Vec<String>,
    pub failed: Vec<(PathBuf, String)>,
}

impl ImageStore {
    /// Import every new or changed archive in the import dir. Files modified
    /// in the last 2 s are left for the next scan (they may still be copying).
    /// Failures are logged and reported per file, never fatal.
    pub async fn import_dir_once(&self) -> ImportReport {
        let mut report = ImportReport::default();
        let Some(dir) = self.cfg.import_dir.clone() else {
            return report;
        };
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return report,
            Err(err) => {
                tracing::warn!(dir = %dir.display(), %err, "cannot read image import dir");
                return report;
            }
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        let mut state = self.imports.lock().await;
        for path in files {
            let name = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if name.starts_with('.') || !meta.is_file() {
                continue;
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            let mtime_ns = mtime.map(|d| d.as_nanos() as i128).unwrap_or(0);
            let age = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .zip(mtime)
                .map(|(n, m)| n.saturating_sub(m));
            if age.is_some_and(|a| a < IMPORT_SETTLE) {
                continue;
            }
            if let Some(rec) = state.files.get(&name)
                && rec.size == meta.len()
                && rec.mtime_ns == mtime_ns
                && (rec.error.is_some() || rec.refs.iter().all(|r| self.index.get(r).is_some()))
            {
                continue;
            }
            let res = self.import_one(&path).await;
            let rec = match res {
                Ok(refs) => {
                    tracing::info!(archive = %path.display(), images = ?refs, "imported image archive");
                    report.imported.extend(refs.iter().cloned());
                    ImportRecord {
                        size: meta.len(),
                        mtime_ns,
                        refs,
                        error: None,
                    }
                }
                Err(e) => {
                    let msg = berth_contract::error_chain(&e);
                    tracing::warn!(archive = %path.display(), err = %msg, "image archive import failed");
                    report.failed.push((path.clone(), msg.clone()));
                    ImportRecord {
                        size: meta.len(),
                        mtime_ns,
                        refs: vec![],
                        error: Some(msg),
                    }
                }
            };
            state.files.insert(name, rec);
            state.save();
        }
        report
    }

    /// Archives in the import dir that are new or changed since their last
    /// import but were modified too recently to be imported yet (they may
    /// still be copying).
    async fn settling_archives(&self) -> usize {
        let Some(dir) = self.cfg.import_dir.clone() else {
            return 0;
        };
        let Ok(rd) = fs::read_dir(&dir) else { return 0 };
        let state = self.imports.lock().await;
        let now = std::time::SystemTime::now();
        rd.flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                Some((
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().ok()?,
                ))
            })
            .filter(|(_, m)| m.is_file())
            .filter(|(name, m)| {
                let mtime = m.modified().ok();
                let young = mtime
                    .and_then(|t| now.duration_since(t).ok())
                    .is_none_or(|a| a < IMPORT_SETTLE);
                let mtime_ns = mtime
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos() as i128)
                    .unwrap_or(0);
                let known = state
                    .files
                    .get(name)
                    .is_some_and(|r| r.size == m.len() && r.mtime_ns == mtime_ns);
                young && !known
            })
            .count()
    }

    /// Before an image that is not in the store is pulled: import what waits
    /// in the import dir first, waiting (at most [`IMPORT_FIRST_MAX_WAIT`])
    /// for archives still being written, so that an air-gapped host never
    /// tries the registry for an image it was handed as a file (issue 15).
    pub async fn import_pending_first(&self) {
        if self.cfg.import_dir.is_none() {
            return;
        }
        let deadline = tokio::time::Instant::now() + IMPORT_FIRST_MAX_WAIT;
        loop {
            self.import_dir_once().await;
            if self.settling_archives().await == 0 || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Import one archive file now.
    pub async fn import_one(&self, path: &Path) -> Result<Vec<String>, crate::error::ImageError> {
        // One lease for extraction and commit: GC must not sweep the new
        // blobs before an index entry references them.
        let _lease = self.gc_lock.read().await;
        let (p, content, tmp) = (path.to_path_buf(), self.content.clone(), self.tmp_dir());
        let max = self.cfg.archive_limits;
        let images = tokio::task::spawn_blocking(move || import_archive(&p, &content, &tmp, max))
            .await
            .map_err(crate::error::ImageError::Task)?
            .map_err(|source| crate::error::ImageError::Import {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        let mut refs = Vec::new();
        for img in images {
            let _g = self.locks.lock(&format!("image:{}", img.reference)).await;
            self.commit_image(&img.reference, &img.manifest, None, vec![])
                .await?;
            refs.push(img.reference);
        }
        Ok(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(dir: &Path, size: u64, gzip: bool) -> PathBuf {
        let p = dir.join(if gzip { "bomb.tar.gz" } else { "big.tar" });
        let f = File::create(&p).unwrap();
        let w: Box<dyn io::Write> = if gzip {
            Box::new(flate2::write::GzEncoder::new(
                f,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(f)
        };
        let mut b = tar::Builder::new(w);
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        b.append_data(&mut h, "blobs/sha256/zeros", io::repeat(0).take(size))
            .unwrap();
        b.into_inner().unwrap().flush().unwrap();
        p
    }

    #[test]
    fn attack_decompression_bomb_is_refused_before_it_is_written() {
        let t = tempfile::tempdir().unwrap();
        let content = ContentStore::open(t.path()).unwrap();
        let tmp = t.path().join("tmp");
        fs::create_dir(&tmp).unwrap();
        let bomb = archive_with(t.path(), 8 << 20, true);
        assert!(fs::metadata(&bomb).unwrap().len() < 80 << 10);
        let limits = ArchiveLimits {
            bomb_floor: 1 << 20,
            ..ArchiveLimits::default()
        };
        let r = import_archive(&bomb, &content, &tmp, limits);
        assert!(matches!(r, Err(ArchiveError::Bomb { .. })), "{r:?}");
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "scratch removed");
        // and a plain archive over the configured bound
        let big = archive_with(t.path(), 2 << 20, false);
        let limits = ArchiveLimits {
            max_bytes: 1 << 20,
            ..ArchiveLimits::default()
        };
        let r = import_archive(&big, &content, &tmp, limits);
        assert!(
            matches!(r, Err(ArchiveError::TooLarge { max, .. }) if max == 1 << 20),
            "{r:?}"
        );
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "scratch removed");
    }

    #[test]
    fn oci_names() {
        let a = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert_eq!(
            oci_name(&a("io.containerd.image.name", "busybox:1"), "x").unwrap(),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            oci_name(
                &a(
                    "org.opencontainers.image.ref.name",
                    "berth.local/busybox:1.36"
                ),
                "x"
            )
            .unwrap(),
            "berth.local/busybox:1.36"
        );
        assert_eq!(
            oci_name(&a("org.opencontainers.image.ref.name", "1.36"), "myimg").unwrap(),
            "docker.io/library/myimg:1.36"
        );
        assert_eq!(
            oci_name(&a("org.opencontainers.image.ref.name", "bad tag"), "myimg"),
            None
        );
        assert_eq!(oci_name(&BTreeMap::new(), "x"), None);
        assert_eq!(archive_stem(Path::new("/a/My-App.tar.gz")), "my-app");
    }
}
