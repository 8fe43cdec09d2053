//! Pod network namespaces, bind-mounted under `<run>/netns/<pod key>`.
//!
//! A namespace is created by a dedicated OS thread (never a tokio worker, never
//! a fork) that calls `unshare(CLONE_NEWNET)` and bind-mounts
//! `/proc/thread-self/ns/net` onto the file. The same thread opens an rtnetlink
//! socket, which stays bound to the namespace it was created in after the thread
//! exits: that gives async code a handle that configures the inside of the pod
//! (CRATES.md §3). Removal is `umount2(MNT_DETACH)` + unlink; the namespace
//! itself goes away with its last user.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("create netns directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("create bind-mount target {path}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unshare(CLONE_NEWNET) for {path}")]
    Unshare {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("bind-mount the new netns onto {path}")]
    BindMount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("open netns {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("setns into {path}")]
    Setns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("open rtnetlink socket inside netns {path}")]
    Netlink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spawn netns helper thread")]
    Thread(#[source] std::io::Error),
    #[error("netns helper thread for {path} died")]
    ThreadDied { path: PathBuf },
    #[error("unmount netns {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("remove netns file {path}")]
    Unlink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("list netns directory {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// True if `path` is a bind-mounted network namespace.
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Create (when `create`) or enter the namespace at `path` and return an
/// rtnetlink handle bound to it. The connection task runs on the current runtime.
pub async fn handle(path: &Path, create: bool) -> Result<rtnetlink::Handle, NetnsError> {
    let rt = tokio::runtime::Handle::current();
    let p = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let r = in_thread(&p, create, &rt);
            let _ = tx.send(r);
        })
        .map_err(NetnsError::Thread)?;
    let (conn, handle) = rx.await.map_err(|_| NetnsError::ThreadDied {
        path: path.to_path_buf(),
    })??;
    tokio::spawn(conn);
    Ok(handle)
}

type Conn = rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>;

/// Runs on a throw-away thread: its netns changes die with it.
fn in_thread(
    path: &Path,
    create: bool,
    rt: &tokio::runtime::Handle,
) -> Result<(Conn, rtnetlink::Handle), NetnsError> {
    if create {
        let dir = path.parent().expect("netns path has a parent");
        fs::create_dir_all(dir).map_err(|source| NetnsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| NetnsError::CreateFile {
                path: path.to_path_buf(),
                source,
            })?;
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Unshare {
            path: path.to_path_buf(),
            source,
        })?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|source| NetnsError::BindMount {
            path: path.to_path_buf(),
            source,
        })?;
    } else {
        let f = File::open(path).map_err(|source| NetnsError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        nix::sched::setns(f, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Setns {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let _enter = rt.enter(); // the socket's AsyncFd registers with the runtime
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetnsError::Netlink {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((conn, handle))
}

/// Unmount and unlink; a namespace that is already gone is fine.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    // ENAMETOOLONG: a name that long was never created, so there is nothing
    // to remove (and the pod's IP must still be released after it)
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(())
        | Err(nix::Error::EINVAL)
        | Err(nix::Error::ENOENT)
        | Err(nix::Error::ENAMETOOLONG) => {}
        Err(source) => {
            return Err(NetnsError::Unmount {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => Ok(()),
        Err(source) => Err(NetnsError::Unlink {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// File names under the netns directory (pod keys).
pub fn list(dir: &Path) -> Result<Vec<String>, NetnsError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetnsError::List {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|source| NetnsError::List {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(n) = e.file_name().to_str() {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    // Regression (issue 14): a pod key longer than a file name made removal
    // fail, so the pod's IP was never released.
    #[test]
    fn removing_a_name_too_long_to_exist_is_done() {
        let dir = std::env::temp_dir();
        let p = dir.join("x".repeat(300));
        super::remove(&p).expect("nothing to remove");
    }
}
