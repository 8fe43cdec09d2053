//! Job and CronJob manifests: accepted with defaults, and every invalid one
//! refused with file:line and the field.

use berth_spec::{Object, Severity, parse_str};

fn errors(text: &str) -> Vec<String> {
    parse_str("b.yaml", text)
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            format!(
                "{}:{} {}: {}",
                d.location.line,
                d.location.column,
                d.path.as_deref().unwrap_or(""),
                d.message
            )
        })
        .collect()
}

fn warnings(text: &str) -> Vec<String> {
    parse_str("b.yaml", text)
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| format!("{}: {}", d.path.as_deref().unwrap_or(""), d.message))
        .collect()
}

const JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: backup
spec:
  completions: 3
  template:
    spec:
      restartPolicy: OnFailure
      containers:
      - name: main
        image: busybox
";

const CRON: &str = "apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: \"0 3 * * *\"
  timeZone: Europe/Berlin
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: main
            image: busybox
";

#[test]
fn valid_jobs_and_cronjobs_are_accepted_with_defaults() {
    let p = parse_str("b.yaml", JOB);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let Object::Job(j) = &p.objects[0].object else {
        panic!("not a Job");
    };
    let s = j.spec.as_ref().unwrap();
    assert_eq!(
        (s.completions, s.parallelism, s.backoff_limit),
        (Some(3), Some(1), Some(6))
    );
    let p = parse_str("b.yaml", CRON);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let Object::CronJob(c) = &p.objects[0].object else {
        panic!("not a CronJob");
    };
    let s = &c.spec;
    assert_eq!(s.concurrency_policy.as_deref(), Some("Allow"));
    assert_eq!(
        (s.successful_jobs_history_limit, s.failed_jobs_history_limit),
        (Some(3), Some(1))
    );
}

#[test]
fn invalid_objects_are_refused_at_their_line() {
    // (replace, by, the error expected)
    let cases = [
        (
            JOB,
            "completions: 3",
            "completions: -1",
            "6:3 spec.completions: -1 must be >= 0",
        ),
        (
            JOB,
            "restartPolicy: OnFailure",
            "restartPolicy: Always",
            "9:7 spec.template.spec.restartPolicy: a Job's pods need restartPolicy Never or OnFailure",
        ),
        (
            JOB,
            "      restartPolicy: OnFailure\n",
            "",
            "spec.template.spec.restartPolicy: a Job's pods need restartPolicy Never or OnFailure",
        ),
        (
            JOB,
            "completions: 3",
            "activeDeadlineSeconds: 0",
            "6:3 spec.activeDeadlineSeconds: 0 must be > 0",
        ),
        (
            JOB,
            "completions: 3",
            "completionMode: Sometimes",
            "spec.completionMode: \"Sometimes\" is not valid",
        ),
        (
            CRON,
            "0 3 * * *",
            "0 25 * * *",
            "6:3 spec.schedule: invalid schedule \"0 25 * * *\": 25 is outside 0-23",
        ),
        (
            CRON,
            "0 3 * * *",
            "every day",
            "spec.schedule: invalid schedule",
        ),
        (
            CRON,
            "Europe/Berlin",
            "Mars/Olympus",
            "7:3 spec.timeZone: invalid schedule",
        ),
        (
            CRON,
            "timeZone: Europe/Berlin",
            "concurrencyPolicy: Sometimes",
            "spec.concurrencyPolicy: \"Sometimes\" is not valid",
        ),
        (
            CRON,
            "restartPolicy: Never",
            "restartPolicy: Always",
            "spec.jobTemplate.spec.template.spec.restartPolicy: a Job's pods need",
        ),
        (
            CRON,
            "timeZone: Europe/Berlin",
            "startingDeadlineSeconds: -5",
            "spec.startingDeadlineSeconds: -5 must be >= 0",
        ),
        (
            CRON,
            "name: nightly",
            "name: a-cronjob-name-that-is-much-too-long-for-its-job-names",
            "metadata.name: a CronJob name may have at most 52 characters",
        ),
    ];
    for (base, from, to, want) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replace(from, to);
        let errs = errors(&text);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{to:?}: want {want:?}, got {errs:?}"
        );
    }
}

#[test]
fn fields_not_honoured_are_warnings_naming_them() {
    let text = JOB.replace(
        "completions: 3",
        "completions: 3\n  podFailurePolicy:\n    rules: []\n  podReplacementPolicy: Failed",
    );
    let w = warnings(&text);
    for field in ["podFailurePolicy", "podReplacementPolicy"] {
        assert!(
            w.iter()
                .any(|m| m.starts_with(&format!("spec.{field}")) && m.contains("not honoured")),
            "{field}: {w:?}"
        );
    }
    assert!(!parse_str("b.yaml", &text).has_errors());
}

#[test]
fn the_removed_beta_cronjob_is_refused_with_the_version_to_use() {
    let errs = errors(&CRON.replace("batch/v1", "batch/v1beta1"));
    assert!(
        errs.iter()
            .any(|e| e.contains("read in apiVersion batch/v1, not batch/v1beta1")),
        "{errs:?}"
    );
}
