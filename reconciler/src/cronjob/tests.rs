use super::*;
use berth_spec::k8s_openapi::api::batch::v1::CronJobSpec;

fn at(s: &str) -> SystemTime {
    SystemTime::from(s.parse::<Timestamp>().unwrap())
}

fn spec(policy: &str, deadline: Option<i64>) -> CronJobSpec {
    CronJobSpec {
        schedule: "*/10 * * * *".into(),
        concurrency_policy: Some(policy.into()),
        starting_deadline_seconds: deadline,
        ..Default::default()
    }
}

fn state(created: &str, last: Option<&str>) -> CronState {
    CronState {
        created: at(created),
        uid: "u".into(),
        last_schedule: last.map(at),
        last_successful: None,
    }
}

fn job(name: &str, succeeded: Option<bool>, t: &str) -> JobObs {
    JobObs {
        name: name.into(),
        succeeded,
        at: at(t),
    }
}

fn sched() -> Schedule {
    Schedule::parse("*/10 * * * *", None).unwrap()
}

#[test]
fn job_names_are_minutes_since_the_epoch() {
    assert_eq!(
        job_name("backup", at("2026-11-30T10:10:00Z")),
        "backup-29933890"
    );
}

#[test]
fn creates_at_each_scheduled_time_once() {
    // (created, last schedule, now, jobs, want create)
    type Case = (
        &'static str,
        Option<&'static str>,
        &'static str,
        Vec<JobObs>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        // nothing due yet
        (
            "2026-11-30T10:01:00Z",
            None,
            "2026-11-30T10:05:00Z",
            vec![],
            None,
        ),
        // first time
        (
            "2026-11-30T10:01:00Z",
            None,
            "2026-11-30T10:10:05Z",
            vec![],
            Some("2026-11-30T10:10:00Z"),
        ),
        // already ran at 10:10
        (
            "2026-11-30T10:01:00Z",
            Some("2026-11-30T10:10:00Z"),
            "2026-11-30T10:15:00Z",
            vec![],
            None,
        ),
        // the Job of that time exists (state lost): not again
        (
            "2026-11-30T10:01:00Z",
            None,
            "2026-11-30T10:10:30Z",
            vec![job(
                &job_name("c", at("2026-11-30T10:10:00Z")),
                None,
                "2026-11-30T10:10:00Z",
            )],
            None,
        ),
        // down from 10:05 to 10:47: one catch-up run, the latest time
        (
            "2026-11-30T09:00:00Z",
            Some("2026-11-30T10:00:00Z"),
            "2026-11-30T10:47:00Z",
            vec![],
            Some("2026-11-30T10:40:00Z"),
        ),
    ];
    for (i, (created, last, now, jobs, want)) in cases.into_iter().enumerate() {
        let p = plan(
            "c",
            &spec("Allow", None),
            &sched(),
            &jobs,
            &state(created, last),
            at(now),
        );
        let got = p.create.as_ref().map(|(_, t)| *t);
        assert_eq!(got, want.map(at), "case {i}");
        if let Some((name, t)) = &p.create {
            assert_eq!(*name, job_name("c", *t), "case {i}");
            assert_eq!(p.last_schedule, Some(*t), "case {i}");
        }
        assert!(p.wake.is_some_and(|w| w > at(now)), "case {i}");
    }
}

#[test]
fn starting_deadline_skips_late_runs() {
    let s = spec("Allow", Some(120));
    // 10:40 is 7 min late: more than 120 s, not run, reported, time recorded
    let p = plan(
        "c",
        &s,
        &sched(),
        &[],
        &state("2026-11-30T09:00:00Z", Some("2026-11-30T10:00:00Z")),
        at("2026-11-30T10:47:00Z"),
    );
    assert_eq!(p.create, None);
    assert_eq!(p.skipped.as_ref().map(|s| s.0), Some("MissSchedule"));
    assert_eq!(p.last_schedule, Some(at("2026-11-30T10:40:00Z")));
    // 10:40 is 90 s late: run
    let p = plan(
        "c",
        &s,
        &sched(),
        &[],
        &state("2026-11-30T09:00:00Z", Some("2026-11-30T10:00:00Z")),
        at("2026-11-30T10:41:30Z"),
    );
    assert_eq!(p.create.map(|c| c.1), Some(at("2026-11-30T10:40:00Z")));
}

#[test]
fn concurrency_policies() {
    let running = [job("c-1", None, "2026-11-30T10:00:00Z")];
    let st = state("2026-11-30T09:00:00Z", Some("2026-11-30T10:00:00Z"));
    let now = at("2026-11-30T10:10:01Z");
    let allow = plan("c", &spec("Allow", None), &sched(), &running, &st, now);
    assert!(allow.create.is_some() && allow.delete.is_empty());
    let forbid = plan("c", &spec("Forbid", None), &sched(), &running, &st, now);
    assert_eq!(forbid.create, None);
    assert_eq!(forbid.last_schedule, st.last_schedule, "the time stays due");
    assert_eq!(
        forbid.skipped.as_ref().map(|s| s.0),
        Some("JobAlreadyActive")
    );
    // once it finished, the missed time runs
    let finished = [job("c-1", Some(true), "2026-11-30T10:12:00Z")];
    let later = plan(
        "c",
        &spec("Forbid", None),
        &sched(),
        &finished,
        &st,
        at("2026-11-30T10:12:01Z"),
    );
    assert_eq!(later.create.map(|c| c.1), Some(at("2026-11-30T10:10:00Z")));
    let replace = plan("c", &spec("Replace", None), &sched(), &running, &st, now);
    assert!(replace.create.is_some());
    assert_eq!(replace.delete, ["c-1"]);
}

#[test]
fn history_limits_and_suspend() {
    let mut s = spec("Allow", None);
    s.successful_jobs_history_limit = Some(2);
    s.failed_jobs_history_limit = Some(1);
    s.suspend = Some(true);
    let jobs = [
        job("ok1", Some(true), "2026-11-30T10:01:00Z"),
        job("ok2", Some(true), "2026-11-30T10:11:00Z"),
        job("ok3", Some(true), "2026-11-30T10:21:00Z"),
        job("bad1", Some(false), "2026-11-30T10:02:00Z"),
        job("bad2", Some(false), "2026-11-30T10:12:00Z"),
        job("run", None, "2026-11-30T10:30:00Z"),
    ];
    let p = plan(
        "c",
        &s,
        &sched(),
        &jobs,
        &state("2026-11-30T09:00:00Z", None),
        at("2026-11-30T10:35:00Z"),
    );
    let mut del = p.delete.clone();
    del.sort();
    assert_eq!(del, ["bad1", "ok1"]);
    assert_eq!(p.create, None, "suspended");
    assert_eq!(p.last_successful, Some(at("2026-11-30T10:21:00Z")));
}

#[test]
fn time_zones_pick_the_local_time() {
    let s = CronJobSpec {
        schedule: "0 3 * * *".into(),
        time_zone: Some("Europe/Berlin".into()),
        ..Default::default()
    };
    let sch = Schedule::parse(&s.schedule, s.time_zone.as_deref()).unwrap();
    let p = plan(
        "c",
        &s,
        &sch,
        &[],
        &state("2026-11-30T00:00:00Z", None),
        at("2026-12-01T02:00:30Z"),
    );
    assert_eq!(p.create.map(|c| c.1), Some(at("2026-12-01T02:00:00Z")));
}
