//! Real repositories made with the `git` CLI: a bare origin and a work clone.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_spec::Kind;

use super::*;
use crate::sources::dir::tests_support::pod;
use crate::sources::{Hub, NodeInfo, View, ViewRx};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git CLI");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Repo {
    _tmp: tempfile::TempDir,
    origin: std::path::PathBuf,
    work: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origin.git");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "--bare", "-q"]);
        git(
            tmp.path(),
            &["clone", "-q", origin.to_str().unwrap(), "work"],
        );
        git(&work, &["checkout", "-q", "-b", "main"]);
        let state = tmp.path().join("state");
        Repo {
            _tmp: tmp,
            origin,
            work,
            state,
        }
    }
    fn url(&self) -> String {
        format!("file://{}", self.origin.display())
    }
    fn commit(&self, files: &[(&str, Option<&str>)], msg: &str) {
        for (f, content) in files {
            let p = self.work.join(f);
            match content {
                Some(c) => {
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, c).unwrap();
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "--allow-empty", "-m", msg]);
        git(&self.work, &["push", "-q", "-f", "origin", "HEAD:main"]);
    }
    fn head(&self) -> String {
        let out = Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&self.work)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

fn cfg(url: String, branch: &str, paths: &[&str]) -> GitConfig {
    GitConfig {
        url,
        branch: branch.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        interval: Duration::from_secs(3600),
        webhook_secret: None,
        ssh_key: None,
        known_hosts: None,
    }
}

struct Running {
    view: ViewRx,
    sync: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(c: GitConfig, state: &Path, labels: &[(&str, &str)]) -> Running {
    let (tx, _rx) = berth_reconciler::desired_channel();
    let node = NodeInfo {
        name: "n1".into(),
        labels: labels
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    };
    let hub = Hub::new(tx, node);
    let h = hub.register();
    let view = hub.view();
    let sync = Arc::new(Notify::new());
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(c, state.to_path_buf(), h, sync.clone(), rx));
    Running {
        view,
        sync,
        stop,
        task,
    }
}

impl Running {
    async fn wait(&mut self, what: &str, mut f: impl FnMut(&View) -> bool) -> Arc<View> {
        let r = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                let v = self.view.borrow_and_update().clone();
                if !v.sources.is_empty() && f(&v) {
                    return v;
                }
                self.view.changed().await.unwrap();
            }
        })
        .await;
        match r {
            Ok(v) => v,
            Err(_) => panic!(
                "timed out waiting for {what}: {:#?}",
                self.view.borrow().sources
            ),
        }
    }
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn git_status(v: &View) -> &GitStatus {
    v.sources[0].git.as_ref().unwrap()
}

fn pod_names(v: &View) -> Vec<String> {
    v.desired
        .objects
        .keys()
        .filter(|k| k.kind == Kind::Pod)
        .map(|k| k.name.clone())
        .collect()
}

const BROKEN: &str =
    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_update_refuse_whole_recover_prune_force_push_offline() {
    let r = Repo::new();
    r.commit(
        &[
            ("apps/a.yaml", Some(&pod("a", "x:1"))),
            ("apps/b.yaml", Some(&pod("b", "x:1"))),
            ("README.md", Some("hi")),
        ],
        "first",
    );
    let first = r.head();
    let mut run = start(cfg(r.url(), "main", &[""]), &r.state, &[]);
    let v = run
        .wait("first commit applied", |v| git_status(v).applied.is_some())
        .await;
    assert_eq!(pod_names(&v), ["a", "b"]);
    assert!(v.desired.complete);
    let applied = git_status(&v).applied.clone().unwrap();
    assert_eq!(applied.id, first);
    assert_eq!(applied.subject, "first");
    assert!(applied.author.contains("Test"));

    // update, triggered by the webhook path (Notify)
    r.commit(
        &[
            ("apps/a.yaml", Some(&pod("a", "x:2"))),
            ("apps/c.yaml", Some(&pod("c", "x:1"))),
        ],
        "second",
    );
    let second = r.head();
    run.sync.notify_one();
    let v = run
        .wait("second commit", |v| {
            v.sources[0].revision.as_deref() == Some(second.as_str())
        })
        .await;
    assert_eq!(pod_names(&v), ["a", "b", "c"]);

    // a broken commit is refused whole: c2 (valid) is not applied either
    r.commit(
        &[
            ("apps/bad.yaml", Some(BROKEN)),
            ("apps/d.yaml", Some(&pod("d", "x:1"))),
        ],
        "broken",
    );
    let broken = r.head();
    run.sync.notify_one();
    let v = run
        .wait("refusal", |v| git_status(v).refused.is_some())
        .await;
    assert_eq!(
        pod_names(&v),
        ["a", "b", "c"],
        "nothing of the broken commit is applied"
    );
    let g = git_status(&v);
    assert_eq!(g.refused.as_ref().unwrap().commit.id, broken);
    assert_eq!(
        g.applied.as_ref().unwrap().id,
        second,
        "the previous commit keeps running"
    );
    assert_eq!(g.last_fetched_commit.as_deref(), Some(broken.as_str()));
    assert!(
        v.sources[0]
            .diagnostics
            .iter()
            .any(|d| d.text.starts_with("apps/bad.yaml:")),
        "{:?}",
        v.sources[0].diagnostics
    );
    assert!(
        v.sources[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("refused")
    );

    // recover, and prune: b disappears
    r.commit(&[("apps/bad.yaml", None), ("apps/b.yaml", None)], "fix");
    let fix = r.head();
    run.sync.notify_one();
    let v = run
        .wait("fix", |v| {
            v.sources[0].revision.as_deref() == Some(fix.as_str())
        })
        .await;
    assert_eq!(pod_names(&v), ["a", "c", "d"]);
    assert!(git_status(&v).refused.is_none());

    // force-push back to the first commit: the branch head is the truth
    git(&r.work, &["reset", "-q", "--hard", &first]);
    git(&r.work, &["push", "-q", "-f", "origin", "HEAD:main"]);
    run.sync.notify_one();
    let v = run
        .wait("force-push", |v| {
            v.sources[0].revision.as_deref() == Some(first.as_str())
        })
        .await;
    assert_eq!(pod_names(&v), ["a", "b"]);

    // remote unavailable: last applied keeps running, error shown
    let gone = r.origin.with_extension("gone");
    std::fs::rename(&r.origin, &gone).unwrap();
    run.sync.notify_one();
    let v = run
        .wait("fetch error", |v| {
            v.sources[0].last_error.is_some() && git_status(v).consecutive_failures > 0
        })
        .await;
    assert_eq!(pod_names(&v), ["a", "b"]);
    assert!(v.desired.complete);
    run.stop().await;

    // restart while offline: the persisted commit is applied from the local clone
    let mut run = start(cfg(r.url(), "main", &[""]), &r.state, &[]);
    let v = run
        .wait("re-applied offline", |v| {
            git_status(v).applied.is_some() && git_status(v).consecutive_failures > 0
        })
        .await;
    assert_eq!(v.sources[0].revision.as_deref(), Some(first.as_str()));
    assert_eq!(pod_names(&v), ["a", "b"]);
    assert!(v.desired.complete);
    run.stop().await;

    // back online
    std::fs::rename(&gone, &r.origin).unwrap();
    let mut run = start(cfg(r.url(), "main", &[""]), &r.state, &[]);
    run.wait("online again", |v| {
        git_status(v).consecutive_failures == 0
            && v.sources[0].last_sync.is_some()
            && v.sources[0].last_error.is_none()
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_node_folders_tags_pinned_commits_and_node_selectors() {
    let r = Repo::new();
    let sel = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: gpu\nspec:\n  nodeSelector:\n    gpu: \"yes\"\n  containers:\n  - name: c\n    image: x\n";
    r.commit(
        &[
            ("common/shared.yaml", Some(&pod("shared", "x:1"))),
            ("common/gpu.yaml", Some(sel)),
            ("hosts/n1/mine.yaml", Some(&pod("n1-only", "x"))),
            ("hosts/n2/theirs.yaml", Some(&pod("n2-only", "x"))),
            ("other/ignored.yaml", Some(&pod("ignored", "x"))),
        ],
        "fleet",
    );
    let fleet = r.head();
    git(&r.work, &["tag", "v1"]);
    git(&r.work, &["push", "-q", "origin", "v1"]);
    r.commit(
        &[("common/shared.yaml", Some(&pod("shared", "x:2")))],
        "later",
    );

    let st1 = r.state.join("1");
    let mut run = start(cfg(r.url(), "main", &["common", "hosts/n1"]), &st1, &[]);
    let v = run.wait("apply", |v| git_status(v).applied.is_some()).await;
    assert_eq!(
        pod_names(&v),
        ["n1-only", "shared"],
        "gpu is not scheduled here"
    );
    assert_eq!(v.unscheduled.len(), 1);
    assert!(
        v.unscheduled[0].reason.contains("nodeSelector gpu=yes"),
        "{:?}",
        v.unscheduled
    );
    run.stop().await;

    let st2 = r.state.join("2");
    let mut run = start(
        cfg(r.url(), "main", &["common", "hosts/n2"]),
        &st2,
        &[("gpu", "yes")],
    );
    let v = run.wait("apply", |v| git_status(v).applied.is_some()).await;
    assert_eq!(pod_names(&v), ["gpu", "n2-only", "shared"]);
    run.stop().await;

    for (target, dir) in [("v1", "3"), (fleet.as_str(), "4")] {
        let mut run = start(cfg(r.url(), target, &["common"]), &r.state.join(dir), &[]);
        let v = run.wait("apply", |v| git_status(v).applied.is_some()).await;
        assert_eq!(
            v.sources[0].revision.as_deref(),
            Some(fleet.as_str()),
            "{target}"
        );
        run.stop().await;
    }

    let mut run = start(
        cfg(r.url(), "no-such-branch", &[""]),
        &r.state.join("5"),
        &[],
    );
    let v = run
        .wait("error", |v| v.sources[0].last_error.is_some())
        .await;
    assert!(
        v.sources[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no-such-branch")
    );
    assert!(
        !v.desired.complete,
        "nothing applied yet: the reconciler must not prune"
    );
    run.stop().await;
}

#[test]
fn backoff_doubles_and_is_capped() {
    let i = Duration::from_secs(30);
    let got: Vec<u64> = (0..7).map(|n| backoff(n, i).as_secs()).collect();
    assert_eq!(got, [30, 2, 4, 8, 16, 30, 30]);
}

#[test]
fn an_empty_revision_is_refused() {
    assert!(matches!(
        evaluate(&[], &[], "abc"),
        Evaluation::Refused { .. }
    ));
}

/// Issue 14: a commit whose tree names one subtree many times (a "git
/// bomb") is refused after a bounded walk instead of reading 10^6 files.
#[test]
fn a_git_bomb_is_refused_after_a_bounded_walk() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init_bare(tmp.path()).unwrap();
    let blob = repo.blob(pod("p", "busybox").as_bytes()).unwrap();
    let mut b = repo.treebuilder(None).unwrap();
    b.insert("p.yaml", blob, 0o100644).unwrap();
    let mut tree = b.write().unwrap();
    for _ in 0..6 {
        let mut b = repo.treebuilder(None).unwrap();
        for i in 0..10 {
            b.insert(format!("d{i}"), tree, 0o040000).unwrap();
        }
        tree = b.write().unwrap();
    }
    let sig = git2::Signature::now("t", "t@example.com").unwrap();
    let tree = repo.find_tree(tree).unwrap();
    let commit = repo.commit(None, &sig, &sig, "bomb", &tree, &[]).unwrap();
    let t0 = std::time::Instant::now();
    let e = git_repo::read_tree(&repo, commit, &[String::new()]).unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(
        e.to_string().contains("has more than 10000 manifest files"),
        "{e}"
    );
}
