//! Counting one user's API requests from the API server's audit log (JSON lines, Metadata
//! level, the `RequestReceived` stage omitted). A request counts once: when it completes, or for
//! a watch when it starts (a watch that stays open has no completion yet). Writes are create,
//! update, patch, delete and deletecollection.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The audit log of a local cluster.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

/// One user's requests between two offsets of the log.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub requests: u64,
    pub writes: u64,
    /// Objects the user created: creates, and server-side applies answered 201 Created.
    pub created: u64,
    /// Requests by `verb resource`, for explaining the totals.
    pub by_kind: BTreeMap<String, u64>,
}

impl Counts {
    /// The `n` most frequent `verb resource` pairs, as `verb resource×count`.
    pub fn top(&self, n: usize) -> String {
        let mut pairs: Vec<(&String, &u64)> = self.by_kind.iter().collect();
        pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        pairs
            .iter()
            .take(n)
            .map(|(kind, count)| format!("{kind}×{count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl AuditLog {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    /// The current end of the log.
    pub fn offset(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |meta| meta.len())
    }

    /// The requests of `user` logged between `from` and `to` (offsets from [`Self::offset`]).
    pub fn count(&self, user: &str, from: u64, to: u64) -> anyhow::Result<Counts> {
        let mut file =
            std::fs::File::open(&self.path).with_context(|| format!("{}", self.path.display()))?;
        file.seek(SeekFrom::Start(from))?;
        let mut text = String::new();
        file.take(to.saturating_sub(from))
            .read_to_string(&mut text)?;
        let mut counts = Counts::default();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                continue; // a line cut at `to`
            };
            if event.pointer("/user/username").and_then(Value::as_str) != Some(user) {
                continue;
            }
            let verb = event["verb"].as_str().unwrap_or("");
            let stage = event["stage"].as_str().unwrap_or("");
            let counted = match verb {
                "watch" => stage == "ResponseStarted",
                _ => stage == "ResponseComplete",
            };
            if !counted {
                continue;
            }
            counts.requests += 1;
            if WRITES.contains(&verb) {
                counts.writes += 1;
            }
            let code = event
                .pointer("/responseStatus/code")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if (verb == "create" && (200..300).contains(&code)) || (verb == "patch" && code == 201)
            {
                counts.created += 1;
            }
            let resource = event
                .pointer("/objectRef/resource")
                .and_then(Value::as_str)
                .unwrap_or("-");
            let subresource = event
                .pointer("/objectRef/subresource")
                .and_then(Value::as_str)
                .map(|sub| format!("/{sub}"))
                .unwrap_or_default();
            *counts
                .by_kind
                .entry(format!("{verb} {resource}{subresource}"))
                .or_default() += 1;
        }
        Ok(counts)
    }
}
