//! Lifecycle hooks (kubelet's `lifecycle` handlers), planned purely: which
//! hook runs, against what, and how much of the grace period is left for the
//! container after a preStop hook.
//!
//! ```text
//! run ok -> postStart (blocks the next start) --fail--> FailedPostStartHook, kill
//! stop(grace): preStop (within grace) -> SIGTERM (what is left, >= 2 s) -> SIGKILL
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use berth_spec::k8s_openapi::api::core::v1::{Container, ContainerPort, LifecycleHandler};
use berth_spec::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// kubelet's minimum grace left for SIGTERM after a preStop hook used the rest.
pub const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// A hook to run, resolved against the container's ports and the pod's IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A command in the running container's namespaces.
    Exec(Vec<String>),
    /// An HTTP GET; any status below 400 is success (kubelet's hook rule is
    /// the same as a probe's).
    HttpGet {
        ip: IpAddr,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    /// Wait this long.
    Sleep(Duration),
}

/// Which hook of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    PostStart,
    PreStop,
}

impl HookKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::PostStart => "PostStartHook",
            HookKind::PreStop => "PreStopHook",
        }
    }

    /// The event reason when it fails.
    pub fn failed_reason(self) -> &'static str {
        match self {
            HookKind::PostStart => "FailedPostStartHook",
            HookKind::PreStop => "FailedPreStopHook",
        }
    }
}

/// The container's hook of this kind, if any. `pod_ip`: where an httpGet
/// without `host` goes (127.0.0.1 for a hostNetwork pod).
pub fn hook(c: &Container, kind: HookKind, pod_ip: Ipv4Addr) -> Option<Result<Hook, String>> {
    let l = c.lifecycle.as_ref()?;
    let h = match kind {
        HookKind::PostStart => l.post_start.as_ref()?,
        HookKind::PreStop => l.pre_stop.as_ref()?,
    };
    Some(resolve(h, c.ports.as_deref().unwrap_or_default(), pod_ip))
}

fn resolve(
    h: &LifecycleHandler,
    ports: &[ContainerPort],
    pod_ip: Ipv4Addr,
) -> Result<Hook, String> {
    if let Some(e) = &h.exec {
        return Ok(Hook::Exec(e.command.clone().unwrap_or_default()));
    }
    if let Some(s) = &h.sleep {
        return Ok(Hook::Sleep(Duration::from_secs(s.seconds.max(0) as u64)));
    }
    if let Some(g) = &h.http_get {
        let port = match &g.port {
            IntOrString::Int(n) => u16::try_from(*n).ok(),
            IntOrString::String(name) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .or_else(|| name.parse().ok()),
        }
        .ok_or_else(|| format!("port {:?} not found", g.port))?;
        let ip = match g.host.as_deref().filter(|h| !h.is_empty()) {
            None => IpAddr::V4(pod_ip),
            Some(h) => h
                .parse()
                .map_err(|_| format!("host {h:?} is not an IP address (names are not resolved)"))?,
        };
        let path = g
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let headers = g
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return Ok(Hook::HttpGet {
            ip,
            port,
            path,
            headers,
        });
    }
    Err("the hook has no handler (exec, httpGet or sleep)".into())
}

/// How long a hook may run: a preStop hook within the grace period; a
/// postStart hook as long (kubelet has no own bound; berth bounds every
/// wait), at least 30 s.
pub fn hook_timeout(kind: HookKind, grace: Duration) -> Duration {
    match kind {
        HookKind::PreStop => grace,
        HookKind::PostStart => grace.max(Duration::from_secs(30)),
    }
}

/// The grace left for SIGTERM after a preStop hook ran for `used`.
pub fn grace_after_hook(grace: Duration, used: Duration) -> Duration {
    grace.saturating_sub(used).max(MIN_GRACE_AFTER_HOOK)
}

/// The events of a failed hook: kubelet's `FailedPostStartHook` /
/// `FailedPreStopHook` warning and, for postStart, the kill.
pub fn on_hook_failed(kind: HookKind, container: &str, message: &str) -> Vec<super::PodAction> {
    let mut out = vec![super::PodAction::Event {
        warning: true,
        reason: kind.failed_reason(),
        message: format!(
            "{} for container {container} failed: {message}",
            kind.as_str()
        ),
    }];
    if kind == HookKind::PostStart {
        out.push(super::PodAction::Event {
            warning: false,
            reason: "Killing",
            message: format!("FailedPostStartHook: container {container} will be killed"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::{
        ExecAction, HTTPGetAction, Lifecycle, SleepAction,
    };

    use super::*;

    fn ctr(l: Lifecycle) -> Container {
        Container {
            name: "app".into(),
            lifecycle: Some(l),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);

    #[test]
    fn handlers_resolve() {
        let c = ctr(Lifecycle {
            post_start: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sh".into(), "-c".into(), "true".into()]),
                }),
                ..Default::default()
            }),
            pre_stop: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    port: IntOrString::String("http".into()),
                    path: Some("/quit".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            hook(&c, HookKind::PostStart, IP),
            Some(Ok(Hook::Exec(vec![
                "sh".into(),
                "-c".into(),
                "true".into()
            ])))
        );
        assert_eq!(
            hook(&c, HookKind::PreStop, IP),
            Some(Ok(Hook::HttpGet {
                ip: IpAddr::V4(IP),
                port: 8080,
                path: "/quit".into(),
                headers: vec![],
            }))
        );
        let c = ctr(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 3 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(hook(&c, HookKind::PostStart, IP), None);
        assert_eq!(
            hook(&c, HookKind::PreStop, IP),
            Some(Ok(Hook::Sleep(Duration::from_secs(3))))
        );
    }

    #[test]
    fn unknown_named_port_is_an_error() {
        let c = ctr(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                http_get: Some(HTTPGetAction {
                    port: IntOrString::String("admin".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(matches!(hook(&c, HookKind::PreStop, IP), Some(Err(m)) if m.contains("admin")));
    }

    #[test]
    fn pre_stop_eats_into_the_grace_period() {
        let g = Duration::from_secs(30);
        assert_eq!(
            grace_after_hook(g, Duration::from_secs(10)),
            Duration::from_secs(20)
        );
        assert_eq!(
            grace_after_hook(g, Duration::from_secs(40)),
            MIN_GRACE_AFTER_HOOK
        );
        assert_eq!(hook_timeout(HookKind::PreStop, g), g);
        assert_eq!(
            hook_timeout(HookKind::PostStart, Duration::from_secs(1)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn failed_post_start_kills() {
        let a = on_hook_failed(HookKind::PostStart, "app", "exit 1");
        assert_eq!(a.len(), 2);
        assert!(matches!(
            &a[0],
            super::super::PodAction::Event {
                reason: "FailedPostStartHook",
                ..
            }
        ));
        assert_eq!(on_hook_failed(HookKind::PreStop, "app", "x").len(), 1);
    }
}
