//! The allocation store: one file per allocated address under `<dataDir>/<network>/`, named
//! `<ip>~<containerID>~<ifname>` so one directory listing answers "which addresses are taken and
//! by whom" without reading any file. All access happens under an exclusive file lock; records
//! are written to a temporary file and renamed into place, so a crash at any point leaves either
//! no record or a whole one (leftover temporary files are removed under the next lock).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::env::Attachment;

const LOCK_FILE: &str = "lock";
const TEMPORARY_PREFIX: &str = ".tmp-";
const CURSOR_PREFIX: &str = "last_reserved_ip.";
const SEPARATOR: char = '~';

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
#[error("allocation store {path}: {step}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

/// One allocated address and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ip: IpAddr,
    pub owner: Attachment,
}

impl Record {
    fn file_name(&self) -> String {
        format!(
            "{}{SEPARATOR}{}{SEPARATOR}{}",
            self.ip, self.owner.container_id, self.owner.ifname
        )
    }

    /// Parses a record file name; `None` for anything else in the directory.
    fn from_file_name(name: &str) -> Option<Self> {
        let mut parts = name.splitn(3, SEPARATOR);
        let ip = parts.next()?.parse().ok()?;
        let container_id = parts.next()?.to_owned();
        let ifname = parts.next()?.to_owned();
        Some(Self {
            ip,
            owner: Attachment {
                container_id,
                ifname,
            },
        })
    }
}

/// The store of one network, locked for the lifetime of this value.
pub struct LockedStore {
    dir: PathBuf,
    _lock: File,
}

impl LockedStore {
    /// Opens (creating if needed) `<data_dir>/<network>` and takes its exclusive lock, waiting
    /// for other plugin processes to finish.
    pub fn open(data_dir: &Path, network: &str) -> Result<Self, StoreError> {
        let dir = data_dir.join(network);
        let fail = |step, source| StoreError {
            path: dir.clone(),
            step,
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| fail("create directory", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| fail("open lock file", e))?;
        lock.lock().map_err(|e| fail("lock", e))?;
        Ok(Self { dir, _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn fail(&self, step: &'static str) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError {
            path: self.dir.clone(),
            step,
            source,
        }
    }

    /// Every record, after removing temporary files left by a crashed writer.
    pub fn records(&self) -> Result<Vec<Record>, StoreError> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(self.fail("list"))? {
            let entry = entry.map_err(self.fail("list"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMPORARY_PREFIX) {
                std::fs::remove_file(entry.path()).map_err(self.fail("remove temporary file"))?;
            } else if let Some(record) = Record::from_file_name(name) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Writes a record atomically.
    pub fn insert(&self, record: &Record) -> Result<(), StoreError> {
        let temporary = self
            .dir
            .join(format!("{TEMPORARY_PREFIX}{}", std::process::id()));
        let content = format!(
            "{{\"ip\":\"{}\",\"containerID\":\"{}\",\"ifname\":{}}}\n",
            record.ip,
            record.owner.container_id,
            serde_json::Value::from(record.owner.ifname.as_str())
        );
        let mut file = File::create(&temporary).map_err(self.fail("create record"))?;
        file.write_all(content.as_bytes())
            .map_err(self.fail("write record"))?;
        drop(file);
        std::fs::rename(&temporary, self.dir.join(record.file_name()))
            .map_err(self.fail("commit record"))
    }

    /// Removes a record; a record already gone is fine.
    pub fn remove(&self, record: &Record) -> Result<(), StoreError> {
        match std::fs::remove_file(self.dir.join(record.file_name())) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                Err(self.fail("remove record")(error))
            }
            _ => Ok(()),
        }
    }

    /// The last address handed out from range set `set`, if remembered.
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        std::fs::read_to_string(self.dir.join(format!("{CURSOR_PREFIX}{set}")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Remembers the last address handed out; a torn write only makes the next walk start over.
    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<(), StoreError> {
        std::fs::write(
            self.dir.join(format!("{CURSOR_PREFIX}{set}")),
            ip.to_string(),
        )
        .map_err(self.fail("write last reserved address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(id: &str, ifname: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: ifname.into(),
        }
    }

    #[test]
    fn records_round_trip_through_file_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        let v4 = Record {
            ip: "10.88.0.7".parse().unwrap(),
            owner: owner("abc", "eth0"),
        };
        let v6 = Record {
            ip: "fd00::7".parse().unwrap(),
            owner: owner("abc", "we~ird"),
        };
        store.insert(&v4).unwrap();
        store.insert(&v6).unwrap();
        let mut records = store.records().unwrap();
        records.sort_by_key(|record| record.ip);
        assert_eq!(records, [v4.clone(), v6]);
        store.remove(&v4).unwrap();
        store.remove(&v4).unwrap();
        assert_eq!(store.records().unwrap().len(), 1);
    }

    #[test]
    fn leftover_temporary_files_are_cleaned_and_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        std::fs::write(store.dir().join(".tmp-999"), "{\"ip\":").unwrap();
        assert!(store.records().unwrap().is_empty());
        assert!(!store.dir().join(".tmp-999").exists());
    }

    #[test]
    fn cursor_survives_and_torn_cursor_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        assert_eq!(store.last_reserved(0), None);
        store
            .set_last_reserved(0, "10.88.0.9".parse().unwrap())
            .unwrap();
        assert_eq!(store.last_reserved(0), Some("10.88.0.9".parse().unwrap()));
        std::fs::write(store.dir().join("last_reserved_ip.0"), "10.88.").unwrap();
        assert_eq!(store.last_reserved(0), None);
    }
}
