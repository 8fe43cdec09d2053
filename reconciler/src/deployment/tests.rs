use super::*;
use berth_spec::k8s_openapi::api::apps::v1::RollingUpdateDeployment;

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn now() -> SystemTime {
    T0 + Duration::from_secs(1000)
}

fn pod(name: &str, hash: &str, ready: bool) -> PodObs {
    PodObs {
        name: name.into(),
        template_hash: hash.into(),
        ready,
        ready_since: ready.then_some(T0),
        terminating: false,
        created: T0,
        host_ports: Default::default(),
    }
}

fn spec(replicas: i32, surge: i32, unavail: i32) -> DeploymentSpec {
    DeploymentSpec {
        replicas: Some(replicas),
        strategy: Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(surge)),
                max_unavailable: Some(IntOrString::Int(unavail)),
            }),
        }),
        ..Default::default()
    }
}

#[test]
fn fresh_deployment_creates_replicas() {
    let p = plan(&spec(3, 1, 0), "h1", &[], now(), false);
    assert_eq!(p.create, 3);
    assert!(p.delete.is_empty());
    assert!(!p.complete);
}

#[test]
fn steady_state_does_nothing_and_is_complete() {
    let pods = vec![pod("a", "h1", true), pod("b", "h1", true)];
    let p = plan(&spec(2, 1, 0), "h1", &pods, now(), false);
    assert_eq!(p.create, 0);
    assert!(p.delete.is_empty());
    assert!(p.complete);
    assert_eq!(p.counts.available, 2);
}

#[test]
fn scale_down_prefers_unready() {
    let pods = vec![
        pod("a", "h1", true),
        pod("b", "h1", false),
        pod("c", "h1", true),
    ];
    let p = plan(&spec(2, 1, 0), "h1", &pods, now(), false);
    assert_eq!(p.delete, vec!["b".to_string()]);
}

#[test]
fn rolling_max_unavailable_zero_surges_first() {
    // 2 old ready, template changed: create 1 (surge), delete nothing yet
    let pods = vec![pod("a", "h1", true), pod("b", "h1", true)];
    let p = plan(&spec(2, 1, 0), "h2", &pods, now(), false);
    assert_eq!(p.create, 1);
    assert!(p.delete.is_empty());
    // new one is up but not ready: still nothing to delete
    let pods = vec![
        pod("a", "h1", true),
        pod("b", "h1", true),
        pod("n1", "h2", false),
    ];
    let p = plan(&spec(2, 1, 0), "h2", &pods, now(), false);
    assert_eq!(p.create, 0);
    assert!(p.delete.is_empty());
    // new one ready: one old can go, availability stays at 2
    let pods = vec![
        pod("a", "h1", true),
        pod("b", "h1", true),
        pod("n1", "h2", true),
    ];
    let p = plan(&spec(2, 1, 0), "h2", &pods, now(), false);
    assert_eq!(p.delete.len(), 1);
    assert_eq!(p.create, 0);
}

#[test]
fn rolling_never_drops_below_replicas_in_ready_pods() {
    // simulate a full rollout step by step with maxUnavailable 0
    let mut pods = vec![
        pod("a", "h1", true),
        pod("b", "h1", true),
        pod("c", "h1", true),
    ];
    let s = spec(3, 1, 0);
    for step in 0..20 {
        let p = plan(&s, "h2", &pods, now(), false);
        if p.complete {
            break;
        }
        for name in &p.delete {
            pods.retain(|x| &x.name != name);
        }
        for i in 0..p.create {
            pods.push(pod(&format!("n{step}-{i}"), "h2", false));
        }
        let ready = pods.iter().filter(|x| x.ready).count();
        assert!(ready >= 3, "step {step}: only {ready} ready");
        // new pods become ready on the next step
        for x in pods.iter_mut() {
            if !x.ready {
                x.ready = true;
                x.ready_since = Some(T0);
            }
        }
    }
    assert!(pods.iter().all(|p| p.template_hash == "h2"));
    assert_eq!(pods.len(), 3);
}

#[test]
fn unready_old_pods_are_replaced_first() {
    let pods = vec![pod("a", "h1", false), pod("b", "h1", true)];
    let p = plan(&spec(2, 0, 1), "h2", &pods, now(), false);
    assert!(p.delete.contains(&"a".to_string()));
}

#[test]
fn recreate_deletes_all_then_creates() {
    let mut s = spec(2, 1, 0);
    s.strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    let pods = vec![pod("a", "h1", true), pod("b", "h1", true)];
    let p = plan(&s, "h2", &pods, now(), false);
    assert_eq!(p.delete.len(), 2);
    assert_eq!(p.create, 0);
    let mut term = pod("a", "h1", true);
    term.terminating = true;
    let p = plan(&s, "h2", &[term], now(), false);
    assert_eq!(p.create, 0, "waits for old pods to terminate");
    let p = plan(&s, "h2", &[], now(), false);
    assert_eq!(p.create, 2);
}

#[test]
fn stalled_rollout_leaves_old_pods() {
    let pods = vec![pod("a", "h1", true), pod("n", "h2", false)];
    let p = plan(&spec(1, 1, 0), "h2", &pods, now(), true);
    assert!(p.delete.is_empty());
    assert_eq!(p.create, 0);
}

#[test]
fn min_ready_seconds_delays_availability() {
    let mut s = spec(1, 1, 0);
    s.min_ready_seconds = Some(30);
    let mut n = pod("n", "h2", true);
    n.ready_since = Some(now() - Duration::from_secs(10));
    let pods = vec![pod("a", "h1", true), n.clone()];
    let p = plan(&s, "h2", &pods, now(), false);
    assert!(p.delete.is_empty(), "new pod not available yet");
    n.ready_since = Some(now() - Duration::from_secs(31));
    let p = plan(&s, "h2", &[pod("a", "h1", true), n], now(), false);
    assert_eq!(p.delete, vec!["a".to_string()]);
}

#[test]
fn percentages_round_like_kubernetes() {
    let st = DeploymentStrategy {
        type_: None,
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::String("25%".into())),
            max_unavailable: Some(IntOrString::String("25%".into())),
        }),
    };
    assert_eq!(surge_unavailable(Some(&st), 3), (1, 0));
    assert_eq!(surge_unavailable(Some(&st), 4), (1, 1));
    assert_eq!(surge_unavailable(None, 10), (3, 2));
    let zero = DeploymentStrategy {
        type_: None,
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(0)),
            max_unavailable: Some(IntOrString::Int(0)),
        }),
    };
    assert_eq!(surge_unavailable(Some(&zero), 3), (0, 1));
}

#[test]
fn scale_up_and_down_with_no_rollout() {
    let pods = vec![pod("a", "h1", true)];
    assert_eq!(plan(&spec(3, 1, 0), "h1", &pods, now(), false).create, 2);
    let pods = vec![
        pod("a", "h1", true),
        pod("b", "h1", true),
        pod("c", "h1", true),
    ];
    assert_eq!(
        plan(&spec(1, 1, 0), "h1", &pods, now(), false).delete.len(),
        2
    );
}

/// Issue 15: a rollout does not wait for terminating pods (Kubernetes does
/// not count them), unless one still holds a hostPort of the new template.
#[test]
fn terminating_pods_do_not_hold_up_a_rollout_unless_they_hold_a_host_port() {
    use berth_spec::k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};
    // 2 replicas, surge 1, unavailable 0: one old pod is terminating, one old
    // pod and one new ready pod run
    let mut dying = pod("a", "h1", true);
    dying.terminating = true;
    let pods = vec![dying.clone(), pod("b", "h1", true), pod("n", "h2", true)];
    let p = plan(&spec(2, 1, 0), "h2", &pods, now(), false);
    assert_eq!(p.create, 1, "the terminating pod does not use the surge");

    let mut s = spec(2, 1, 0);
    s.template.spec = Some(PodSpec {
        containers: vec![Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                container_port: 80,
                host_port: Some(8080),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        ..Default::default()
    });
    let mut holding = dying.clone();
    holding.host_ports = host_ports(s.template.spec.as_ref());
    let pods = vec![holding, pod("b", "h1", true), pod("n", "h2", true)];
    let p = plan(&s, "h2", &pods, now(), false);
    assert_eq!(p.create, 0, "waits: the old pod still holds hostPort 8080");

    // a terminating pod holding another port does not block
    let mut other = dying;
    other.host_ports = [(9090, "TCP".to_string())].into();
    let pods = vec![other, pod("b", "h1", true), pod("n", "h2", true)];
    assert_eq!(plan(&s, "h2", &pods, now(), false).create, 1);
}
