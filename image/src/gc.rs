//! Image garbage collection, kubelet style.
//!
//! When the filesystem holding the store is at least `gc_high_percent`
//! full, images not in use are removed, least recently used first, until
//! usage is below `gc_low_percent`; after each removal, blobs and layer
//! directories no remaining image references are deleted. `in_use` entries
//! may be references (normalised here) or image ids (`sha256:<config>`).
//! Pulls and imports in flight hold a shared lease, so GC never deletes
//! content they are about to reference; a periodic GC that finds a pull in
//! flight is skipped (the next pass will do it).

use std::collections::BTreeSet;
use std::path::Path;

use berth_contract::GcReport;

use crate::content::Digest;
use crate::error::ImageError;
use crate::fsutil::{du, remove_tree_atomic};
use crate::reference::Reference;
use crate::store::ImageStore;

/// Percent of the filesystem holding `p` in use, as `df` computes it.
pub fn disk_usage_percent(p: &Path) -> Result<f64, ImageError> {
    let s = nix::sys::statvfs::statvfs(p).map_err(|source| ImageError::DiskUsage {
        path: p.to_path_buf(),
        source,
    })?;
    let used = s.blocks().saturating_sub(s.blocks_free()) as f64;
    let avail = s.blocks_available() as f64;
    if used + avail == 0.0 {
        return Ok(0.0);
    }
    Ok(100.0 * used / (used + avail))
}

impl ImageStore {
    /// `force`: remove every image not in use and sweep, whatever the disk
    /// usage, waiting for pulls in flight (for tests and operators).
    pub async fn gc_with(&self, in_use: &[String], force: bool) -> Result<GcReport, ImageError> {
        let root = self.root().to_path_buf();
        let high = f64::from(self.cfg.gc_high_percent);
        let low = f64::from(self.cfg.gc_low_percent);
        let mut usage = disk_usage_percent(&root)?;
        let mut report = GcReport::default();
        if !force && usage < high {
            return Ok(report);
        }
        let _excl = if force {
            self.gc_lock.write().await
        } else {
            match self.gc_lock.try_write() {
                Ok(g) => g,
                Err(_) => {
                    tracing::debug!("image GC deferred: a pull or import is in flight");
                    return Ok(report);
                }
            }
        };
        let keep: BTreeSet<String> = in_use
            .iter()
            .map(|s| match Reference::parse(s) {
                Ok(r) if !s.starts_with("sha256:") => r.to_string(),
                _ => s.clone(),
            })
            .collect();
        tracing::info!(usage = format!("{usage:.1}%"), high, low, force, "image GC");
        report.freed_bytes += self.sweep()?;
        usage = disk_usage_percent(&root)?;
        let mut candidates: Vec<(String, u64)> = self
            .index
            .all()
            .into_iter()
            .filter(|(k, r)| !keep.contains(k) && !keep.contains(&r.config))
            .map(|(k, r)| (k, r.last_used))
            .collect();
        candidates.sort_by_key(|(_, t)| *t);
        for (key, _) in candidates {
            if !force && usage < low {
                break;
            }
            // No per-image lock needed: every ensure and import holds the
            // shared lease (taken before any image lock) that this
            // exclusive lock excludes.
            self.index.remove(&key)?;
            tracing::info!(reference = %key, "image GC removed image");
            report.removed_images.push(key);
            report.freed_bytes += self.sweep()?;
            usage = disk_usage_percent(&root)?;
        }
        Ok(report)
    }

    /// Delete blobs and layers no index entry references. Caller holds the GC lock.
    fn sweep(&self) -> Result<u64, ImageError> {
        let mut blobs = BTreeSet::new();
        let mut chains = BTreeSet::new();
        for r in self.index.all().values() {
            blobs.insert(r.manifest.clone());
            blobs.insert(r.config.clone());
            blobs.extend(r.extra_blobs.iter().cloned());
            for l in &r.layers {
                blobs.insert(l.blob.clone());
                chains.insert(l.chain_id.trim_start_matches("sha256:").to_string());
            }
        }
        let mut freed = 0;
        let content_err = |source| ImageError::Content {
            reference: String::new(),
            what: "GC sweep",
            source,
        };
        for d in self.content.list().map_err(content_err)? {
            if !blobs.contains(&d.to_string()) {
                freed += self.content.delete(&d).map_err(content_err)?;
            }
        }
        let layers = self.root().join("layers");
        let rd = std::fs::read_dir(&layers).map_err(|source| ImageError::Io {
            op: "read dir",
            path: layers.clone(),
            source,
        })?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if chains.contains(&name) || Digest::parse(&format!("sha256:{name}")).is_err() {
                continue;
            }
            let p = e.path();
            let size = du(&p);
            remove_tree_atomic(&p, &self.tmp_dir()).map_err(|source| ImageError::Io {
                op: "remove layer",
                path: p.clone(),
                source,
            })?;
            tracing::debug!(layer = %name, size, "image GC removed layer");
            freed += size;
        }
        Ok(freed)
    }
}
