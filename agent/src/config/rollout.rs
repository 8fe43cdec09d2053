//! The rollout flags: `--rollout-soak`, `--rollout-deadline`,
//! `--rollout-crash-loop-restarts`, `--auto-rollback`.

use std::time::Duration;

use super::{AgentArgs, ConfigError, RolloutSettings, invalid};

/// Longest soak or deadline accepted (a typo like `30h` should not park a rollout for days).
const MAX_ROLLOUT_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A YAML scalar of the config file as flag text (`3`, `false`, `"false"`).
pub(super) fn yaml_scalar(v: serde_norway::Value) -> String {
    match v {
        serde_norway::Value::String(s) => s,
        serde_norway::Value::Bool(b) => b.to_string(),
        serde_norway::Value::Number(n) => n.to_string(),
        other => serde_norway::to_string(&other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

fn wait(key: &'static str, v: &str, min: Duration) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v).map_err(|e| invalid(key, v, e.to_string()))?;
    if d < min || d > MAX_ROLLOUT_WAIT {
        return Err(invalid(
            key,
            v,
            format!(
                "must be between {} and 24h",
                humantime::format_duration(min)
            ),
        ));
    }
    Ok(d)
}

pub(super) fn rollout_settings(a: &AgentArgs) -> Result<RolloutSettings, ConfigError> {
    let mut s = RolloutSettings::default();
    if let Some(v) = a.rollout_soak.as_deref() {
        s.soak = wait("--rollout-soak", v, Duration::ZERO)?;
    }
    if let Some(v) = a.rollout_deadline.as_deref() {
        s.deadline = Some(wait("--rollout-deadline", v, Duration::from_secs(1))?);
    }
    if let Some(v) = a.rollout_crash_loop_restarts.as_deref() {
        s.crash_loop_restarts = match v.trim().parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "--rollout-crash-loop-restarts",
                    v,
                    "expected a number of restarts from 1 to 1000",
                ));
            }
        };
    }
    if let Some(v) = a.auto_rollback.as_deref() {
        s.auto_rollback = match v.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(invalid("--auto-rollback", v, "expected true or false")),
        };
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut AgentArgs)) -> AgentArgs {
        let mut a = AgentArgs::default();
        f(&mut a);
        a
    }

    #[test]
    fn defaults_and_values() {
        assert_eq!(
            rollout_settings(&AgentArgs::default()).unwrap(),
            RolloutSettings::default()
        );
        let s = rollout_settings(&args(|a| {
            a.rollout_soak = Some("0s".into());
            a.rollout_deadline = Some("45s".into());
            a.rollout_crash_loop_restarts = Some("2".into());
            a.auto_rollback = Some("false".into());
        }))
        .unwrap();
        assert_eq!(s.soak, Duration::ZERO);
        assert_eq!(s.deadline, Some(Duration::from_secs(45)));
        assert_eq!(s.crash_loop_restarts, 2);
        assert!(!s.auto_rollback);
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (a, key) in [
            (
                args(|a| a.rollout_soak = Some("soon".into())),
                "--rollout-soak",
            ),
            (
                args(|a| a.rollout_deadline = Some("0s".into())),
                "--rollout-deadline",
            ),
            (
                args(|a| a.rollout_deadline = Some("30d".into())),
                "--rollout-deadline",
            ),
            (
                args(|a| a.rollout_crash_loop_restarts = Some("0".into())),
                "--rollout-crash-loop-restarts",
            ),
            (
                args(|a| a.auto_rollback = Some("yes".into())),
                "--auto-rollback",
            ),
        ] {
            let e = rollout_settings(&a).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn file_scalars_become_flag_text() {
        let v: serde_norway::Value = serde_norway::from_str("false").unwrap();
        assert_eq!(yaml_scalar(v), "false");
        let v: serde_norway::Value = serde_norway::from_str("3").unwrap();
        assert_eq!(yaml_scalar(v), "3");
    }
}
