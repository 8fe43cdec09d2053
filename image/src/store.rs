//! `ImageStore`: the `Images` implementation tying content, index, pulls,
//! imports, unpacking and GC together.
//!
//! ```text
//! <root>/                      (= <state-dir>/images)
//!   blobs/sha256/<hex>         content store (content.rs)
//!   ingest/                    blobs being written (cleared at open)
//!   layers/<chain-id hex>/     unpacked layers, read-only, shared (unpack.rs)
//!   tmp/                       unpack and import scratch (cleared at open)
//!   index.json                 reference -> image record (index.rs)
//!   imports.json               archives already imported (archive.rs)
//! ```
//!
//! # Lifecycle of `ensure`
//! parse reference -> take the GC read lease -> lock the image key ->
//! look up the index (verifying manifest, config and layer dirs) -> per
//! policy, pull into the content store -> unpack missing layers -> write
//! the index entry -> return `ImageInfo`. Each step commits atomically, so
//! cancelling at any await point (dropping the future) leaves only
//! unreferenced blobs or layers, which GC removes; never an index entry
//! for an incomplete image.
//!
//! # Pull policy `Always` offline
//! When the registry cannot be reached (connection refused, DNS, timeout,
//! 5xx) and the image is present, the local copy is used and a warning is
//! logged: edge hosts are often offline. Kubernetes would fail instead.

use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many layers of one image unpack at the same time (see `commit_image`).
const UNPACK_PARALLEL: usize = 2;

use berth_contract::{GcReport, ImageFailureReason, ImageInfo, Images, PullPolicy, error_chain};

use crate::archive::ImportState;
use crate::auth::DockerAuth;
use crate::content::{ContentStore, Digest};
use crate::error::ImageError;
use crate::index::{ImageRecord, Index, LayerRecord, now_unix};
use crate::locks::KeyedLocks;
use crate::manifest::{self, AnyManifest, ConfigFile};
use crate::pull::{Puller, RegistryOptions};
use crate::reference::Reference;
use crate::unpack::{Caps, UnpackError, UnpackLimits, unpack_layer};

/// How stale an image's `last_used` may get before a use writes the index
/// again (image GC orders images by it: a minute is far below its scale).
const LAST_USED_STEP: u64 = 60;

/// `new` differs from the indexed `old` in `last_used` only, by less than
/// [`LAST_USED_STEP`] seconds.
fn only_used_recently(old: &ImageRecord, new: &ImageRecord) -> bool {
    let same = ImageRecord {
        last_used: new.last_used,
        ..old.clone()
    };
    same == *new && new.last_used.saturating_sub(old.last_used) < LAST_USED_STEP
}

#[derive(Debug, Clone)]
pub struct ImageStoreConfig {
    /// `<state-dir>/images`
    pub root: PathBuf,
    /// Air-gap directory of image archives; imported at open and watched.
    pub import_dir: Option<PathBuf>,
    /// Docker `config.json` with registry credentials.
    pub docker_config: Option<PathBuf>,
    /// Registries reached over plain HTTP (loopback registries always are).
    pub insecure_registries: Vec<String>,
    /// Registry -> mirrors tried first, e.g. `docker.io -> [mirror.lan:5000]`.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// GC starts when the filesystem of `root` is this full (percent)...
    pub gc_high_percent: u8,
    /// ...and stops once usage is below this.
    pub gc_low_percent: u8,
    /// How often the import watcher scans `import_dir`.
    pub import_poll_interval: Duration,
    /// Bounds on each layer unpacked (bytes, entries).
    pub layer_limits: UnpackLimits,
    /// Bounds on what an image archive expands to when imported.
    pub archive_limits: crate::archive::ArchiveLimits,
}

impl ImageStoreConfig {
    /// Defaults like kubelet's (85 % / 80 %), poll every 3 s.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ImageStoreConfig {
            root: root.into(),
            import_dir: None,
            docker_config: None,
            insecure_registries: Vec::new(),
            mirrors: BTreeMap::new(),
            gc_high_percent: 85,
            gc_low_percent: 80,
            import_poll_interval: Duration::from_secs(3),
            layer_limits: UnpackLimits::default(),
            archive_limits: crate::archive::ArchiveLimits::default(),
        }
    }
}

/// Work counters, for tests ("one download") and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub manifests_fetched: u64,
    pub blobs_fetched: u64,
    pub bytes_fetched: u64,
    pub layers_unpacked: u64,
}

pub struct ImageStore {
    pub(crate) cfg: ImageStoreConfig,
    pub(crate) content: ContentStore,
    pub(crate) index: Index,
    pub(crate) puller: Puller,
    pub(crate) locks: KeyedLocks,
    /// Ensures and imports hold it shared; GC sweeps hold it exclusively.
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
    pub(crate) caps: Caps,
    pub(crate) layers_unpacked: AtomicU64,
    pub(crate) imports: tokio::sync::Mutex<ImportState>,
}

impl ImageStore {
    /// Open (creating) the store, clear leftovers of interrupted work, and
    /// import every archive in the import dir (failures are logged per file).
    pub async fn open(cfg: ImageStoreConfig) -> Result<Self, ImageError> {
        let root = cfg.root.clone();
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { op, path, source }
        };
        std::fs::create_dir_all(&root).map_err(io("create", &root))?;
        // Layers hold setuid files and device nodes from images: host users
        // must not reach them, so the store is root-only (tightened if an
        // older berth created it wider).
        crate::fsutil::restrict_dir(&root).map_err(io("restrict", &root))?;
        let content = ContentStore::open(&root).map_err(|source| ImageError::Content {
            reference: String::new(),
            what: "opening the content store",
            source,
        })?;
        for d in ["layers", "tmp"] {
            let p = root.join(d);
            if d == "tmp" && p.exists() {
                std::fs::remove_dir_all(&p).map_err(io("clear", &p))?;
            }
            std::fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        let index = Index::open(&root)?;
        let auth = match &cfg.docker_config {
            Some(p) => DockerAuth::load(p)?,
            None => DockerAuth::default(),
        };
        let puller = Puller::new(RegistryOptions {
            insecure_registries: cfg.insecure_registries.clone(),
            mirrors: cfg.mirrors.clone(),
            auth,
        });
        let imports = ImportState::load(&root);
        let store = ImageStore {
            cfg,
            content,
            index,
            puller,
            locks: KeyedLocks::default(),
            gc_lock: tokio::sync::RwLock::new(()),
            caps: Caps::detect(),
            layers_unpacked: AtomicU64::new(0),
            imports: tokio::sync::Mutex::new(imports),
        };
        store.import_dir_once().await;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.cfg.root
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.puller.counters;
        StoreStats {
            manifests_fetched: c.manifests_fetched.load(Ordering::Relaxed),
            blobs_fetched: c.blobs_fetched.load(Ordering::Relaxed),
            bytes_fetched: c.bytes_fetched.load(Ordering::Relaxed),
            layers_unpacked: self.layers_unpacked.load(Ordering::Relaxed),
        }
    }

    /// Every image in the index, by normalised reference.
    pub fn images(&self) -> BTreeMap<String, ImageRecord> {
        self.index.all()
    }

    pub(crate) fn layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.cfg.root.join("layers").join(chain_id.hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.cfg.root.join("tmp")
    }

    /// See the module docs for the lifecycle and the `Always`-offline rule.
    pub async fn ensure_image(
        &self,
        image: &str,
        policy: PullPolicy,
    ) -> Result<ImageInfo, ImageError> {
        let r = Reference::parse(image)?;
        let key = r.to_string();
        // an archive in the import dir goes before any pull (it takes the
        // same locks, so this runs before they are held)
        if self.index.get(&key).is_none() {
            self.import_pending_first().await;
        }
        // Lock order everywhere: GC lease, then image key (never the reverse).
        let _lease = self.gc_lock.read().await;
        let _g = self.locks.lock(&format!("image:{key}")).await;
        let local = self.local(&key).await;
        match policy {
            PullPolicy::Never => local.ok_or(ImageError::NeverPull { reference: key }),
            PullPolicy::IfNotPresent => match local {
                Some(i) => Ok(i),
                None => self.pull_and_commit(&r, &key).await,
            },
            PullPolicy::Always if r.digest().is_some() && local.is_some() => {
                Ok(local.expect("checked"))
            }
            PullPolicy::Always => match self.pull_and_commit(&r, &key).await {
                Ok(i) => Ok(i),
                Err(ImageError::Pull { source, .. })
                    if source.is_unreachable() && local.is_some() =>
                {
                    tracing::warn!(reference = %key, err = %error_chain(&source), "registry unreachable; using the local copy (pull policy Always)");
                    Ok(local.expect("checked"))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// The local image, verified; a broken entry is dropped from the index.
    async fn local(&self, key: &str) -> Option<ImageInfo> {
        let rec = self.index.get(key)?;
        let manifest = Digest::parse(&rec.manifest).ok()?;
        let extra = rec
            .extra_blobs
            .iter()
            .filter_map(|d| Digest::parse(d).ok())
            .collect();
        match self
            .commit_image(key, &manifest, rec.repo_digest.clone(), extra)
            .await
        {
            Ok(i) => Some(i),
            Err(e) => {
                tracing::warn!(reference = %key, err = %error_chain(&e), "local image unusable; dropping it from the index");
                if let Err(e) = self.index.remove(key) {
                    tracing::warn!(reference = %key, err = %error_chain(&e), "could not drop index entry");
                }
                None
            }
        }
    }

    async fn pull_and_commit(&self, r: &Reference, key: &str) -> Result<ImageInfo, ImageError> {
        let started = tokio::time::Instant::now();
        tracing::info!(reference = %key, "pulling image");
        let pulled = self
            .puller
            .pull(r, &self.content, &self.locks)
            .await
            .map_err(|source| ImageError::Pull {
                reference: key.to_string(),
                source: Box::new(source),
            })?;
        let info = self
            .commit_image(
                key,
                &pulled.manifest,
                Some(pulled.repo_digest),
                pulled.extra_blobs,
            )
            .await?;
        tracing::info!(reference = %key, image_id = %info.image_id, elapsed_ms = started.elapsed().as_millis() as u64, "pulled image");
        Ok(info)
    }

    /// Verify manifest and config, unpack missing layers, write the index entry.
    pub(crate) async fn commit_image(
        &self,
        key: &str,
        manifest_digest: &Digest,
        repo_digest: Option<String>,
        extra_blobs: Vec<Digest>,
    ) -> Result<ImageInfo, ImageError> {
        let content_err = |what| {
            move |source| ImageError::Content {
                reference: key.to_string(),
                what,
                source,
            }
        };
        let bad = |what, digest: &str| {
            let digest = digest.to_string();
            move |source| ImageError::BadDocument {
                reference: key.to_string(),
                what,
                digest,
                source,
            }
        };
        let mdata = self
            .content
            .read_verified(manifest_digest)
            .map_err(content_err("reading manifest"))?;
        let m = match manifest::parse_any(&mdata)
            .map_err(bad("manifest", &manifest_digest.to_string()))?
        {
            AnyManifest::Image(m) => m,
            AnyManifest::Index(_) => {
                return Err(ImageError::UnexpectedIndex {
                    reference: key.to_string(),
                    digest: manifest_digest.to_string(),
                });
            }
        };
        let config_digest =
            Digest::parse(&m.config.digest).map_err(content_err("config digest"))?;
        let cdata = self
            .content
            .read_verified(&config_digest)
            .map_err(content_err("reading config"))?;
        let cfg: ConfigFile =
            serde_json::from_slice(&cdata).map_err(bad("config", &m.config.digest))?;
        if cfg.rootfs.diff_ids.len() != m.layers.len() {
            return Err(ImageError::LayerCountMismatch {
                reference: key.to_string(),
                layers: m.layers.len(),
                diff_ids: cfg.rootfs.diff_ids.len(),
            });
        }
        let chains = manifest::chain_ids(&cfg.rootfs.diff_ids);
        let mut wanted = Vec::new();
        let mut records = Vec::new();
        let mut size = mdata.len() as u64 + cdata.len() as u64;
        for ((l, diff), chain) in m.layers.iter().zip(&cfg.rootfs.diff_ids).zip(&chains) {
            let blob = Digest::parse(&l.digest).map_err(content_err("layer digest"))?;
            let diff_d = Digest::parse(diff).map_err(content_err("diff ID"))?;
            let chain_d = Digest::parse(chain).map_err(content_err("chain ID"))?;
            wanted.push((blob, diff_d, chain_d));
            size += l.size;
            records.push(LayerRecord {
                blob: l.digest.clone(),
                diff_id: diff.clone(),
                chain_id: chain.clone(),
            });
        }
        // Each layer is its own directory (overlayfs stacks them), so they
        // unpack at once, UNPACK_PARALLEL at a time: each holds a blocking
        // thread and a decode thread with their buffers, and an image of
        // dozens of layers must not fill the agent's blocking pool. Every
        // unpack runs to its end before the first error is returned: none is
        // left running past the caller's GC lease.
        let unpacks: Vec<_> = wanted
            .iter()
            .map(|(blob, diff, chain)| self.ensure_layer(key, blob, diff, chain))
            .collect();
        let layers = futures::stream::iter(unpacks)
            .buffered(UNPACK_PARALLEL)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let now = now_unix();
        let old = self.index.get(key);
        let rec = ImageRecord {
            manifest: manifest_digest.to_string(),
            config: config_digest.to_string(),
            repo_digest: repo_digest.clone(),
            extra_blobs: extra_blobs.iter().map(ToString::to_string).collect(),
            layers: records,
            size,
            created: old.as_ref().map(|r| r.created).unwrap_or(now),
            last_used: now,
        };
        // a container start of a local image only moves `last_used`: that is
        // written at most once a minute (the index write is durable, two
        // fsyncs, and was paid by every container start)
        if !old.is_some_and(|o| only_used_recently(&o, &rec)) {
            self.index.put(key, rec)?;
        }
        Ok(ImageInfo {
            reference: key.to_string(),
            image_id: config_digest.to_string(),
            repo_digest,
            layers,
            config: cfg.image_config(),
        })
    }

    /// The unpacked directory of one layer, unpacking it once if needed.
    async fn ensure_layer(
        &self,
        key: &str,
        blob: &Digest,
        diff_id: &Digest,
        chain: &Digest,
    ) -> Result<PathBuf, ImageError> {
        let dir = self.layer_path(chain);
        if dir.is_dir() {
            return Ok(dir);
        }
        let _g = self.locks.lock(&format!("layer:{chain}")).await;
        if dir.is_dir() {
            return Ok(dir);
        }
        if !self.content.contains(blob) {
            return Err(ImageError::Content {
                reference: key.to_string(),
                what: "layer blob",
                source: crate::content::ContentError::Missing {
                    digest: blob.clone(),
                },
            });
        }
        let (src, b, d, dst, tmp, caps, limits) = (
            self.content.path(blob),
            blob.clone(),
            diff_id.clone(),
            dir.clone(),
            self.tmp_dir(),
            self.caps,
            self.cfg.layer_limits,
        );
        let started = tokio::time::Instant::now();
        let res = tokio::task::spawn_blocking(move || {
            unpack_layer(&src, &b, &d, &dst, &tmp, caps, limits)
        })
        .await
        .map_err(ImageError::Task)?;
        match res {
            Ok(stats) => {
                self.layers_unpacked.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(reference = %key, layer = %chain, entries = stats.entries, bytes = stats.bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64, "unpacked layer");
                Ok(dir)
            }
            Err(e) => {
                if matches!(e, UnpackError::DigestMismatch { what: "blob", .. }) {
                    tracing::warn!(reference = %key, blob = %blob, "corrupt layer blob removed; it will be fetched again");
                    let _ = self.content.delete(blob);
                }
                Err(ImageError::Unpack {
                    reference: key.to_string(),
                    chain_id: chain.to_string(),
                    source: e,
                })
            }
        }
    }

    /// Scan the import dir every `import_poll_interval` and import new or
    /// changed archives. The task ends when the store is dropped.
    pub fn spawn_import_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.cfg.import_poll_interval;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = weak.upgrade() else { return };
                store.import_dir_once().await;
            }
        })
    }
}

impl Images for ImageStore {
    type Error = ImageError;

    fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
    ) -> impl Future<Output = Result<ImageInfo, ImageError>> + Send {
        self.ensure_image(image, policy)
    }

    fn failure_reason(err: &ImageError) -> ImageFailureReason {
        match err {
            ImageError::InvalidReference(_) => ImageFailureReason::InvalidImageName,
            ImageError::NeverPull { .. } => ImageFailureReason::ErrImageNeverPull,
            _ => ImageFailureReason::ErrImagePull,
        }
    }

    fn gc(&self, in_use: &[String]) -> impl Future<Output = Result<GcReport, ImageError>> + Send {
        self.gc_with(in_use, false)
    }

    fn import_failures(&self) -> Option<Vec<(String, String)>> {
        let st = self.imports.try_lock().ok()?;
        let dir = self.cfg.import_dir.as_ref()?;
        // an archive removed from the import dir no longer fails
        Some(
            st.failures()
                .into_iter()
                .filter(|(name, _)| dir.join(name).exists())
                .collect(),
        )
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
