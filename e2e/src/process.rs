//! Starting and stopping the control-plane processes.
//!
//! A cluster owned by a test process must never outlive it, even when a test panics or the
//! harness exits without running destructors. Two mechanisms cover that:
//! - every child gets `PR_SET_PDEATHSIG(SIGKILL)`. The kernel ties that signal to the *thread*
//!   that forked the child, so children are forked from one spawner thread that lives as long as
//!   the process (tokio's blocking threads come and go);
//! - an `atexit` hook kills every child still registered and removes registered directories.
//!
//! A detached cluster (`local-cluster up`) instead puts its children in their own session so they
//! survive the command that started them; `local-cluster down` stops them by pid.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::Error;

/// Whether children die with the process that started them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the starting process exits, however it exits.
    BoundToThisProcess,
    /// Survives the starting process; stopped explicitly by pid.
    Detached,
}

/// One running control-plane process, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ManagedProcess {
    pub name: String,
    pub log: PathBuf,
    child: Child,
    lifetime: Lifetime,
}

type SpawnReply = mpsc::Sender<std::io::Result<Child>>;

static SPAWNER: OnceLock<Mutex<mpsc::Sender<(Command, SpawnReply)>>> = OnceLock::new();
static LIVE_PIDS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static EXIT_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static EXIT_HOOK: Once = Once::new();

extern "C" fn kill_children_at_exit() {
    if let Ok(pids) = LIVE_PIDS.lock() {
        for pid in pids.iter() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    }
    if let Ok(dirs) = EXIT_DIRS.lock() {
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn install_exit_hook() {
    EXIT_HOOK.call_once(|| {
        // SAFETY: registering a plain extern "C" function with atexit(3).
        unsafe { libc::atexit(kill_children_at_exit) };
    });
}

/// Removes `dir` when the process exits (for clusters that are never dropped).
pub fn remove_at_exit(dir: &Path) {
    install_exit_hook();
    EXIT_DIRS
        .lock()
        .expect("exit dir registry")
        .push(dir.to_path_buf());
}

fn spawner() -> &'static Mutex<mpsc::Sender<(Command, SpawnReply)>> {
    SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<(Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("weft-e2e-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawn the process spawner thread");
        Mutex::new(requests)
    })
}

impl ManagedProcess {
    /// Starts `program args…` with stdout and stderr appended to `log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        lifetime: Lifetime,
    ) -> Result<Self, Error> {
        Self::start_with_env(name, program, args, &[], log, lifetime)
    }

    /// [`Self::start`] with `env` added to the inherited environment.
    pub fn start_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
        lifetime: Lifetime,
    ) -> Result<Self, Error> {
        let out = File::create(log).map_err(|e| Error::io(log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(log, e))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = match lifetime {
            Lifetime::BoundToThisProcess => {
                install_exit_hook();
                // SAFETY: prctl(2) is async-signal-safe and touches no memory of the parent.
                unsafe {
                    command.pre_exec(|| {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let (reply, answer) = mpsc::channel();
                spawner()
                    .lock()
                    .expect("spawner channel")
                    .send((command, reply))
                    .map_err(|_| Error::Start(name.into(), "spawner thread is gone".into()))?;
                answer
                    .recv()
                    .map_err(|_| Error::Start(name.into(), "spawner thread is gone".into()))?
            }
            Lifetime::Detached => {
                command.process_group(0);
                command.spawn()
            }
        }
        .map_err(|e| Error::Start(name.into(), format!("{}: {e}", program.display())))?;
        if lifetime == Lifetime::BoundToThisProcess {
            LIVE_PIDS
                .lock()
                .expect("pid registry")
                .insert(child.id() as i32);
        }
        Ok(Self {
            name: name.into(),
            log: log.to_path_buf(),
            child,
            lifetime,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the end of the process's log when it has exited.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name.clone(),
                status: status.to_string(),
                log_tail: log_tail(&self.log),
            }),
            Err(e) => Err(Error::io(&self.log, e)),
        }
    }

    /// Leaves a detached process running and forgets it.
    pub fn release(self) {
        std::mem::forget(self);
    }

    fn stop(&mut self) {
        stop_pid(self.child.id() as i32, Duration::from_secs(5));
        let _ = self.child.wait();
        if self.lifetime == Lifetime::BoundToThisProcess {
            LIVE_PIDS
                .lock()
                .expect("pid registry")
                .remove(&(self.child.id() as i32));
        }
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a process with this pid runs. A zombie (exited, not yet reaped by a parent that may
/// never reap it) does not count.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state letter follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

/// SIGTERM, wait up to `grace`, then SIGKILL. Returns once the pid is gone or reaped elsewhere.
pub fn stop_pid(pid: i32, grace: Duration) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: WNOHANG waitpid on a pid that may or may not be our child.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped == pid || !pid_alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Resident memory of a running process in MiB, from `/proc/<pid>/status`.
pub fn rss_mib(pid: i32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The last lines of a log file, for error messages.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
