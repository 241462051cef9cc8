//! Locating the pinned Helm commands built by `e2e/scripts/build-helm.sh` (Helm 3 and Helm 4 from
//! their Go modules), and running them against a local cluster with Helm's own state (cache,
//! config, repositories) kept in a directory of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::binaries::target_dir;

const VERSIONS: &str = include_str!("../versions.env");

/// The major Helm versions the chart is tested with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelmMajor {
    V3,
    V4,
}

impl HelmMajor {
    fn version_key(self) -> &'static str {
        match self {
            Self::V3 => "HELM3_VERSION",
            Self::V4 => "HELM4_VERSION",
        }
    }

    fn env_override(self) -> &'static str {
        match self {
            Self::V3 => "WEFT_HELM3_BIN",
            Self::V4 => "WEFT_HELM4_BIN",
        }
    }
}

/// One pinned Helm binary.
#[derive(Debug, Clone)]
pub struct Helm {
    pub major: HelmMajor,
    /// The pinned version, e.g. `v3.22.0`.
    pub version: String,
    pub path: PathBuf,
}

impl Helm {
    /// `$WEFT_HELM3_BIN` / `$WEFT_HELM4_BIN` when set, else `<target>/helm/<version>/helm`.
    pub fn locate(major: HelmMajor) -> Result<Self, Error> {
        let key = major.version_key();
        let version = VERSIONS
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(|value| value.trim().to_string())
            .ok_or_else(|| Error::MissingBinaries {
                dir: PathBuf::from("e2e/versions.env"),
                missing: key.to_string(),
            })?;
        let path = match std::env::var_os(major.env_override()) {
            Some(path) => PathBuf::from(path),
            None => target_dir().join("helm").join(&version).join("helm"),
        };
        if !path.is_file() {
            return Err(Error::MissingHelm {
                path,
                variable: major.env_override(),
            });
        }
        Ok(Self {
            major,
            version,
            path,
        })
    }

    /// A `helm` command whose cache, config and data live under `state_dir`, talking to the
    /// cluster of `kubeconfig`.
    pub fn command(&self, state_dir: &Path, kubeconfig: &Path) -> Command {
        let mut command = Command::new(&self.path);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", state_dir)
            .env("HELM_CACHE_HOME", state_dir.join("cache"))
            .env("HELM_CONFIG_HOME", state_dir.join("config"))
            .env("HELM_DATA_HOME", state_dir.join("data"))
            .env("KUBECONFIG", kubeconfig);
        command
    }

    /// A `helm` command for commands that need no cluster (`lint`, `template`).
    pub fn offline(&self, state_dir: &Path) -> Command {
        self.command(state_dir, &state_dir.join("no-cluster.kubeconfig"))
    }
}
