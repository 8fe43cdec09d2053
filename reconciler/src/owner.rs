//! The controller that owns a pod, as kept in its record's `owner`.
//!
//! Records written before berth ran other workload kinds hold the bare name
//! of a Deployment (`web`); pods of the other kinds hold `Kind/name`
//! (`StatefulSet/web`). Object names cannot contain `/`, so both forms read
//! back unambiguously and old records keep meaning what they meant.

use berth_spec::Kind;

/// Kind and name of the owning controller of a record's `owner` string.
pub fn parse(owner: &str) -> (Kind, &str) {
    if let Some((kind, name)) = owner.split_once('/') {
        for k in Kind::ALL {
            if k.as_str() == kind {
                return (k, name);
            }
        }
    }
    (Kind::Deployment, owner)
}

/// The `owner` string of a pod of controller `kind`/`name`.
pub fn encode(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Deployment => name.to_string(),
        k => format!("{k}/{name}"),
    }
}

/// The apiVersion of a controller kind, for ownerReferences.
pub fn api_version(kind: Kind) -> &'static str {
    match kind {
        Kind::ReplicationController => "v1",
        _ => "apps/v1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_old_records() {
        assert_eq!(parse("web"), (Kind::Deployment, "web"));
        for k in [
            Kind::Deployment,
            Kind::StatefulSet,
            Kind::DaemonSet,
            Kind::ReplicaSet,
            Kind::ReplicationController,
        ] {
            assert_eq!(parse(&encode(k, "db")), (k, "db"));
        }
        assert_eq!(encode(Kind::StatefulSet, "web"), "StatefulSet/web");
        // an unknown prefix is not a kind: read as a (bad) Deployment name
        assert_eq!(parse("Gadget/x"), (Kind::Deployment, "Gadget/x"));
    }
}
