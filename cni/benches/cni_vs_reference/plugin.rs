//! One plugin set under test and one call of it: the plugin process is started inside the
//! "host" namespace, fed its config, and reaped with `wait4` so that its own CPU time (user +
//! sys, including an IPAM plugin it execs and waits for) and peak RSS are measured with the wall
//! time.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_cni::netns::NamedNetns;

pub struct Plugin {
    pub label: &'static str,
    binary: PathBuf,
    cni_path: PathBuf,
    config: String,
    _data_dir: tempfile::TempDir,
}

/// What one call cost.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub wall: Duration,
    /// User + system CPU time of the plugin process and the children it waited for.
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

fn timeval(value: libc::timeval) -> Duration {
    Duration::from_secs(value.tv_sec as u64) + Duration::from_micros(value.tv_usec as u64)
}

impl Plugin {
    /// `binary` with IPAM `ipam` over `subnet`, configs of `cni_version`; `exec_ipam` makes weft
    /// exec its IPAM plugin instead of running it in-process.
    pub fn new(
        label: &'static str,
        binary: &Path,
        ipam: &str,
        subnet: &str,
        cni_version: &str,
        exec_ipam: bool,
    ) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = json!({
            "cniVersion": cni_version,
            "name": format!("wc-bench-{}", label.len()),
            "type": binary.file_name().unwrap().to_str().unwrap(),
            "mtu": 1450,
            "ipam": {"type": ipam, "ranges": [[{"subnet": subnet}]], "dataDir": data_dir.path()},
        });
        if exec_ipam {
            config["execIpam"] = json!(true);
        }
        Self {
            label,
            binary: binary.to_owned(),
            cni_path: binary.parent().unwrap().to_owned(),
            config: config.to_string(),
            _data_dir: data_dir,
        }
    }

    /// The command of one call, entering `host` before exec; run through `wrapper` (a program
    /// and its arguments, the plugin appended) when it is not empty.
    fn command(
        &self,
        wrapper: &[String],
        host: &NamedNetns,
        command: &str,
        container: &str,
        netns: &Path,
    ) -> Command {
        let host_fd = host.fd().as_raw_fd();
        let mut process = match wrapper.split_first() {
            Some((program, args)) => {
                let mut process = Command::new(program);
                process.args(args).arg(&self.binary);
                process
            }
            None => Command::new(&self.binary),
        };
        process
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", netns)
            .env("CNI_PATH", &self.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: setns is async-signal-safe; the fd outlives the call.
        unsafe {
            process.pre_exec(move || {
                nix::sched::setns(
                    BorrowedFd::borrow_raw(host_fd),
                    nix::sched::CloneFlags::CLONE_NEWNET,
                )
                .map_err(std::io::Error::from)
            });
        }
        process
    }

    pub fn config(&self) -> &str {
        &self.config
    }

    /// Runs one call inside `host` and returns what it cost.
    pub fn call(&self, host: &NamedNetns, command: &str, container: &str, netns: &Path) -> Call {
        self.call_via(&[], host, command, container, netns)
    }

    /// [`Self::call`] through `wrapper` (e.g. a tracer).
    pub fn call_via(
        &self,
        wrapper: &[String],
        host: &NamedNetns,
        command: &str,
        container: &str,
        netns: &Path,
    ) -> Call {
        let mut process = self.command(wrapper, host, command, container, netns);
        let started = Instant::now();
        #[expect(
            clippy::zombie_processes,
            reason = "reaped below with wait4, which also returns its resource usage"
        )]
        let mut child = process.spawn().expect("spawn plugin");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.config.as_bytes())
            .unwrap();
        let mut output = Vec::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_end(&mut output)
            .unwrap();
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the child is ours and not reaped yet; both pointers are valid for the call.
        let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        let wall = started.elapsed();
        assert_eq!(
            reaped,
            child.id() as i32,
            "wait4: {}",
            std::io::Error::last_os_error()
        );
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{} {command} failed: {}",
            self.label,
            String::from_utf8_lossy(&output)
        );
        Call {
            wall,
            cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss as u64,
        }
    }
}
