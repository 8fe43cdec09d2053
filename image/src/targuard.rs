//! A reader that bounds the metadata entries of a tar stream before the
//! `tar` crate sees them.
//!
//! The `tar` crate reads GNU long names/links and PAX extended headers into
//! memory whole, whatever size their header declares: a hostile layer
//! declaring a 4 GiB long name would take the agent's memory with it. This
//! reader walks the stream's headers as they pass (tracking each entry's
//! data and padding, and PAX `size` overrides) and fails the read when a
//! metadata entry declares more than its bound.

use std::io::{self, Read};

/// Largest GNU long name/link or PAX header accepted (real ones are a few
/// hundred bytes; PAX xattrs such as file capabilities stay small too).
pub const MAX_META_BYTES: u64 = 1 << 20;

const BLOCK: usize = 512;

pub struct TarGuard<R> {
    inner: R,
    max_meta: u64,
    /// The header block being assembled (or served back).
    hdr: [u8; BLOCK],
    hdr_len: usize,
    hdr_served: usize,
    /// Data and padding of the current entry still to pass through.
    skip: u64,
    /// A PAX header's body, collected to find a `size` override.
    pax: Option<Vec<u8>>,
    pax_data_left: u64,
    /// `size` from a local PAX header, for the next entry.
    size_override: Option<u64>,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_META_BYTES)
    }

    pub fn with_limit(inner: R, max_meta: u64) -> Self {
        TarGuard {
            inner,
            max_meta,
            hdr: [0; BLOCK],
            hdr_len: 0,
            hdr_served: BLOCK,
            skip: 0,
            pax: None,
            pax_data_left: 0,
            size_override: None,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Inspect a complete header block and set up the entry that follows.
    fn on_header(&mut self) -> io::Result<()> {
        if self.hdr.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive marker block
        }
        let kind = self.hdr[156];
        let declared = parse_size(&self.hdr[124..136]).ok_or_else(|| bad("bad size field"))?;
        let is_meta = matches!(kind, b'L' | b'K' | b'x' | b'g');
        let size = if is_meta {
            declared
        } else {
            self.size_override.take().unwrap_or(declared)
        };
        if is_meta && size > self.max_meta {
            return Err(bad(&format!(
                "tar metadata entry (type {:?}) of {size} bytes exceeds the {} byte bound",
                kind as char, self.max_meta
            )));
        }
        self.pax = (kind == b'x').then(Vec::new);
        self.pax_data_left = if kind == b'x' { size } else { 0 };
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }

    fn collect_pax(&mut self, data: &[u8]) {
        let Some(p) = self.pax.as_mut() else { return };
        let take = (self.pax_data_left as usize).min(data.len());
        p.extend_from_slice(&data[..take]);
        self.pax_data_left -= take as u64;
        if self.pax_data_left == 0 {
            let body = self.pax.take().unwrap_or_default();
            self.size_override = pax_size(&body);
        }
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.hdr_served < self.hdr_len {
            let n = (self.hdr_len - self.hdr_served).min(out.len());
            out[..n].copy_from_slice(&self.hdr[self.hdr_served..self.hdr_served + n]);
            self.hdr_served += n;
            return Ok(n);
        }
        if self.skip > 0 {
            let want = (self.skip.min(out.len() as u64)) as usize;
            let n = self.inner.read(&mut out[..want])?;
            self.skip -= n as u64;
            self.collect_pax(&out[..n]);
            return Ok(n);
        }
        // At a header boundary: assemble the next block whole.
        self.hdr_len = 0;
        while self.hdr_len < BLOCK {
            let n = self.inner.read(&mut self.hdr[self.hdr_len..])?;
            if n == 0 {
                break;
            }
            self.hdr_len += n;
        }
        self.hdr_served = 0;
        if self.hdr_len == 0 {
            return Ok(0);
        }
        if self.hdr_len == BLOCK {
            self.on_header()?;
        }
        self.read(out)
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A tar numeric field: octal text, or GNU base-256 (high bit set).
fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == 0)
        .take_while(|b| (b'0'..=b'7').contains(b))
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

/// The `size` record of a PAX header body (`"<len> size=<n>\n"` records).
fn pax_size(body: &[u8]) -> Option<u64> {
    let mut rest = body;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return found;
        }
        let rec = &rest[sp + 1..len];
        if let Some(v) = rec.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            found = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn passes_ordinary_archives_through_unchanged() {
        let long = "d/".repeat(80) + "file"; // needs a GNU long name
        let data = archive(&[
            ("a", b"hello".to_vec()),
            (&long, vec![7u8; 3000]),
            ("b", Vec::new()),
        ]);
        for chunk in [1usize, 7, 512, 4096] {
            let mut g = TarGuard::new(&data[..]);
            let mut out = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = g.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            assert_eq!(out, data, "chunk {chunk}");
        }
        let mut ar = tar::Archive::new(TarGuard::new(&data[..]));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["a".to_string(), long, "b".to_string()]);
    }

    #[test]
    fn attack_huge_long_name_is_refused_before_it_is_buffered() {
        // A GNU long-name header declaring 4 GiB, followed by nothing.
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(4 << 30);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.extend_from_slice(&[b'a'; 4096]);
        let mut ar = tar::Archive::new(TarGuard::new(&data[..]));
        let err = ar.entries().unwrap().next().unwrap().err().unwrap();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn pax_size_overrides_are_followed() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"1000"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("big").unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        let mut raw = b.get_ref().clone(); // no end-of-archive marker yet
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&[b'x'; 1024]); // 1000 bytes + padding
        // then a normal entry, which the guard must find at the right offset
        raw.extend_from_slice(&archive(&[("after", b"z".to_vec())]));
        let mut ar = tar::Archive::new(TarGuard::new(&raw[..]));
        let got: Vec<(String, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(
            got,
            vec![("big".to_string(), 1000), ("after".to_string(), 1)]
        );
        assert_eq!(pax_size(b"11 size=42\n"), Some(42));
    }
}
