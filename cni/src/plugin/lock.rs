//! One call at a time per attachment (container ID + interface name).
//!
//! A runtime may retry an ADD whose answer it did not get, or send a DEL while a slow ADD of the
//! same attachment still runs. Both calls work on the same host interface name and the same
//! allocation, so without serialization one call's clean-up would delete the other's interface
//! and release its address. ADD, DEL and CHECK therefore hold an exclusive `flock` on
//! `/run/weft/attachments/<host interface name>.lock` for their whole run: the kernel drops it
//! when the process exits, so a killed call never blocks the retry. The files live on tmpfs (gone
//! at reboot, like the interfaces they guard) and DEL removes its file; a waiter that locked a
//! file removed under it notices (the path no longer names its inode) and locks the new one.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::env::Attachment;
use crate::error::{CniError, code};
use crate::naming::host_interface_name;

/// Where the attachment locks live.
pub const LOCK_DIR: &str = "/run/weft/attachments";

/// The exclusive lock of one attachment, held until dropped.
#[derive(Debug)]
pub struct AttachmentLock {
    path: PathBuf,
    _file: File,
}

impl AttachmentLock {
    /// Waits for and takes the lock of `attachment` under `dir`.
    pub fn acquire(dir: &Path, attachment: &Attachment) -> Result<Self, CniError> {
        let path = dir.join(format!("{}.lock", host_interface_name(attachment)));
        let fail = |step: &str, error: std::io::Error| {
            CniError::new(
                code::IO,
                format!("attachment lock {}: {step}: {error}", path.display()),
            )
        };
        std::fs::create_dir_all(dir).map_err(|error| fail("create directory", error))?;
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|error| fail("open", error))?;
            file.lock().map_err(|error| fail("lock", error))?;
            let held = file.metadata().map_err(|error| fail("stat", error))?;
            match std::fs::metadata(&path) {
                Ok(current) if current.dev() == held.dev() && current.ino() == held.ino() => {
                    return Ok(Self { path, _file: file });
                }
                // Removed (or replaced) by the DEL that held it before us: lock the new file.
                _ => continue,
            }
        }
    }

    /// Removes the lock file, then releases the lock: the attachment is gone (after DEL).
    pub fn remove(self) {
        if let Err(error) = std::fs::remove_file(&self.path) {
            tracing::warn!(%error, path = %self.path.display(), "removing the attachment lock");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    /// Whether /proc/locks lists a caller blocked on the `flock` of inode `ino` (a waiting
    /// caller is shown as `-> FLOCK ...` under the lock it waits for).
    fn blocked_on(ino: u64) -> bool {
        let locks = std::fs::read_to_string("/proc/locks").expect("read /proc/locks");
        locks.lines().any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"->")
                && fields.get(2) == Some(&"FLOCK")
                && fields
                    .iter()
                    .any(|field| field.rsplit(':').next() == Some(&ino.to_string()))
        })
    }

    #[test]
    fn a_second_caller_waits_until_the_first_releases() {
        let dir = tempfile::tempdir().unwrap();
        let first = AttachmentLock::acquire(dir.path(), &attachment("a")).unwrap();
        let held = std::fs::metadata(&first.path).unwrap().ino();
        // Another attachment is independent.
        drop(AttachmentLock::acquire(dir.path(), &attachment("b")).unwrap());
        let (sender, receiver) = std::sync::mpsc::channel();
        let path = dir.path().to_owned();
        let waiter = std::thread::spawn(move || {
            let lock = AttachmentLock::acquire(&path, &attachment("a")).unwrap();
            sender.send(()).unwrap();
            lock
        });
        // The first lock is released only once the kernel shows the waiter blocked on it, so
        // the waiter provably waited; a waiter that got through while the first lock was held
        // fails here instead.
        loop {
            assert!(
                receiver.try_recv().is_err(),
                "the waiter took the lock while the first caller held it"
            );
            if blocked_on(held) {
                break;
            }
            std::thread::yield_now();
        }
        first.remove();
        receiver.recv().unwrap();
        let second = waiter.join().unwrap();
        assert!(second.path.is_file(), "the waiter locked a fresh file");
        // The waiter now holds the lock: nobody else gets it.
        let other = File::open(&second.path).unwrap();
        assert!(
            matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
            "the waiter's lock is exclusive"
        );
        second.remove();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
