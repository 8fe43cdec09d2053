//! CronJobs: the act/observe side of [`crate::cronjob::plan`].
//!
//! A CronJob's Jobs live in the Job state ([`crate::batch_store`]), with
//! the Job spec copied from the CronJob's template when they were created;
//! [`super::jobs`] runs them like a manifest's Jobs. The CronJob's own
//! state (first seen, lastScheduleTime, lastSuccessfulTime) is saved with
//! them, so a restart neither re-runs nor loses a scheduled time.

use std::collections::BTreeSet;
use std::time::SystemTime;

use berth_spec::cron::Schedule;
use berth_spec::{Kind, Object, ObjectKey};

use super::Reconciler;
use crate::batch_store::{self, CronOwned, JobRun};
use crate::cronjob::{self, CronState, JobObs};
use crate::desired::DesiredState;
use crate::traits::{Images, Network, Runtime};

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    pub(super) fn sync_cronjobs(&mut self, desired: &DesiredState, now: SystemTime) {
        let mut present = BTreeSet::new();
        for s in desired.objects.values() {
            let Object::CronJob(c) = &s.object else {
                continue;
            };
            let ns = berth_spec::namespace_of(&c.metadata).to_string();
            let name = c.metadata.name.clone().unwrap_or_default();
            let k = batch_store::key(&ns, &name);
            present.insert(k.clone());
            let spec = &c.spec;
            let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    // validation refuses it; kept here for objects built otherwise
                    tracing::warn!(cronjob = %k, err = %e, "bad schedule");
                    continue;
                }
            };
            if !self.batch.state.cronjobs.contains_key(&k) {
                let uid = crate::hash::spec_hash(&("cronjob", &k, now));
                self.batch.state.cronjobs.insert(
                    k.clone(),
                    CronState {
                        created: now,
                        uid,
                        last_schedule: None,
                        last_successful: None,
                    },
                );
                self.batch.changed();
            }
            let Some(state) = self.batch.state.cronjobs.get(&k).cloned() else {
                continue;
            };
            let jobs: Vec<JobObs> = self
                .batch
                .state
                .jobs
                .iter()
                .filter(|(jk, r)| {
                    batch_store::split_key(jk).0 == ns
                        && r.cron.as_ref().is_some_and(|c| c.cronjob == name)
                })
                .map(|(jk, r)| JobObs {
                    name: batch_store::split_key(jk).1.to_string(),
                    succeeded: r.done.as_ref().map(|d| d.complete),
                    at: r.done.as_ref().map_or(r.started, |d| d.at),
                })
                .collect();
            let p = cronjob::plan(&name, spec, &schedule, &jobs, &state, now);
            for job in &p.delete {
                self.remove_cron_job(&ns, job);
                self.batch_event(
                    "CronJob",
                    &ns,
                    &name,
                    false,
                    "SuccessfulDelete",
                    &format!("Deleted job {job}"),
                );
            }
            if let Some((job, scheduled)) = &p.create {
                let t = spec.job_template.metadata.clone().unwrap_or_default();
                let jspec = spec.job_template.spec.clone().unwrap_or_default();
                let jk = batch_store::key(&ns, job);
                self.batch.state.jobs.insert(
                    jk,
                    JobRun {
                        uid: crate::hash::spec_hash(&("job", &ns, job, now)),
                        hash: super::jobs::identity_hash(&jspec),
                        started: now,
                        done: None,
                        succeeded: 0,
                        failed: 0,
                        created_pods: 0,
                        cron: Some(CronOwned {
                            cronjob: name.clone(),
                            cronjob_uid: state.uid.clone(),
                            scheduled: *scheduled,
                            labels: t.labels.unwrap_or_default(),
                            annotations: t.annotations.unwrap_or_default(),
                            spec: jspec,
                        }),
                    },
                );
                self.batch.changed();
                tracing::info!(cronjob = %k, %job, "cronjob created job");
                self.batch_event(
                    "CronJob",
                    &ns,
                    &name,
                    false,
                    "SuccessfulCreate",
                    &format!("Created job {job}"),
                );
            }
            match &p.skipped {
                Some((reason, msg)) if self.batch.last_skipped.get(&k) != Some(msg) => {
                    self.batch.last_skipped.insert(k.clone(), msg.clone());
                    self.batch_event(
                        "CronJob",
                        &ns,
                        &name,
                        *reason == "MissSchedule",
                        reason,
                        msg,
                    );
                }
                Some(_) => {}
                None => {
                    self.batch.last_skipped.remove(&k);
                }
            }
            let mut moved = false;
            if let Some(st) = self.batch.state.cronjobs.get_mut(&k)
                && (st.last_schedule != p.last_schedule || st.last_successful != p.last_successful)
            {
                st.last_schedule = p.last_schedule;
                st.last_successful = p.last_successful;
                moved = true;
            }
            if moved {
                self.batch.changed();
            }
            self.batch.wake_at(p.wake);
        }
        // CronJobs the manifests dropped: their Jobs (and pods) go too
        let gone: Vec<String> = self
            .batch
            .state
            .cronjobs
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            let (ns, name) = batch_store::split_key(&k);
            let (ns, name) = (ns.to_string(), name.to_string());
            if !desired.may_prune(&ObjectKey::new(Kind::CronJob, &ns, &name)) {
                continue;
            }
            let jobs: Vec<String> = self
                .batch
                .state
                .jobs
                .iter()
                .filter(|(jk, r)| {
                    batch_store::split_key(jk).0 == ns
                        && r.cron.as_ref().is_some_and(|c| c.cronjob == name)
                })
                .map(|(jk, _)| batch_store::split_key(jk).1.to_string())
                .collect();
            for job in jobs {
                self.remove_cron_job(&ns, &job);
            }
            tracing::info!(cronjob = %k, "cronjob removed from the manifests");
            self.batch.state.cronjobs.remove(&k);
            self.batch.last_skipped.remove(&k);
            self.batch.changed();
        }
    }

    /// Forget a CronJob's Job and stop its pods.
    fn remove_cron_job(&mut self, ns: &str, job: &str) {
        let jk = batch_store::key(ns, job);
        self.batch.state.jobs.remove(&jk);
        self.batch.shown.remove(&jk);
        self.batch.changed();
        let pods: Vec<String> = self
            .pods
            .iter()
            .filter(|(key, e)| key.0 == ns && e.record.owned_by(Kind::Job, job))
            .map(|(key, _)| key.1.clone())
            .collect();
        for p in pods {
            self.delete_job_pod(ns, &p);
        }
    }
}
