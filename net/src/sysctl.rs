//! The few sysctls berth needs, under an injectable `/proc/sys` root (G5).

use std::fs;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    #[error("read sysctl {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write {value} to sysctl {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

/// `/proc/sys` or a test fixture directory.
#[derive(Debug, Clone)]
pub struct Sysctl {
    root: PathBuf,
}

impl Sysctl {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key.replace('.', "/"))
    }

    pub fn get(&self, key: &str) -> Result<String, SysctlError> {
        let path = self.path(key);
        fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|source| SysctlError::Read { path, source })
    }

    /// Write `value`; returns the previous value.
    pub fn set(&self, key: &str, value: &str) -> Result<String, SysctlError> {
        let prev = self.get(key)?;
        if prev != value {
            let path = self.path(key);
            fs::write(&path, value).map_err(|source| SysctlError::Write {
                path,
                value: value.into(),
                source,
            })?;
        }
        Ok(prev)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_and_writes_under_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("net/ipv4")).unwrap();
        std::fs::write(d.path().join("net/ipv4/ip_forward"), "0\n").unwrap();
        let s = super::Sysctl::new(d.path());
        assert_eq!(s.set("net.ipv4.ip_forward", "1").unwrap(), "0");
        assert_eq!(s.get("net.ipv4.ip_forward").unwrap(), "1");
    }
}
