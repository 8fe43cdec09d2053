//! `berth doctor`: check this host for berth and print what works, what is
//! degraded (and what that means for pods) and what is missing. Exit 0 when
//! berth can run pods here (perhaps degraded), 1 when something it needs is
//! missing. Reads only; changes nothing.

use std::path::{Path, PathBuf};

use super::{Check, HostReport, Level, Roots, probe};
use crate::config::{self, AgentArgs};

/// The package's config file, used when no `--config` is given.
const PACKAGE_CONFIG: &str = "/etc/berth/config.yaml";

pub fn run(args: &AgentArgs) -> i32 {
    let mut args = args.clone();
    if args.config.is_none() && Path::new(PACKAGE_CONFIG).exists() {
        args.config = Some(PACKAGE_CONFIG.into());
    }
    let (config_check, state_dir) = match config::resolve(&args, &config::Host::real()) {
        Ok(c) => (
            Check::new(
                "configuration",
                Level::Ok,
                format!(
                    "{} (instance {}, {} source(s))",
                    args.config.as_deref().unwrap_or("flags and environment"),
                    c.instance,
                    c.manifests.len() + usize::from(c.git.is_some())
                ),
                "",
            ),
            c.state_dir,
        ),
        Err(e) => (
            Check::new(
                "configuration",
                Level::Degraded,
                crate::sources::git::error_chain(&e),
                "the agent refuses to start with this configuration (exit 64); the checks below use the default state dir",
            ),
            PathBuf::from(format!(
                "/var/lib/{}",
                args.instance.as_deref().unwrap_or("berth")
            )),
        ),
    };
    let https = berth_image::pull::Puller::new(Default::default()).https_available();
    let mut report = probe(&Roots::real(state_dir), https);
    report.checks.insert(0, config_check);
    report.checks.extend(systemd_unit("berth.service"));
    print!("{}", render(&report));
    i32::from(report.worst() == Level::Missing)
}

/// The report as text: one line per check, the meaning under each problem,
/// and a summary line.
pub fn render(report: &HostReport) -> String {
    let mut out = String::new();
    for c in &report.checks {
        out.push_str(&format!("{:<9} {}: {}\n", c.level.word(), c.name, c.found));
        if !c.meaning.is_empty() {
            out.push_str(&format!("{:<9}   -> {}\n", "", c.meaning));
        }
    }
    let count = |l: Level| report.checks.iter().filter(|c| c.level == l).count();
    let verdict = match report.worst() {
        Level::Missing => "berth cannot run pods on this host until the missing features are there",
        Level::Degraded => "berth runs here in degraded mode (see the lines marked degraded)",
        _ => "berth has everything it needs here",
    };
    out.push_str(&format!(
        "summary: {} ok, {} degraded, {} missing: {verdict}\n",
        count(Level::Ok),
        count(Level::Degraded),
        count(Level::Missing)
    ));
    out
}

/// The unit's settings that keep containers alive across agent restarts,
/// when systemd runs this host and the unit is installed.
fn systemd_unit(unit: &str) -> Vec<Check> {
    if !Path::new("/run/systemd/system").exists() {
        return vec![Check::new(
            "systemd",
            Level::Info,
            "not running under systemd",
            "",
        )];
    }
    let out = std::process::Command::new("systemctl")
        .args([
            "show",
            unit,
            "--property=LoadState,ActiveState,Delegate,KillMode,Restart,LimitNOFILE",
        ])
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            return vec![Check::new(
                "systemd unit",
                Level::Info,
                "systemctl show failed",
                "",
            )];
        }
    };
    unit_checks(unit, &text)
}

/// Checks from `systemctl show` output (`Key=value` lines).
pub fn unit_checks(unit: &str, show: &str) -> Vec<Check> {
    let get = |k: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    if get("LoadState") != "loaded" {
        return vec![Check::new(
            "systemd unit",
            Level::Info,
            format!("{unit} is not installed"),
            "",
        )];
    }
    let want = [
        (
            "Delegate",
            "yes",
            "berth's cgroups under the unit are not delegated to it: systemd may move or reset them",
        ),
        (
            "KillMode",
            "process",
            "stopping or restarting the unit kills every container's supervisor (containers are adopted without logs)",
        ),
        (
            "Restart",
            "always",
            "an agent crash is not followed by a restart",
        ),
    ];
    let mut checks: Vec<Check> = want
        .into_iter()
        .map(|(k, v, meaning)| {
            let got = get(k);
            let name = format!("{unit} {k}");
            if got == v {
                Check::new(&name, Level::Ok, got, "")
            } else {
                Check::new(&name, Level::Degraded, format!("{got} (want {v})"), meaning)
            }
        })
        .collect();
    let nofile: u64 = get("LimitNOFILE").parse().unwrap_or(u64::MAX);
    checks.push(if nofile >= 65_536 {
        Check::new(
            &format!("{unit} LimitNOFILE"),
            Level::Ok,
            get("LimitNOFILE"),
            "",
        )
    } else {
        Check::new(
            &format!("{unit} LimitNOFILE"),
            Level::Degraded,
            nofile.to_string(),
            "below 65536: many pods, log files and API clients run out of descriptors",
        )
    });
    checks.push(Check::new(
        &format!("{unit} state"),
        Level::Info,
        get("ActiveState"),
        "",
    ));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_settings_from_systemctl_show() {
        let good = "LoadState=loaded\nActiveState=active\nDelegate=yes\nKillMode=process\nRestart=always\nLimitNOFILE=1048576\n";
        let c = unit_checks("berth.service", good);
        assert!(c.iter().all(|c| c.level != Level::Degraded), "{c:?}");
        let bad = "LoadState=loaded\nActiveState=active\nDelegate=no\nKillMode=control-group\nRestart=no\nLimitNOFILE=1024\n";
        let c = unit_checks("berth.service", bad);
        let degraded: Vec<_> = c.iter().filter(|c| c.level == Level::Degraded).collect();
        assert_eq!(degraded.len(), 4, "{c:?}");
        assert!(degraded[1].meaning.contains("kills every container"));
        let c = unit_checks("berth.service", "LoadState=not-found\n");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].level, Level::Info);
    }

    #[test]
    fn render_says_what_it_means() {
        let r = HostReport {
            checks: vec![
                Check::new("kernel", Level::Ok, "6.1", ""),
                Check::new(
                    "cgroup controller memory",
                    Level::Degraded,
                    "absent",
                    "memory limits are not enforced",
                ),
            ],
        };
        let t = render(&r);
        assert!(t.contains("ok        kernel: 6.1\n"), "{t}");
        assert!(t.contains("-> memory limits are not enforced"), "{t}");
        assert!(t.ends_with("summary: 1 ok, 1 degraded, 0 missing: berth runs here in degraded mode (see the lines marked degraded)\n"), "{t}");
    }
}
