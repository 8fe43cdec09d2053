//! Jobs and CronJobs in the status snapshot: the objects as a cluster shows
//! them (uid, selector, template labels, status with counts, start and
//! completion times, Complete/Failed conditions; a CronJob's active Jobs and
//! last schedule). A pure projection of the controller's Job state.

use std::collections::BTreeMap;

use berth_spec::Object;
use berth_spec::k8s_openapi::api::batch::v1::{
    CronJob, CronJobStatus, Job, JobCondition, JobSpec, JobStatus,
};
use berth_spec::k8s_openapi::api::core::v1::ObjectReference;
use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference,
};

use crate::batch_store::{self, JobRun};
use crate::controller::Reconciler;
use crate::controller::jobs::{
    LABEL_BATCH_CONTROLLER_UID, LABEL_BATCH_JOB_NAME, LABEL_CONTROLLER_UID, LABEL_JOB_NAME,
};
use crate::desired::DesiredState;
use crate::pod::status::time;

/// The Job as shown, or None when it is not shown (not started yet, or
/// removed by `ttlSecondsAfterFinished`).
fn job_object(
    meta: &ObjectMeta,
    spec: &JobSpec,
    run: &JobRun,
    counts: (u32, u32, u32, u32),
) -> Option<Job> {
    let done = run.done.as_ref();
    if done.is_some_and(|d| d.expired) {
        return None;
    }
    let mut spec = spec.clone();
    let uid_labels = BTreeMap::from([(LABEL_BATCH_CONTROLLER_UID.to_string(), run.uid.clone())]);
    spec.selector = Some(LabelSelector {
        match_labels: Some(uid_labels),
        match_expressions: None,
    });
    let tm = spec.template.metadata.get_or_insert_with(Default::default);
    let labels = tm.labels.get_or_insert_with(BTreeMap::new);
    let name = meta.name.clone().unwrap_or_default();
    for (k, v) in [
        (LABEL_JOB_NAME, &name),
        (LABEL_BATCH_JOB_NAME, &name),
        (LABEL_CONTROLLER_UID, &run.uid),
        (LABEL_BATCH_CONTROLLER_UID, &run.uid),
    ] {
        labels.insert(k.to_string(), v.clone());
    }
    let mut meta = meta.clone();
    meta.uid = Some(run.uid.clone());
    meta.creation_timestamp = Some(time(run.started));
    let (active, ready, succeeded, failed) = counts;
    let cond = |type_: &str, reason: Option<String>, message: Option<String>, at| JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason,
        message,
        last_probe_time: Some(time(at)),
        last_transition_time: Some(time(at)),
    };
    let conditions = done.map(|d| {
        if d.complete {
            vec![
                cond(
                    "SuccessCriteriaMet",
                    Some("CompletionsReached".into()),
                    Some("Reached expected number of succeeded pods".into()),
                    d.at,
                ),
                cond(
                    "Complete",
                    Some("CompletionsReached".into()),
                    Some("Reached expected number of succeeded pods".into()),
                    d.at,
                ),
            ]
        } else {
            vec![
                cond("FailureTarget", d.reason.clone(), d.message.clone(), d.at),
                cond("Failed", d.reason.clone(), d.message.clone(), d.at),
            ]
        }
    });
    Some(Job {
        metadata: meta,
        spec: Some(spec),
        status: Some(JobStatus {
            active: (active > 0).then_some(active as i32),
            ready: Some(ready as i32),
            succeeded: (succeeded > 0).then_some(succeeded as i32),
            failed: (failed > 0).then_some(failed as i32),
            start_time: Some(time(run.started)),
            completion_time: done.filter(|d| d.complete).map(|d| time(d.at)),
            conditions,
            terminating: Some(0),
            ..Default::default()
        }),
    })
}

pub(crate) fn build<I, R, N>(
    r: &Reconciler<I, R, N>,
    desired: &DesiredState,
) -> (Vec<Job>, Vec<CronJob>) {
    let state = &r.batch.state;
    let counts = |k: &str| r.batch.shown.get(k).copied().unwrap_or_default();
    let mut jobs = Vec::new();
    let mut cron_jobs = Vec::new();
    for s in desired.objects.values() {
        match &s.object {
            Object::Job(j) => {
                let k = batch_store::key(
                    berth_spec::namespace_of(&j.metadata),
                    j.metadata.name.as_deref().unwrap_or_default(),
                );
                if let Some(run) = state.jobs.get(&k).filter(|r| r.cron.is_none())
                    && let Some(o) = job_object(
                        &j.metadata,
                        &j.spec.clone().unwrap_or_default(),
                        run,
                        counts(&k),
                    )
                {
                    jobs.push(o);
                }
            }
            Object::CronJob(c) => {
                let ns = berth_spec::namespace_of(&c.metadata).to_string();
                let name = c.metadata.name.clone().unwrap_or_default();
                let k = batch_store::key(&ns, &name);
                let Some(cs) = state.cronjobs.get(&k) else {
                    continue;
                };
                let mut c = (**c).clone();
                c.metadata.uid = Some(cs.uid.clone());
                c.metadata.creation_timestamp = Some(time(cs.created));
                let active: Vec<ObjectReference> = state
                    .jobs
                    .iter()
                    .filter(|(jk, run)| {
                        batch_store::split_key(jk).0 == ns
                            && run.done.is_none()
                            && run.cron.as_ref().is_some_and(|o| o.cronjob == name)
                    })
                    .map(|(jk, run)| ObjectReference {
                        api_version: Some("batch/v1".into()),
                        kind: Some("Job".into()),
                        name: Some(batch_store::split_key(jk).1.to_string()),
                        namespace: Some(ns.clone()),
                        uid: Some(run.uid.clone()),
                        ..Default::default()
                    })
                    .collect();
                c.status = Some(CronJobStatus {
                    active: (!active.is_empty()).then_some(active),
                    last_schedule_time: cs.last_schedule.map(time),
                    last_successful_time: cs.last_successful.map(time),
                });
                cron_jobs.push(c);
            }
            _ => {}
        }
    }
    for (k, run) in &state.jobs {
        let Some(c) = &run.cron else { continue };
        let (ns, name) = batch_store::split_key(k);
        let meta = ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: (!c.labels.is_empty()).then(|| c.labels.clone()),
            annotations: Some({
                let mut a = c.annotations.clone();
                a.insert(
                    "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
                    time(c.scheduled).0.to_string(),
                );
                a
            }),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: c.cronjob.clone(),
                uid: c.cronjob_uid.clone(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        };
        if let Some(o) = job_object(&meta, &c.spec, run, counts(k)) {
            jobs.push(o);
        }
    }
    (jobs, cron_jobs)
}
