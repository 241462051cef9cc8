//! The processes the dataplane demo runs (one `weft-agent run` per node, `weft-agent
//! controllers` per controllers pod): each logs to a file of its own, dies with the demo
//! (PR_SET_PDEATHSIG) if the demo is killed outright, and is stopped (SIGTERM, then SIGKILL
//! after 5 s) when its [`Child`] is dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Error;

/// A running process, stopped on drop.
#[derive(Debug)]
pub struct Child {
    name: String,
    log: PathBuf,
    process: std::process::Child,
}

impl Child {
    /// Starts `command` as `name`, its output in `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self, Error> {
        let file = std::fs::File::create(log).map_err(|source| Error::Io {
            what: log.display().to_string(),
            source,
        })?;
        let stderr = file.try_clone().map_err(|source| Error::Io {
            what: log.display().to_string(),
            source,
        })?;
        command.stdin(Stdio::null()).stdout(file).stderr(stderr);
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let process = command.spawn().map_err(|source| Error::Io {
            what: format!("starting {name}"),
            source,
        })?;
        Ok(Self {
            name: name.to_owned(),
            log: log.to_owned(),
            process,
        })
    }

    /// Asks the process to stop (SIGTERM) without waiting, so several stop at once.
    pub fn terminate(&self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.process.id() as i32, libc::SIGTERM) };
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Fails with the last lines of its log when the process has exited.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        match self.process.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log_tail: crate::process::log_tail(&self.log),
            }),
            Err(source) => Err(Error::Io {
                what: format!("waiting for {}", self.name),
                source,
            }),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
