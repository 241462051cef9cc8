//! Network namespaces: open one by path, run code inside one on a dedicated thread, and create or
//! delete named namespaces under /run/netns the way container runtimes pin them.
//!
//! Entering a namespace is per thread (setns). Work inside a pod's namespace runs either on a
//! short-lived thread of its own ([`run_in`]), which leaves the caller's threads where they are,
//! or on the calling thread itself ([`with_entered`], cheaper): that thread does switch into the
//! pod's namespace and is switched back before the call returns, so nothing that outlives the
//! call may keep the thread's namespace (if `work` panics, the thread stays in the pod's
//! namespace; the plugins exit on a panic).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// Where named namespaces are pinned, as `ip netns` and container runtimes do.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A failed namespace operation.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("entering network namespace: {0}")]
    Enter(nix::Error),
    #[error("creating network namespace {name}: {step}: {source}")]
    Create {
        name: String,
        step: &'static str,
        source: io::Error,
    },
    #[error("deleting network namespace {name}: {source}")]
    Delete { name: String, source: io::Error },
    #[error("network namespace thread panicked")]
    ThreadPanicked,
}

/// Opens a namespace by path (e.g. /run/netns/x or /proc/PID/ns/net).
pub fn open(path: &Path) -> Result<OwnedFd, NetnsError> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|source| NetnsError::Open {
            path: path.to_owned(),
            source,
        })
}

/// The network namespace of the calling thread.
pub fn current() -> Result<OwnedFd, NetnsError> {
    open(Path::new("/proc/thread-self/ns/net"))
}

/// Runs `work` on a new thread that has entered the namespace `netns`, and returns its result.
pub fn run_in<T, F>(netns: BorrowedFd<'_>, work: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(NetnsError::Enter)?;
                Ok(work())
            })
            .join()
            .map_err(|_| NetnsError::ThreadPanicked)?
    })
}

/// Runs `work` on the calling thread switched into `netns`, and switches it back before
/// returning. Cheaper than [`run_in`] (no thread to create and schedule, which counts on a busy
/// node); `work` must not hand the thread's namespace to anything that outlives it.
pub fn with_entered<T>(netns: BorrowedFd<'_>, work: impl FnOnce() -> T) -> Result<T, NetnsError> {
    let home = current()?;
    setns(netns, CloneFlags::CLONE_NEWNET).map_err(NetnsError::Enter)?;
    let result = work();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET).map_err(NetnsError::Enter)?;
    Ok(result)
}

/// A named network namespace pinned by a bind mount under /run/netns; deleted on drop.
#[derive(Debug)]
pub struct NamedNetns {
    name: String,
    path: PathBuf,
    fd: OwnedFd,
    deleted: bool,
}

impl NamedNetns {
    /// Creates a fresh, empty namespace named `name` (fails if the name is taken).
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        let fail = |step, source| NetnsError::Create {
            name: name.to_owned(),
            step,
            source,
        };
        std::fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| fail("create /run/netns", e))?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| fail("create mount point", e))?;
        let pinned = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<(), NetnsError> {
                    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| fail("unshare", e.into()))?;
                    mount(
                        Some("/proc/thread-self/ns/net"),
                        &path,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| fail("bind mount", e.into()))
                })
                .join()
                .map_err(|_| NetnsError::ThreadPanicked)?
        });
        if let Err(error) = pinned {
            let _ = std::fs::remove_file(&path);
            return Err(error);
        }
        let fd = open(&path)?;
        Ok(Self {
            name: name.to_owned(),
            path,
            fd,
            deleted: false,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Unpins and removes the namespace; the kernel tears it down (with its interfaces) once the
    /// last reference is gone.
    pub fn delete(mut self) -> Result<(), NetnsError> {
        self.unpin()
    }

    fn unpin(&mut self) -> Result<(), NetnsError> {
        if self.deleted {
            return Ok(());
        }
        self.deleted = true;
        let fail = |source| NetnsError::Delete {
            name: self.name.clone(),
            source,
        };
        umount2(&self.path, MntFlags::MNT_DETACH).map_err(|e| fail(e.into()))?;
        std::fs::remove_file(&self.path).map_err(fail)
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        let _ = self.unpin();
    }
}
