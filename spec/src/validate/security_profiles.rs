//! seccomp and AppArmor profiles. `seccompProfile` `RuntimeDefault`,
//! `Unconfined` and `Localhost` (read from `<state-dir>/seccomp/` by the
//! agent) are honoured; AppArmor profiles other than `Unconfined` are a
//! per-object error, as kubelet refuses them on a kernel without AppArmor
//! (and berth does not apply them where it has it).

use std::collections::BTreeMap;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{AppArmorProfile, PodSpec, SeccompProfile};

use super::Out;

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Whether this kernel has AppArmor enabled.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

fn apparmor_refused() -> &'static str {
    if apparmor_enabled() {
        "AppArmor profiles are not applied by berth (only Unconfined is accepted)"
    } else {
        "cannot enforce AppArmor: AppArmor is not enabled on this host (only Unconfined is accepted)"
    }
}

fn seccomp(o: &mut Out, p: &str, s: &SeccompProfile) {
    match s.type_.as_str() {
        "RuntimeDefault" | "Unconfined" => {}
        "Localhost" => match s.localhost_profile.as_deref().filter(|l| !l.is_empty()) {
            None => o.err(
                format!("{p}.localhostProfile"),
                "localhostProfile is required with type Localhost",
            ),
            Some(l) => {
                let ok = Path::new(l)
                    .components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                if !ok {
                    o.err(
                        format!("{p}.localhostProfile"),
                        format!("{l:?} must be a relative path without '..' (beneath <state-dir>/seccomp)"),
                    );
                }
            }
        },
        t => o.err(
            format!("{p}.type"),
            format!("{t:?} is not valid (RuntimeDefault, Unconfined or Localhost)"),
        ),
    }
}

fn apparmor(o: &mut Out, p: &str, a: &AppArmorProfile) {
    if a.type_ != "Unconfined" {
        o.err(format!("{p}.type"), apparmor_refused());
    }
}

pub(crate) fn pod_spec(o: &mut Out, base: &str, s: &PodSpec) {
    if let Some(sc) = &s.security_context {
        let p = format!("{base}.securityContext");
        if let Some(x) = &sc.seccomp_profile {
            seccomp(o, &format!("{p}.seccompProfile"), x);
        }
        if let Some(x) = &sc.app_armor_profile {
            apparmor(o, &format!("{p}.appArmorProfile"), x);
        }
    }
    let init = s
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("{base}.initContainers[{i}]"), c));
    let main = s
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{base}.containers[{i}]"), c));
    for (cp, c) in init.chain(main) {
        let Some(sc) = &c.security_context else {
            continue;
        };
        if let Some(x) = &sc.seccomp_profile {
            seccomp(o, &format!("{cp}.securityContext.seccompProfile"), x);
        }
        if let Some(x) = &sc.app_armor_profile {
            apparmor(o, &format!("{cp}.securityContext.appArmorProfile"), x);
        }
    }
}

/// The AppArmor annotations of a pod (or pod template): `unconfined` only.
pub(crate) fn annotations(o: &mut Out, base: &str, a: Option<&BTreeMap<String, String>>) {
    for (k, v) in a.into_iter().flatten() {
        if k.starts_with(APPARMOR_ANNOTATION) && v != "unconfined" {
            o.err(format!("{base}['{k}']"), apparmor_refused());
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSecurityContext, SecurityContext};

    use super::*;

    #[test]
    fn localhost_profiles_stay_relative() {
        let spec = PodSpec {
            security_context: Some(PodSecurityContext {
                seccomp_profile: Some(SeccompProfile {
                    type_: "Localhost".into(),
                    localhost_profile: Some("../etc/x.json".into()),
                }),
                ..Default::default()
            }),
            containers: vec![Container {
                name: "c".into(),
                security_context: Some(SecurityContext {
                    seccomp_profile: Some(SeccompProfile {
                        type_: "Localhost".into(),
                        localhost_profile: Some("profiles/audit.json".into()),
                    }),
                    app_armor_profile: Some(AppArmorProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut o = Out(Vec::new());
        pod_spec(&mut o, "spec", &spec);
        let paths: Vec<_> = o.0.iter().filter_map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            [
                "spec.securityContext.seccompProfile.localhostProfile",
                "spec.containers[0].securityContext.appArmorProfile.type"
            ]
        );
        let mut o = Out(Vec::new());
        let a: BTreeMap<String, String> = [
            (
                format!("{APPARMOR_ANNOTATION}web"),
                "runtime/default".to_string(),
            ),
            (format!("{APPARMOR_ANNOTATION}db"), "unconfined".to_string()),
        ]
        .into();
        annotations(&mut o, "metadata.annotations", Some(&a));
        assert_eq!(o.0.len(), 1);
    }
}
