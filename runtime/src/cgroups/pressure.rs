//! Pressure stall information (PSI) of a cgroup: the share of time some (or
//! all) of its tasks waited for CPU, memory or I/O. cgroup v2 only, and only
//! where the kernel has PSI (`CONFIG_PSI`, not `psi=0`); absent, the readers
//! return `None` and berth reports PSI as an unavailable optional feature.

use std::fs;
use std::path::Path;

use super::{Cgroups, Version};

/// The resources PSI reports on, as named in the `<resource>.pressure` files.
pub const RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

/// One line (`some` or `full`) of a pressure file.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stall {
    /// Percent of the last 10 s.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time since the cgroup was made, microseconds.
    pub total_us: u64,
}

/// A `<resource>.pressure` file: `some` always, `full` when the kernel has it
/// for the resource (not for cpu on older kernels).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    pub some: Stall,
    pub full: Option<Stall>,
}

/// Parse a pressure file's text; `None` when it has no `some` line.
pub fn parse(text: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for line in text.lines().take(4) {
        let mut it = line.split_whitespace();
        let kind = it.next();
        let mut st = Stall::default();
        for kv in it {
            let (k, v) = kv.split_once('=')?;
            match k {
                "avg10" => st.avg10 = v.parse().ok()?,
                "avg60" => st.avg60 = v.parse().ok()?,
                "avg300" => st.avg300 = v.parse().ok()?,
                "total" => st.total_us = v.parse().ok()?,
                _ => {}
            }
        }
        match kind {
            Some("some") => some = Some(st),
            Some("full") => full = Some(st),
            _ => {}
        }
    }
    Some(Pressure { some: some?, full })
}

/// Whether this kernel reports PSI at all (`/proc/pressure/cpu` readable).
pub fn kernel_has_psi(proc_root: &Path) -> bool {
    fs::read_to_string(proc_root.join("pressure/cpu")).is_ok_and(|s| parse(&s).is_some())
}

/// PSI of a cgroup, resource by resource (`RESOURCES` order); empty on v1
/// or when the kernel has no PSI.
pub fn of(cg: &Cgroups, path: &str) -> Vec<(&'static str, Pressure)> {
    if cg.version != Version::V2 {
        return Vec::new();
    }
    let dir = cg.root.join(path.trim_start_matches('/'));
    RESOURCES
        .iter()
        .filter_map(|r| {
            let text = fs::read_to_string(dir.join(format!("{r}.pressure"))).ok()?;
            Some((*r, parse(&text)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_some_and_full() {
        let p = parse(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=12345\nfull avg10=0.50 avg60=0.10 avg300=0.00 total=678\n",
        )
        .unwrap();
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.total_us, 12345);
        assert_eq!(p.full.unwrap().total_us, 678);
        let cpu = parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=9\n").unwrap();
        assert!(cpu.full.is_none());
        assert!(parse("").is_none());
        assert!(parse("some avg10=x\n").is_none());
        assert!(parse("full avg10=0.00 avg60=0.00 avg300=0.00 total=1\n").is_none());
    }

    #[test]
    fn reads_a_v2_cgroup_and_nothing_on_v1() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpu memory").unwrap();
        let d = t.path().join("btx/pod");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("memory.pressure"),
            "some avg10=2.00 avg60=1.00 avg300=0.50 total=100\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=50\n",
        )
        .unwrap();
        let cg = Cgroups::detect(t.path());
        let p = of(&cg, "/btx/pod");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "memory");
        assert_eq!(p[0].1.some.total_us, 100);
        let v1 = tempfile::tempdir().unwrap();
        fs::create_dir_all(v1.path().join("memory/btx/pod")).unwrap();
        assert!(of(&Cgroups::detect(v1.path()), "/btx/pod").is_empty());
        let proc_root = tempfile::tempdir().unwrap();
        assert!(!kernel_has_psi(proc_root.path()));
        fs::create_dir_all(proc_root.path().join("pressure")).unwrap();
        fs::write(
            proc_root.path().join("pressure/cpu"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1\n",
        )
        .unwrap();
        assert!(kernel_has_psi(proc_root.path()));
    }
}
