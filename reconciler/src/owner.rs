//! The controller that owns a pod: its record's `owner` (a name) and
//! `owner_kind` (absent for a Deployment, as in records written before berth
//! ran other workload kinds).

use berth_spec::Kind;

/// The apiVersion of a controller kind, for ownerReferences.
pub fn api_version(kind: Kind) -> &'static str {
    match kind {
        Kind::ReplicationController => "v1",
        Kind::Job | Kind::CronJob => "batch/v1",
        _ => "apps/v1",
    }
}
