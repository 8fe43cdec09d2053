//! Container logs in the CRI format kubelet writes:
//! `<RFC3339Nano> <stdout|stderr> <F|P> <message>` — `P` marks a partial line
//! (a chunk of a longer line), `F` the end of a line. Files rotate by size.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
            fs::create_dir_all(d)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1024),
            max_files: max_files.max(1),
        })
    }

    /// Write one record.
    pub fn record(&mut self, stream: &str, partial: bool, msg: &[u8]) -> io::Result<()> {
        let ts = jiff::Timestamp::now();
        let mut line =
            format!("{ts:.9} {stream} {} ", if partial { 'P' } else { 'F' }).into_bytes();
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
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Copy a stream into the log until EOF, splitting it into records.
pub fn pump(mut from: impl Read, stream: &'static str, log: Arc<Mutex<LogWriter>>) {
    let mut buf = vec![0u8; 8192];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut w = log.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let _ = w.record(stream, false, &pending[..i]);
            pending.drain(..=i);
        }
        while pending.len() >= MAX_CHUNK {
            let _ = w.record(stream, true, &pending[..MAX_CHUNK]);
            pending.drain(..MAX_CHUNK);
        }
    }
    if !pending.is_empty() {
        let mut w = log.lock().unwrap_or_else(|p| p.into_inner());
        // a last line without newline: partial, as the runtime saw it
        let _ = w.record(stream, true, &pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_partial_lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let log = Arc::new(Mutex::new(LogWriter::open(&p, 2048, 3).unwrap()));
        let mut data = b"hello\nworld\n".to_vec();
        data.extend(vec![b'x'; MAX_CHUNK + 10]);
        pump(&data[..], "stdout", log.clone());
        let text = fs::read_to_string(&p).unwrap()
            + &fs::read_to_string(format!("{}.1", p.display())).unwrap_or_default()
            + &fs::read_to_string(format!("{}.2", p.display())).unwrap_or_default();
        assert!(text.contains(" stdout F hello\n"));
        assert!(text.contains(" stdout F world\n"));
        assert!(text.contains(" stdout P xxx"));
        // rotated: at most 3 files, the current one small
        assert!(fs::metadata(&p).unwrap().len() <= 2048 + MAX_CHUNK as u64 + 64);
        assert!(!Path::new(&format!("{}.3", p.display())).exists());
        let first = fs::read_to_string(&p).unwrap();
        let ts = first.split(' ').next().unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    }
}
