//! The read side of a layer unpack, on a thread of its own.
//!
//! Unpacking a layer is two kinds of work: reading the blob, hashing it and
//! decompressing it (user-space CPU), and applying the tar entries (mostly
//! system calls). [`LayerStream`] runs the first on a decode thread and
//! hands the uncompressed bytes to the unpacker through a bounded channel,
//! so both proceed at once on a multi-core host; the unpacker hashes the
//! uncompressed stream as it reads it (the diff ID).
//!
//! # Guarantees
//! - Bounded: at most [`DEPTH`] chunks of [`CHUNK`] bytes are in flight;
//!   buffers are recycled, not reallocated per chunk.
//! - The decode thread ends when the blob is read, on its first error
//!   (passed to the reader as its last item), or as soon as the reader is
//!   dropped (its next send fails); dropping a [`LayerStream`] joins it, so
//!   no thread outlives a failed unpack.
//! - Digests are only handed out by [`LayerStream::finish`], after the
//!   whole blob was read: an early end of the uncompressed stream cannot
//!   verify a blob it did not read to its end.
//! - An uncompressed blob is hashed once: its blob digest is its diff ID.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use sha2::{Digest as _, Sha256};

use crate::content::Digest;
use crate::unpack::Compression;

/// Bytes per chunk handed from the decode thread to the unpacker.
pub const CHUNK: usize = 128 * 1024;
/// Chunks in flight between the two.
pub const DEPTH: usize = 4;

/// The uncompressed bytes of a layer blob, decoded on a thread of its own.
pub struct LayerStream {
    rx: Option<Receiver<io::Result<Vec<u8>>>>,
    recycle: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    /// Hash of the uncompressed bytes read so far (`None` when the blob is
    /// not compressed: the decode thread's hash is both digests).
    diff: Option<Sha256>,
    done: bool,
    thread: Option<JoinHandle<Sha256>>,
}

/// The two digests of a blob read to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDigests {
    pub blob: Digest,
    pub diff: Digest,
}

struct Hashing<'a, R> {
    inner: R,
    h: &'a mut Sha256,
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

impl LayerStream {
    /// Start decoding `file` (positioned at the blob's first byte).
    pub fn start(file: File, comp: Compression) -> io::Result<LayerStream> {
        let (tx, rx) = sync_channel(DEPTH);
        let (recycle, spare) = channel();
        let thread = std::thread::Builder::new()
            .name("berth-layer-read".into())
            .spawn(move || decode(file, comp, tx, spare))?;
        Ok(LayerStream {
            rx: Some(rx),
            recycle,
            cur: Vec::new(),
            pos: 0,
            diff: (comp != Compression::None).then(Sha256::new),
            done: false,
            thread: Some(thread),
        })
    }

    /// Read what is left (padding after the tar end marker counts towards
    /// the digests), wait for the decode thread and return both digests.
    pub fn finish(mut self) -> io::Result<StreamDigests> {
        io::copy(&mut self, &mut io::sink())?;
        let blob = self
            .thread
            .take()
            .expect("decode thread joined once")
            .join()
            .map_err(|_| io::Error::other("layer decode thread panicked"))?;
        let blob = Digest::from_hasher(blob);
        let diff = match self.diff.take() {
            Some(h) => Digest::from_hasher(h),
            None => blob.clone(),
        };
        Ok(StreamDigests { blob, diff })
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            let next = self.rx.as_ref().and_then(|rx| rx.recv().ok());
            match next {
                Some(Ok(chunk)) => {
                    let old = std::mem::replace(&mut self.cur, chunk);
                    self.pos = 0;
                    if old.capacity() == CHUNK {
                        let _ = self.recycle.send(old);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The sender is gone after the last chunk.
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        if let Some(h) = self.diff.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl Drop for LayerStream {
    fn drop(&mut self) {
        // Closing the channel first makes a blocked send fail, so the join
        // cannot wait on the reader.
        self.rx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The decode thread: read, hash and decompress `file` into chunks.
/// Returns the hash of the blob's bytes as read.
fn decode(
    file: File,
    comp: Compression,
    tx: SyncSender<io::Result<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
) -> Sha256 {
    let mut h = Sha256::new();
    let res = (|| -> io::Result<()> {
        let raw = Hashing {
            inner: BufReader::with_capacity(256 * 1024, file),
            h: &mut h,
        };
        let mut dec: Box<dyn Read + '_> = match comp {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Zstd => Box::new(zstd::Decoder::new(raw)?),
        };
        loop {
            let mut chunk = spare.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
            chunk.resize(CHUNK, 0);
            let mut filled = 0;
            while filled < CHUNK {
                match dec.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if filled == 0 {
                return Ok(());
            }
            chunk.truncate(filled);
            if tx.send(Ok(chunk)).is_err() {
                return Ok(()); // the reader is gone: nothing more to do
            }
        }
    })();
    if let Err(e) = res {
        let _ = tx.send(Err(e));
    }
    h
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use super::*;

    /// Bytes that gzip cannot shrink much: several chunks' worth in flight.
    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn file_with(dir: &std::path::Path, data: &[u8]) -> File {
        let p = dir.join("blob");
        std::fs::write(&p, data).unwrap();
        File::open(p).unwrap()
    }

    #[test]
    fn many_chunks_round_trip_with_both_digests() {
        let t = tempfile::tempdir().unwrap();
        let raw = noise(CHUNK * DEPTH * 3 + 1234);
        for (comp, blob) in [
            (Compression::Gzip, gzip(&raw)),
            (Compression::Zstd, zstd::encode_all(&raw[..], 1).unwrap()),
            (Compression::None, raw.clone()),
        ] {
            let mut s = LayerStream::start(file_with(t.path(), &blob), comp).unwrap();
            let mut got = vec![0u8; 1000];
            s.read_exact(&mut got).unwrap();
            assert_eq!(got, raw[..1000]);
            let d = s.finish().unwrap();
            assert_eq!(d.blob, Digest::of(&blob), "{comp:?}");
            assert_eq!(d.diff, Digest::of(&raw), "{comp:?}");
        }
    }

    #[test]
    fn corrupt_middle_of_a_blob_is_an_error_and_yields_no_digests() {
        let t = tempfile::tempdir().unwrap();
        let raw = noise(CHUNK * DEPTH * 2);
        let mut blob = gzip(&raw);
        let mid = blob.len() / 2;
        for b in &mut blob[mid..mid + 64] {
            *b ^= 0x5a;
        }
        let mut s = LayerStream::start(file_with(t.path(), &blob), Compression::Gzip).unwrap();
        let mut sink = Vec::new();
        assert!(s.read_to_end(&mut sink).is_err());
        assert!(sink.len() < raw.len());
        let mut s = LayerStream::start(file_with(t.path(), &blob), Compression::Gzip).unwrap();
        let mut head = [0u8; 512];
        s.read_exact(&mut head).unwrap();
        assert!(
            s.finish().is_err(),
            "finish reads to the end and sees the error"
        );
    }

    #[test]
    fn dropping_the_reader_early_ends_the_decode_thread() {
        let t = tempfile::tempdir().unwrap();
        // far more than the channel holds: the decode thread blocks on send
        let raw = noise(CHUNK * DEPTH * 16);
        let blob = gzip(&raw);
        let started = Instant::now();
        let mut s = LayerStream::start(file_with(t.path(), &blob), Compression::Gzip).unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).unwrap();
        std::thread::sleep(Duration::from_millis(50)); // let it fill the channel
        drop(s); // joins the thread: returns only once it has ended
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
