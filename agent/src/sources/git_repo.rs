//! Blocking git2 operations for the Git source (run them in `spawn_blocking`).
//!
//! The clone is bare, at `<state>/sources/git/<sha256(url)[..16]>`, with
//! `+refs/heads/*:refs/remotes/origin/*` and `+refs/tags/*:refs/tags/*`:
//! after a fetch the branch head is `refs/remotes/origin/<branch>` (forced,
//! so force-pushes are followed), never `refs/heads/<branch>`. Manifests are
//! read straight from the commit's tree; nothing is checked out.

use std::path::{Path, PathBuf};

use base64::Engine;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, FetchPrune, Oid,
    RemoteCallbacks, Repository,
};
use serde::Serialize;

use super::scan;

const REFSPECS: [&str; 2] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];
const APPLIED_FILE: &str = "berth-applied";

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("opening or creating the clone at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("fetching {url}")]
    Fetch {
        url: String,
        #[source]
        source: git2::Error,
    },
    #[error("{target:?} is neither a branch, a tag nor a commit of the repository")]
    UnknownTarget { target: String },
    #[error("reading commit {commit}")]
    Commit {
        commit: String,
        #[source]
        source: git2::Error,
    },
    #[error("commit {commit} has more than {limit} {what} under the configured paths")]
    TooLarge {
        commit: String,
        what: &'static str,
        limit: u64,
    },
    #[error("saving the applied commit in {path}")]
    SaveApplied {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Who/when/what of a commit, for status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommitInfo {
    pub id: String,
    pub author: String,
    pub time: String,
    pub subject: String,
}

/// A manifest file read from a commit: repository path and text (or why not).
pub type TreeFile = (String, Result<String, String>);

/// Where the clone of `url` lives.
pub fn clone_dir(state_dir: &Path, url: &str) -> PathBuf {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    state_dir.join("sources/git").join(&h[..16])
}

/// Open the bare clone, creating it (and its remote) if needed.
pub fn open(dir: &Path, url: &str) -> Result<Repository, GitError> {
    let err = |source| GitError::Open {
        path: dir.to_path_buf(),
        source,
    };
    if let Ok(repo) = Repository::open_bare(dir) {
        return Ok(repo);
    }
    std::fs::create_dir_all(dir).map_err(|e| err(git2::Error::from_str(&e.to_string())))?;
    let repo = Repository::init_bare(dir).map_err(err)?;
    repo.remote_with_fetch("origin", url, REFSPECS[0])
        .map_err(err)?;
    repo.remote_add_fetch("origin", REFSPECS[1]).map_err(err)?;
    Ok(repo)
}

/// Credentials and host-key checks for a remote.
pub struct Auth {
    pub url: String,
    pub ssh_key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

/// Fetch every branch and tag (forced, pruned).
pub fn fetch(repo: &Repository, auth: &Auth) -> Result<(), GitError> {
    let err = |source| GitError::Fetch {
        url: redact_url(&auth.url),
        source,
    };
    let mut cb = RemoteCallbacks::new();
    let mut attempts = 0;
    let url = auth.url.clone();
    let key = auth.ssh_key.clone();
    cb.credentials(move |_u, username, allowed| {
        attempts += 1;
        if attempts > 3 {
            return Err(git2::Error::from_str(
                "authentication failed (credentials refused)",
            ));
        }
        if allowed.contains(CredentialType::SSH_KEY)
            && let Some(k) = &key
        {
            return Cred::ssh_key(username.unwrap_or("git"), None, k, None);
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some((u, p)) = url_userpass(&url)
        {
            return Cred::userpass_plaintext(&u, &p);
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git"));
        }
        Err(git2::Error::from_str(
            "the remote wants credentials and none are configured",
        ))
    });
    if let Some(kh) = auth.known_hosts.clone() {
        cb.certificate_check(move |cert, host| {
            let Some(hk) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(key) = hk.hostkey() else {
                return Err(git2::Error::from_str("the server sent no host key"));
            };
            if known_host(&kh, host, key) {
                Ok(CertificateCheckStatus::CertificateOk)
            } else {
                Err(git2::Error::from_str(&format!(
                    "host key of {host} is not in {}",
                    kh.display()
                )))
            }
        });
    }
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(cb)
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::None);
    let mut remote = repo.find_remote("origin").map_err(err)?;
    remote.fetch(&REFSPECS, Some(&mut fo), None).map_err(err)
}

/// `--git-branch`: a 40-hex commit, else the remote branch, else a tag.
pub fn resolve(repo: &Repository, target: &str) -> Result<Oid, GitError> {
    if target.len() == 40
        && target.chars().all(|c| c.is_ascii_hexdigit())
        && let Ok(oid) = Oid::from_str(target)
    {
        return match repo.find_commit(oid) {
            Ok(c) => Ok(c.id()),
            Err(_) => Err(GitError::UnknownTarget {
                target: target.into(),
            }),
        };
    }
    for name in [
        format!("refs/remotes/origin/{target}"),
        format!("refs/tags/{target}"),
    ] {
        if let Ok(r) = repo.find_reference(&name)
            && let Ok(c) = r.peel_to_commit()
        {
            return Ok(c.id());
        }
    }
    Err(GitError::UnknownTarget {
        target: target.into(),
    })
}

pub fn commit_info(repo: &Repository, oid: Oid) -> Result<CommitInfo, GitError> {
    let c = repo.find_commit(oid).map_err(|source| GitError::Commit {
        commit: oid.to_string(),
        source,
    })?;
    let a = c.author();
    let time = jiff::Timestamp::from_second(c.time().seconds())
        .map(|t| t.to_string())
        .unwrap_or_default();
    Ok(CommitInfo {
        id: oid.to_string(),
        author: format!("{} <{}>", a.name().unwrap_or(""), a.email().unwrap_or("")),
        time,
        subject: c.summary().ok().flatten().unwrap_or("").to_string(),
    })
}

/// The manifest files under `paths` (repository-relative, `""` = root) at `oid`.
/// A path missing from the commit is returned in the second list.
pub fn read_tree(
    repo: &Repository,
    oid: Oid,
    paths: &[String],
) -> Result<(Vec<TreeFile>, Vec<String>), GitError> {
    let cerr = |source| GitError::Commit {
        commit: oid.to_string(),
        source,
    };
    let root = repo.find_commit(oid).and_then(|c| c.tree()).map_err(cerr)?;
    let mut files: Vec<TreeFile> = Vec::new();
    let mut missing = Vec::new();
    let mut bytes = 0u64;
    for p in paths {
        let (tree, prefix) = if p.is_empty() {
            (root.clone(), String::new())
        } else {
            match root.get_path(Path::new(p)) {
                Err(_) => {
                    missing.push(p.clone());
                    continue;
                }
                Ok(entry) if entry.kind() == Some(git2::ObjectType::Blob) => {
                    files.push((p.clone(), read_blob(repo, entry.id(), &mut bytes)));
                    continue;
                }
                Ok(entry) => (repo.find_tree(entry.id()).map_err(cerr)?, format!("{p}/")),
            }
        };
        // a tree may name one subtree many times (a "git bomb"): the walk
        // is bounded by entries looked at, depth, files and bytes
        let mut found = Vec::new();
        let mut entries = 0usize;
        let mut over: Option<(&'static str, usize)> = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            entries += 1;
            if entries > scan::MAX_ENTRIES {
                over = Some(("tree entries", scan::MAX_ENTRIES));
                return git2::TreeWalkResult::Abort;
            }
            let name = entry.name().unwrap_or("");
            if name.starts_with('.') {
                return git2::TreeWalkResult::Skip;
            }
            let is_tree = entry.kind() == Some(git2::ObjectType::Tree);
            if is_tree && dir.matches('/').count() >= scan::MAX_DEPTH {
                found.push((format!("{prefix}{dir}{name}"), None));
                return git2::TreeWalkResult::Skip;
            }
            if entry.kind() == Some(git2::ObjectType::Blob) && scan::is_manifest_name(name) {
                if found.len() >= scan::MAX_FILES {
                    over = Some(("manifest files", scan::MAX_FILES));
                    return git2::TreeWalkResult::Abort;
                }
                found.push((format!("{prefix}{dir}{name}"), Some(entry.id())));
            }
            git2::TreeWalkResult::Ok
        })
        .or_else(|e| if over.is_some() { Ok(()) } else { Err(e) })
        .map_err(cerr)?;
        if let Some((what, limit)) = over {
            return Err(GitError::TooLarge {
                commit: oid.to_string(),
                what,
                limit: limit as u64,
            });
        }
        for (path, id) in found {
            if files.iter().any(|(f, _)| *f == path) {
                continue;
            }
            let text = match id {
                Some(id) => read_blob(repo, id, &mut bytes),
                None => Err(format!(
                    "more than {} directory levels (not read)",
                    scan::MAX_DEPTH
                )),
            };
            if bytes > scan::MAX_TOTAL_BYTES {
                return Err(GitError::TooLarge {
                    commit: oid.to_string(),
                    what: "bytes of manifests",
                    limit: scan::MAX_TOTAL_BYTES,
                });
            }
            files.push((path, text));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((files, missing))
}

/// A blob's text, if it is at most [`scan::MAX_FILE_BYTES`] (checked from
/// its header, before it is loaded); its size is added to `bytes`.
fn read_blob(repo: &Repository, id: Oid, bytes: &mut u64) -> Result<String, String> {
    let (size, _) = repo
        .odb()
        .and_then(|odb| odb.read_header(id))
        .map_err(|e| e.message().to_string())?;
    if size as u64 > scan::MAX_FILE_BYTES {
        return Err(format!(
            "file is larger than {} bytes (not read)",
            scan::MAX_FILE_BYTES
        ));
    }
    *bytes += size as u64;
    let blob = repo.find_blob(id).map_err(|e| e.message().to_string())?;
    String::from_utf8(blob.content().to_vec()).map_err(|_| "not UTF-8 text".to_string())
}

/// The commit applied last time (persisted across restarts), if it is in the clone.
pub fn load_applied(repo: &Repository, dir: &Path) -> Option<Oid> {
    let text = std::fs::read_to_string(dir.join(APPLIED_FILE)).ok()?;
    let oid = Oid::from_str(text.trim()).ok()?;
    repo.find_commit(oid).ok().map(|c| c.id())
}

/// Persist the applied commit: temp file, fsync, rename, fsync the directory.
pub fn save_applied(dir: &Path, oid: Oid) -> Result<(), GitError> {
    let path = dir.join(APPLIED_FILE);
    berth_state::write_atomic(&path, format!("{oid}\n").as_bytes())
        .map_err(|source| GitError::SaveApplied { path, source })
}

/// `scheme://user:pass@host/...` -> `scheme://***@host/...`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    url.to_string()
}

fn url_userpass(url: &str) -> Option<(String, String)> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    let (u, p) = rest[..at].split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Is `key` listed for `host` in an OpenSSH known_hosts file? Plain host
/// patterns only (`host`, `[host]:port`, comma lists); hashed entries are not supported.
fn known_host(file: &Path, host: &str, key: &[u8]) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    let want = base64::engine::general_purpose::STANDARD.encode(key);
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .any(|l| {
            let mut it = l.split_whitespace();
            let (Some(hosts), Some(_kt), Some(k)) = (it.next(), it.next(), it.next()) else {
                return false;
            };
            k == want
                && hosts.split(',').any(|h| {
                    h == host
                        || h.strip_prefix('[')
                            .and_then(|h| h.split_once("]:"))
                            .is_some_and(|(h, _)| h == host)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact_url("https://bob:s3cret@example.com/x.git"),
            "https://***@example.com/x.git"
        );
        assert_eq!(
            redact_url("https://example.com/x.git"),
            "https://example.com/x.git"
        );
        assert_eq!(
            redact_url("ssh://git@example.com/x.git"),
            "ssh://***@example.com/x.git"
        );
        assert_eq!(
            url_userpass("https://bob:s3cret@example.com/x"),
            Some(("bob".into(), "s3cret".into()))
        );
    }

    #[test]
    fn known_hosts_matching() {
        let d = tempfile::tempdir().unwrap();
        let key = b"not-a-real-key";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let f = d.path().join("kh");
        std::fs::write(
            &f,
            format!(
                "# c\ngit.example,10.0.0.1 ssh-ed25519 {b64}\n[other]:2222 ssh-ed25519 {b64}\n"
            ),
        )
        .unwrap();
        assert!(known_host(&f, "git.example", key));
        assert!(known_host(&f, "other", key));
        assert!(!known_host(&f, "evil", key));
        assert!(!known_host(&f, "git.example", b"another"));
    }
}
