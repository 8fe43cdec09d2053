//! Container logs in the CRI format kubelet writes:
//! `<RFC3339Nano> <stdout|stderr> <F|P> <message>` — `P` marks a partial line
//! (a chunk of a longer line), `F` the end of a line. Files rotate by size
//! and are root-only (0600, in 0700 dirs).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Longest line chunk written as one record.
pub const MAX_CHUNK: usize = 16 * 1024;

pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    max_files: u32,
}

impl LogWriter {
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> io::Result<Self> {
        if let Some(d) = path.parent() {
            crate::layout::create_private_dirs(d)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        // root-only even when an older berth made it readable to others
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
        })
    }

    /// Write one record (no `fmt` on this path: it runs per line of output).
    pub fn record(&mut self, stream: &str, partial: bool, msg: &[u8]) -> io::Result<()> {
        let ts = crate::clock::rfc3339_nanos(std::time::SystemTime::now());
        let mut line = Vec::with_capacity(crate::clock::LEN + stream.len() + msg.len() + 5);
        line.extend_from_slice(&ts);
        line.push(b' ');
        line.extend_from_slice(stream.as_bytes());
        line.extend_from_slice(if partial { b" P " } else { b" F " });
        line.extend_from_slice(msg);
        line.push(b'\n');
        if self.size + line.len() as u64 > self.max_bytes && self.size > 0 {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `x.log` -> `x.log.1` -> ... -> `x.log.<max_files-1>`, oldest dropped.
    fn rotate(&mut self) -> io::Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.max_files > 1 {
            for i in (1..self.max_files - 1).rev() {
                let _ = fs::rename(name(i), name(i + 1));
            }
            fs::rename(&self.path, name(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One stream's bytes on their way into the log: complete lines become `F`
/// records, a line longer than [`MAX_CHUNK`] is cut into `P` records, and
/// the rest waits for more input (or for [`Splitter::finish`]).
pub struct Splitter {
    stream: &'static str,
    pending: Vec<u8>,
}

impl Splitter {
    pub fn new(stream: &'static str) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Add what was read from the stream; write the records it completes.
    pub fn feed(&mut self, data: &[u8], log: &mut LogWriter) {
        self.pending.extend_from_slice(data);
        let mut done = 0;
        while let Some(i) = self.pending[done..].iter().position(|b| *b == b'\n') {
            let _ = log.record(self.stream, false, &self.pending[done..done + i]);
            done += i + 1;
        }
        while self.pending.len() - done >= MAX_CHUNK {
            let _ = log.record(self.stream, true, &self.pending[done..done + MAX_CHUNK]);
            done += MAX_CHUNK;
        }
        self.pending.drain(..done);
        if self.pending.is_empty() {
            // a burst of output must not keep its buffer for the container's life
            self.pending = Vec::new();
        }
    }

    /// The stream ended: a last line without newline is written as partial,
    /// as the runtime saw it.
    pub fn finish(&mut self, log: &mut LogWriter) {
        if !self.pending.is_empty() {
            let _ = log.record(self.stream, true, &self.pending);
        }
        self.pending = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_partial_lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let mut log = LogWriter::open(&p, 2048, 3).unwrap();
        let mut data = b"hello\nworld\n".to_vec();
        data.extend(vec![b'x'; MAX_CHUNK + 10]);
        let mut out = Splitter::new("stdout");
        // in pieces, as reads from a pipe come
        for piece in data.chunks(1000) {
            out.feed(piece, &mut log);
        }
        out.feed(b"tail", &mut log);
        out.finish(&mut log);
        let text = fs::read_to_string(&p).unwrap()
            + &fs::read_to_string(format!("{}.1", p.display())).unwrap_or_default()
            + &fs::read_to_string(format!("{}.2", p.display())).unwrap_or_default();
        assert!(text.contains(" stdout F hello\n"));
        assert!(text.contains(" stdout F world\n"));
        assert!(text.contains(" stdout P xxx"));
        assert!(text.contains(" stdout P xxxxxxxxxxtail\n"), "{text}");
        // rotated: at most 3 files, the current one small
        assert!(fs::metadata(&p).unwrap().len() <= 2048 + MAX_CHUNK as u64 + 64);
        assert!(!Path::new(&format!("{}.3", p.display())).exists());
        for f in [p.clone(), PathBuf::from(format!("{}.1", p.display()))] {
            let mode = fs::metadata(&f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
        let first = fs::read_to_string(&p).unwrap();
        let ts = first.split(' ').next().unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    }
}
