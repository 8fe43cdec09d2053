//! seccomp and AppArmor profiles. `seccompProfile` `RuntimeDefault`,
//! `Unconfined` and `Localhost` (read from `<state-dir>/seccomp/` by the
//! agent) are honoured. AppArmor as kubelet: on a kernel without AppArmor
//! any profile but `Unconfined` (field or annotation) is a per-object error
//! ("cannot enforce AppArmor"), as kubelet's admission refuses such a pod;
//! where the kernel has AppArmor a `Localhost` profile is applied by name
//! (it must be loaded), and `RuntimeDefault` is refused: berth loads no
//! default profile of its own.

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

/// Why a profile of this type is refused on this host, or `None` when it
/// is applied (`Unconfined`; `Localhost` where the kernel has AppArmor).
fn apparmor_refused(type_: &str) -> Option<&'static str> {
    match type_ {
        "Unconfined" => None,
        _ if !apparmor_enabled() => Some(
            "cannot enforce AppArmor: AppArmor is not enabled on this host (only Unconfined is accepted)",
        ),
        "Localhost" => None,
        _ => Some(
            "RuntimeDefault AppArmor is not available: berth loads no default AppArmor profile (use Localhost with a loaded profile, or Unconfined)",
        ),
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
    match a.type_.as_str() {
        "Unconfined" | "RuntimeDefault" | "Localhost" => {}
        t => {
            o.err(
                format!("{p}.type"),
                format!("{t:?} is not valid (RuntimeDefault, Unconfined or Localhost)"),
            );
            return;
        }
    }
    if a.type_ == "Localhost" && a.localhost_profile.as_deref().is_none_or(str::is_empty) {
        o.err(
            format!("{p}.localhostProfile"),
            "localhostProfile is required with type Localhost",
        );
    } else if let Some(why) = apparmor_refused(&a.type_) {
        o.err(format!("{p}.type"), why);
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
    for (cp, c) in super::containers_at(base, s) {
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

/// The AppArmor annotations of a pod (or pod template): `unconfined`,
/// `runtime/default` or `localhost/<profile>`, under the same rules.
pub(crate) fn annotations(o: &mut Out, base: &str, a: Option<&BTreeMap<String, String>>) {
    for (k, v) in a.into_iter().flatten() {
        if !k.starts_with(APPARMOR_ANNOTATION) {
            continue;
        }
        let type_ = match v.as_str() {
            "unconfined" => "Unconfined",
            "runtime/default" => "RuntimeDefault",
            l if l.len() > "localhost/".len() && l.starts_with("localhost/") => "Localhost",
            other => {
                o.err(
                    format!("{base}['{k}']"),
                    format!(
                        "{other:?} is not a valid AppArmor profile (runtime/default, unconfined or localhost/<name>)"
                    ),
                );
                continue;
            }
        };
        if let Some(why) = apparmor_refused(type_) {
            o.err(format!("{base}['{k}']"), why);
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

    #[test]
    fn apparmor_as_kubelet_on_this_host() {
        assert_eq!(apparmor_refused("Unconfined"), None);
        // kubelet refuses RuntimeDefault without AppArmor; berth has no default profile with it
        assert!(apparmor_refused("RuntimeDefault").is_some());
        assert_eq!(apparmor_refused("Localhost").is_none(), apparmor_enabled());
        let mut o = Out(Vec::new());
        apparmor(
            &mut o,
            "spec.securityContext.appArmorProfile",
            &AppArmorProfile {
                type_: "Localhost".into(),
                localhost_profile: None,
            },
        );
        assert_eq!(
            o.0[0].path.as_deref(),
            Some("spec.securityContext.appArmorProfile.localhostProfile")
        );
        let mut o = Out(Vec::new());
        let a: BTreeMap<String, String> = [(
            format!("{APPARMOR_ANNOTATION}web"),
            "localhost/".to_string(),
        )]
        .into();
        annotations(&mut o, "metadata.annotations", Some(&a));
        assert!(
            o.0[0].message.contains("not a valid AppArmor profile"),
            "{:?}",
            o.0
        );
    }
}
