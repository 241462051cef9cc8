//! Locating the pinned control-plane binaries built by `e2e/scripts/build-control-plane.sh`.

use std::path::{Path, PathBuf};

use crate::Error;

const VERSIONS: &str = include_str!("../versions.env");

/// The pinned versions, read from `e2e/versions.env` at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    pub kubernetes: String,
    pub etcd: String,
    pub kwok: String,
}

impl Versions {
    pub fn pinned() -> Self {
        let value = |key: &str| {
            VERSIONS
                .lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("e2e/versions.env lacks {key}"))
                .trim()
                .to_string()
        };
        Self {
            kubernetes: value("KUBERNETES_VERSION"),
            etcd: value("ETCD_VERSION"),
            kwok: value("KWOK_VERSION"),
        }
    }

    fn directory_name(&self) -> String {
        format!("{}-etcd{}-kwok{}", self.kubernetes, self.etcd, self.kwok)
    }
}

/// The six binaries a local cluster runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub dir: PathBuf,
    pub versions: Versions,
}

pub const REQUIRED: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
];

impl Binaries {
    /// `$WEFT_K8S_BIN_DIR` when set, else `<target>/k8s/<versions>/bin` of this workspace.
    pub fn locate() -> Result<Self, Error> {
        let versions = Versions::pinned();
        let dir = match std::env::var_os("WEFT_K8S_BIN_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => target_dir()
                .join("k8s")
                .join(versions.directory_name())
                .join("bin"),
        };
        let missing: Vec<&str> = REQUIRED
            .iter()
            .copied()
            .filter(|b| !dir.join(b).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingBinaries {
                dir,
                missing: missing.join(", "),
            });
        }
        Ok(Self { dir, versions })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The workspace's cargo target directory (`$CARGO_TARGET_DIR` when set).
pub(crate) fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
}
