//! The endpoint records ADD writes (see `weft_cni::endpoint`), kept in memory and followed with
//! inotify: each change wakes the dataplane loop for a policy pass, so a new pod is programmed
//! as soon as it is wired, before the kubelet posts its IP. A rescan every few seconds heals a
//! missed event (an overflowed inotify queue), and polling takes over if inotify is unavailable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchMask};
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
    /// Reads `dir` (creating it) and follows it on a task of the current tokio runtime;
    /// `changed` runs after each change.
    pub fn spawn(dir: PathBuf, changed: impl Fn() + Send + 'static) -> Self {
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), %error, "creating the endpoint directory");
        }
        let watch = Self {
            dir,
            records: Arc::default(),
        };
        watch.rescan();
        tokio::spawn(watch.clone().follow(changed));
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

    /// Follows the directory until the runtime stops: each inotify event refreshes the one file
    /// it names, an overflow or a quiet `RESCAN` period rereads the whole directory.
    async fn follow(self, changed: impl Fn()) {
        let mut events = match self.inotify_stream() {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "inotify unavailable; polling the endpoint directory");
                loop {
                    tokio::time::sleep(POLL).await;
                    if self.rescan() {
                        changed();
                    }
                }
            }
        };
        loop {
            let any = match tokio::time::timeout(RESCAN, events.next()).await {
                Err(_quiet) => self.rescan(),
                Ok(Some(Ok(event))) if event.mask.contains(EventMask::Q_OVERFLOW) => self.rescan(),
                Ok(Some(Ok(event))) => event
                    .name
                    .map(|name| name.to_string_lossy().into_owned())
                    .filter(|name| !name.is_empty() && !name.starts_with('.'))
                    .is_some_and(|name| self.refresh(&name)),
                Ok(Some(Err(error))) => {
                    tracing::warn!(%error, "reading inotify events; rescanning the endpoint directory");
                    tokio::time::sleep(POLL).await;
                    self.rescan()
                }
                Ok(None) => return,
            };
            if any {
                changed();
            }
        }
    }

    fn inotify_stream(&self) -> std::io::Result<EventStream<Vec<u8>>> {
        let inotify = Inotify::init()?;
        inotify.watches().add(
            &self.dir,
            WatchMask::CLOSE_WRITE
                | WatchMask::MOVED_TO
                | WatchMask::MOVED_FROM
                | WatchMask::DELETE
                | WatchMask::CREATE,
        )?;
        inotify.into_event_stream(vec![0u8; 16 * 1024])
    }
}
