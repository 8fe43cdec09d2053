//! Lifecycle hooks (postStart/preStop) and native sidecars (init containers
//! with `restartPolicy: Always`), as kube-apiserver validates them.

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Out, port};

/// `lifecycle` of a container; `sidecar`: an init container that keeps running.
pub(crate) fn hooks(o: &mut Out, p: &str, c: &Container, init: bool, sidecar: bool) {
    let Some(l) = &c.lifecycle else { return };
    if init && !sidecar {
        o.err(
            format!("{p}.lifecycle"),
            "may not be set for init containers without restartPolicy Always",
        );
        return;
    }
    for (name, h) in [("postStart", &l.post_start), ("preStop", &l.pre_stop)] {
        if let Some(h) = h {
            handler(o, &format!("{p}.lifecycle.{name}"), h);
        }
    }
    if l.stop_signal.is_some() {
        o.warn(
            format!("{p}.lifecycle.stopSignal"),
            "stopSignal is ignored by berth (containers get SIGTERM)",
        );
    }
}

fn handler(o: &mut Out, p: &str, h: &LifecycleHandler) {
    let n = [
        h.exec.is_some(),
        h.http_get.is_some(),
        h.sleep.is_some(),
        h.tcp_socket.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if n != 1 {
        o.err(
            p,
            "a hook needs exactly one handler (exec, httpGet or sleep)",
        );
    }
    if h.tcp_socket.is_some() {
        o.err(
            format!("{p}.tcpSocket"),
            "tcpSocket is not a valid lifecycle hook handler (exec, httpGet or sleep)",
        );
    }
    if let Some(e) = &h.exec
        && e.command.as_ref().is_none_or(Vec::is_empty)
    {
        o.err(format!("{p}.exec.command"), "command is required");
    }
    if let Some(g) = &h.http_get {
        if let IntOrString::Int(n) = g.port {
            port(o, &format!("{p}.httpGet.port"), n);
        }
        if g.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            o.err(
                format!("{p}.httpGet.scheme"),
                "only HTTP hooks are supported by berth",
            );
        }
    }
    if let Some(s) = &h.sleep
        && s.seconds < 0
    {
        o.err(format!("{p}.sleep.seconds"), "must be >= 0");
    }
}

/// `restartPolicy` of a container: only `Always` on an init container (a
/// native sidecar); none on a main container.
pub(crate) fn restart_policy(o: &mut Out, p: &str, c: &Container, init: bool) {
    match (c.restart_policy.as_deref(), init) {
        (None, _) | (Some("Always"), true) => {}
        (Some(x), true) => o.err(
            format!("{p}.restartPolicy"),
            format!("{x:?} is not valid for an init container (only Always, a sidecar)"),
        ),
        (Some(_), false) => o.err(
            format!("{p}.restartPolicy"),
            "restartPolicy on a container is not supported by berth (only on init containers: sidecars)",
        ),
    }
}

/// A native sidecar: an init container with `restartPolicy: Always`.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, Lifecycle, SleepAction, TCPSocketAction};

    use super::*;

    fn with(l: Lifecycle) -> Container {
        Container {
            name: "c".into(),
            lifecycle: Some(l),
            ..Default::default()
        }
    }

    #[test]
    fn hooks_need_one_valid_handler() {
        let mut o = Out(Vec::new());
        let c = with(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["true".into()]),
                }),
                ..Default::default()
            }),
            post_start: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 1 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        hooks(&mut o, "c", &c, false, false);
        assert!(o.0.is_empty(), "{:?}", o.0);
        let c = with(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                tcp_socket: Some(TCPSocketAction {
                    port: IntOrString::Int(80),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            post_start: Some(LifecycleHandler::default()),
            ..Default::default()
        });
        hooks(&mut o, "c", &c, false, false);
        let paths: Vec<_> = o.0.iter().filter_map(|p| p.path.clone()).collect();
        assert!(
            paths.contains(&"c.lifecycle.preStop.tcpSocket".to_string()),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"c.lifecycle.postStart".to_string()),
            "{paths:?}"
        );
    }

    #[test]
    fn init_containers_take_hooks_only_as_sidecars() {
        let c = with(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 1 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut o = Out(Vec::new());
        hooks(&mut o, "i", &c, true, false);
        assert_eq!(o.0.len(), 1);
        let mut o = Out(Vec::new());
        hooks(&mut o, "i", &c, true, true);
        assert!(o.0.is_empty());
    }

    #[test]
    fn restart_policy_always_only_on_init_containers() {
        let c = Container {
            restart_policy: Some("Always".into()),
            ..Default::default()
        };
        let mut o = Out(Vec::new());
        restart_policy(&mut o, "i", &c, true);
        assert!(o.0.is_empty());
        restart_policy(&mut o, "m", &c, false);
        let c = Container {
            restart_policy: Some("OnFailure".into()),
            ..Default::default()
        };
        restart_policy(&mut o, "i", &c, true);
        assert_eq!(o.0.len(), 2);
    }
}
