//! The endpoint records ADD writes (see `weft_cni::endpoint`), kept in memory and followed with
//! inotify: each change wakes the dataplane loop for a policy pass, so a new pod is programmed
//! as soon as it is wired, before the kubelet posts its IP. A rescan every few seconds heals a
//! missed event (an overflowed inotify queue), and polling takes over if inotify is unavailable.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_cni::endpoint::{self, EndpointRecord};

const RESCAN: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

/// The records of this node's wired pods, by host interface.
#[derive(Clone)]
pub struct EndpointWatch {
    dir: PathBuf,
    records: Arc<Mutex<BTreeMap<String, EndpointRecord>>>,
}

impl EndpointWatch {
    /// Reads `dir` (creating it) and follows it on a thread; `changed` runs after each change.
    pub fn spawn(dir: PathBuf, changed: impl Fn() + Send + 'static) -> Self {
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %error, "creating the endpoint directory");
        }
        let watch = Self {
            dir,
            records: Arc::default(),
        };
        watch.rescan();
        let follower = watch.clone();
        std::thread::Builder::new()
            .name("endpoint-watch".into())
            .spawn(move || follower.follow(&changed))
            .expect("spawning the endpoint watch thread");
        watch
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The records as last read.
    pub fn records(&self) -> Vec<EndpointRecord> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, EndpointRecord>> {
        self.records
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Reads the whole directory; returns whether anything changed.
    fn rescan(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return false;
        };
        let mut fresh = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(record) = self.read(&name) {
                fresh.insert(name, record);
            }
        }
        let mut records = self.lock();
        let changed = *records != fresh;
        *records = fresh;
        changed
    }

    fn read(&self, name: &str) -> Option<EndpointRecord> {
        match endpoint::read(&self.dir, name) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "ignoring an endpoint record");
                None
            }
        }
    }

    /// Re-reads one file; returns whether the record changed.
    fn refresh(&self, name: &str) -> bool {
        let record = self.read(name);
        let mut records = self.lock();
        match record {
            Some(record) => records.insert(name.to_owned(), record.clone()) != Some(record),
            None => records.remove(name).is_some(),
        }
    }

    fn follow(&self, changed: &dyn Fn()) {
        let Some(fd) = inotify(&self.dir) else {
            tracing::warn!(dir = %self.dir.display(), "inotify unavailable; polling the endpoint directory");
            loop {
                std::thread::sleep(POLL);
                if self.rescan() {
                    changed();
                }
            }
        };
        let mut buffer = [0u8; 16 * 1024];
        loop {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, RESCAN.as_millis() as i32) };
            if ready <= 0 {
                if self.rescan() {
                    changed();
                }
                continue;
            }
            // SAFETY: reading into a buffer we own, of the length given.
            let length = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
            if length <= 0 {
                continue;
            }
            let mut any = false;
            let mut offset = 0usize;
            let header = std::mem::size_of::<libc::inotify_event>();
            while offset + header <= length as usize {
                // SAFETY: the kernel wrote whole events; read_unaligned copes with alignment.
                let event: libc::inotify_event = unsafe {
                    std::ptr::read_unaligned(
                        buffer[offset..].as_ptr().cast::<libc::inotify_event>(),
                    )
                };
                let name_bytes = &buffer[offset + header..offset + header + event.len as usize];
                let name = String::from_utf8_lossy(name_bytes)
                    .trim_end_matches('\0')
                    .to_owned();
                if event.mask & libc::IN_Q_OVERFLOW != 0 {
                    any |= self.rescan();
                } else if !name.is_empty() && !name.starts_with('.') {
                    any |= self.refresh(&name);
                }
                offset += header + event.len as usize;
            }
            if any {
                changed();
            }
        }
    }
}

fn inotify(dir: &Path) -> Option<i32> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: plain system calls on a descriptor we own and a NUL-terminated path.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let mask = libc::IN_CLOSE_WRITE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_DELETE
            | libc::IN_CREATE;
        if libc::inotify_add_watch(fd, path.as_ptr(), mask) < 0 {
            libc::close(fd);
            return None;
        }
        Some(fd)
    }
}
