//! Content-addressed blob store.
//!
//! ```text
//! <root>/blobs/sha256/<hex>     committed blobs, verified before commit
//! <root>/ingest/<unique>        blobs being written (cleared at open)
//! ```
//!
//! Lifecycle: `writer()` -> write bytes -> `commit(expected)`. Commit hashes
//! what was written, refuses a mismatch, fsyncs the file, renames it to its
//! digest and fsyncs the directory, so a crash leaves either no blob or a
//! whole one. Readers of small blobs (manifests, configs) use
//! [`ContentStore::read_verified`], which re-hashes and deletes a blob that
//! does not match its name (bit rot, truncation), so it is fetched again.
//! Layers are verified while they are unpacked (see `unpack`).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWrite;

use crate::fsutil::{fsync_dir, unique_name};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("invalid digest {digest:?} (expected sha256:<64 hex>)")]
    InvalidDigest { digest: String },
    #[error("blob {expected} does not match its content (got {actual}, {size} bytes) at {path}")]
    DigestMismatch {
        expected: Digest,
        actual: Digest,
        size: u64,
        path: PathBuf,
    },
    #[error("blob {digest} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is not in the store")]
    Missing { digest: Digest },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContentError {
    move |source| ContentError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A sha256 digest, displayed as `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, ContentError> {
        match s.strip_prefix("sha256:") {
            Some(h)
                if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(Digest { hex: h.to_string() })
            }
            _ => Err(ContentError::InvalidDigest {
                digest: s.to_string(),
            }),
        }
    }
    pub fn from_hasher(h: Sha256) -> Self {
        Digest {
            hex: hex::encode(h.finalize()),
        }
    }
    pub fn of(data: &[u8]) -> Self {
        Digest {
            hex: hex::encode(Sha256::digest(data)),
        }
    }
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Open (creating) the store under `root`; leftovers of interrupted writes are removed.
    pub fn open(root: &Path) -> Result<Self, ContentError> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        if ingest.exists() {
            fs::remove_dir_all(&ingest).map_err(io_err("clear", &ingest))?;
        }
        fs::create_dir_all(&ingest).map_err(io_err("create", &ingest))?;
        Ok(ContentStore { blobs, ingest })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(&d.hex)
    }

    pub fn contains(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Every committed blob.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(io_err("read dir", &self.blobs))? {
            let e = e.map_err(io_err("read dir", &self.blobs))?;
            if let Ok(d) = Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())) {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub fn delete(&self, d: &Digest) -> Result<u64, ContentError> {
        let p = self.path(d);
        let size = fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        match fs::remove_file(&p) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_err("remove", &p)(e)),
        }
    }

    /// Start writing a blob into the ingest area.
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        let path = self.ingest.join(unique_name("blob"));
        let file = File::create(&path).map_err(io_err("create", &path))?;
        Ok(BlobWriter {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
            blobs: self.blobs.clone(),
        })
    }

    /// Async variant for network streams (`oci-client` writes into it).
    pub async fn async_writer(&self) -> Result<AsyncBlobWriter, ContentError> {
        let w = self.writer()?;
        Ok(AsyncBlobWriter {
            file: tokio::fs::File::from_std(
                w.file
                    .as_ref()
                    .expect("fresh writer")
                    .try_clone()
                    .map_err(io_err("dup", &w.path))?,
            ),
            inner: w,
        })
    }

    /// Write `data` as a blob; with `expected`, refuse anything else.
    pub fn put(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest, ContentError> {
        let actual = Digest::of(data);
        if let Some(e) = expected
            && *e != actual
        {
            return Err(ContentError::DigestMismatch {
                expected: e.clone(),
                actual,
                size: data.len() as u64,
                path: PathBuf::from("<memory>"),
            });
        }
        if self.contains(&actual) {
            return Ok(actual);
        }
        let mut w = self.writer()?;
        w.write_all(data).map_err(io_err("write", &w.path))?;
        w.commit(Some(&actual), None)
    }

    /// Move an existing file (on the same filesystem) into the store after hashing it.
    pub fn put_file(&self, src: &Path, expected: Option<&Digest>) -> Result<Digest, ContentError> {
        let mut f = File::open(src).map_err(io_err("open", src))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io_err("read", src))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        let actual = Digest::from_hasher(h);
        if let Some(e) = expected
            && *e != actual
        {
            return Err(ContentError::DigestMismatch {
                expected: e.clone(),
                actual,
                size,
                path: src.to_path_buf(),
            });
        }
        let dst = self.path(&actual);
        if dst.exists() {
            return Ok(actual);
        }
        f.sync_all().map_err(io_err("fsync", src))?;
        fs::rename(src, &dst).map_err(io_err("rename into store", src))?;
        fsync_dir(&self.blobs).map_err(io_err("fsync", &self.blobs))?;
        Ok(actual)
    }

    /// Read a whole (small) blob and check it against its digest. A corrupt
    /// blob is deleted and reported, never returned.
    pub fn read_verified(&self, d: &Digest) -> Result<Vec<u8>, ContentError> {
        let p = self.path(d);
        let data = match fs::read(&p) {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContentError::Missing { digest: d.clone() });
            }
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        let actual = Digest::of(&data);
        if actual != *d {
            tracing::warn!(blob = %d, %actual, "corrupt blob removed from the store");
            let _ = fs::remove_file(&p);
            return Err(ContentError::DigestMismatch {
                expected: d.clone(),
                actual,
                size: data.len() as u64,
                path: p,
            });
        }
        Ok(data)
    }
}

/// A blob being written. Dropped without `commit`, it removes its temp file.
pub struct BlobWriter {
    file: Option<File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .file
            .as_mut()
            .expect("writer not committed")
            .write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("writer not committed").flush()
    }
}

impl BlobWriter {
    /// Verify, fsync and rename into place. Returns the digest.
    ///
    /// # Errors
    /// `DigestMismatch` / `SizeMismatch` when the content is not what was expected;
    /// the temp file is removed in every error case.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some(e) = expected
            && *e != actual
        {
            return Err(ContentError::DigestMismatch {
                expected: e.clone(),
                actual,
                size: self.size,
                path: self.path.clone(),
            });
        }
        if let Some(s) = expected_size
            && s != self.size
        {
            return Err(ContentError::SizeMismatch {
                digest: actual,
                expected: s,
                actual: self.size,
            });
        }
        let file = self.file.take().expect("writer not committed");
        file.sync_all().map_err(io_err("fsync", &self.path))?;
        drop(file);
        let dst = self.blobs.join(&actual.hex);
        fs::rename(&self.path, &dst).map_err(io_err("rename into store", &self.path))?;
        fsync_dir(&self.blobs).map_err(io_err("fsync", &self.blobs))?;
        Ok(actual)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Async wrapper: hashes exactly the bytes accepted by the file.
pub struct AsyncBlobWriter {
    file: tokio::fs::File,
    inner: BlobWriter,
}

impl AsyncBlobWriter {
    pub async fn commit(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        use tokio::io::AsyncWriteExt;
        self.file
            .flush()
            .await
            .map_err(io_err("flush", &self.inner.path))?;
        let w = self.inner;
        let expected = expected.cloned();
        tokio::task::spawn_blocking(move || w.commit(expected.as_ref(), expected_size))
            .await
            .expect("commit task panicked")
    }
}

impl AsyncWrite for AsyncBlobWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.file).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.inner.hasher.update(&buf[..n]);
                this.inner.size += n as u64;
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_verifies_and_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let d = cs.put(b"hello", None).unwrap();
        assert_eq!(
            d.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(cs.read_verified(&d).unwrap(), b"hello");

        // wrong expected digest: refused, nothing left behind
        let mut w = cs.writer().unwrap();
        w.write_all(b"evil").unwrap();
        let e = w.commit(Some(&d), None).unwrap_err();
        assert!(matches!(e, ContentError::DigestMismatch { .. }), "{e}");
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);

        // truncated content on disk is detected and removed on read
        fs::write(cs.path(&d), b"hell").unwrap();
        assert!(matches!(
            cs.read_verified(&d),
            Err(ContentError::DigestMismatch { .. })
        ));
        assert!(!cs.contains(&d));
        assert!(matches!(
            cs.read_verified(&d),
            Err(ContentError::Missing { .. })
        ));

        // a dropped writer removes its temp file
        let mut w = cs.writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn digest_parsing() {
        assert!(Digest::parse(&format!("sha256:{}", "ab".repeat(32))).is_ok());
        assert!(Digest::parse("sha256:AB").is_err());
        assert!(Digest::parse(&format!("sha512:{}", "ab".repeat(32))).is_err());
    }
}
