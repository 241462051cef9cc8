//! `weft-agent install-cni`: puts the `weft` and `weft-ipam` binaries into the host's CNI bin
//! directory and the conflist into its config directory, and `uninstall-cni` takes them away.
//!
//! Every file is written to a temporary name in the same directory and renamed into place, so
//! a pod created during an upgrade executes either the old binary or the new one, never half a
//! file; a file that already has the right content is left alone (idempotent on restart).
//!
//! The conflist is the operator's, checked by the plugin's own parsers before anything is
//! written; install-cni only adds the paths of this node's state (the node state file and the
//! allocation store) when the conflist does not set them.
//!
//! Other plugins the conflist chains (`portmap` for hostPorts) are installed from the plugin
//! directory when it carries them, so their version matches the conflist's `cniVersion`; one
//! already on the host is used when the image has none, and a chained plugin found in neither
//! place fails the install before anything is written. `uninstall-cni` leaves those standard
//! plugins in place: other networks on the node may chain them too.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use weft_cni::config::PluginConf;
use weft_cni::ipam::config::IpamConf;

/// The plugin binaries install-cni places.
pub const PLUGIN_BINARIES: [&str; 2] = ["weft", "weft-ipam"];

/// Where things go.
#[derive(Debug, Clone)]
pub struct CniPaths {
    /// Where the plugin binaries are taken from.
    pub source_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub conf_name: String,
    /// The agent's state directory on the host (node state file, allocation store).
    pub state_dir: PathBuf,
}

impl CniPaths {
    pub fn conflist(&self) -> PathBuf {
        self.conf_dir.join(&self.conf_name)
    }

    pub fn node_state_file(&self) -> PathBuf {
        self.state_dir.join("node-state.json")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.state_dir.join("ipam")
    }

    /// Where ADD records the pods it wired for the agent (`endpointDir`).
    pub fn endpoint_dir(&self) -> PathBuf {
        self.state_dir.join("endpoints")
    }
}

/// Why installing failed; nothing was changed when the config was refused.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("CNI_NETWORK_CONFIG: {0}")]
    Config(String),
    #[error("CNI_CONF_NAME: {0:?} must be a file name ending in .conflist")]
    ConfName(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The conflist to write, and the plugins other than weft's own it chains (with their index in
/// `plugins`), which must be installed beside weft's.
#[derive(Debug)]
pub struct PreparedConflist {
    pub text: String,
    pub chained: Vec<(usize, String)>,
}

/// Checks the conflist with the plugins' parsers (and every plugin type as a file name), fills
/// in this node's state paths and lists the chained plugins.
pub fn prepare_conflist(text: &str, paths: &CniPaths) -> Result<PreparedConflist, InstallError> {
    let fail = |message: String| InstallError::Config(message);
    let mut conflist: Map<String, Value> = match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(fail("must be a JSON object".into())),
        Err(error) => return Err(fail(format!("not valid JSON: {error}"))),
    };
    let version = conflist.get("cniVersion").cloned().unwrap_or(Value::Null);
    let name = conflist.get("name").cloned().unwrap_or(Value::Null);
    let Some(Value::Array(plugins)) = conflist.get_mut("plugins") else {
        return Err(fail("plugins: required, a list of plugin configs".into()));
    };
    let node_state = paths.node_state_file().display().to_string();
    let ipam_dir = paths.ipam_dir().display().to_string();
    let endpoint_dir = paths.endpoint_dir().display().to_string();
    let mut found_weft = false;
    let mut chained = Vec::new();
    for (index, plugin) in plugins.iter_mut().enumerate() {
        let Value::Object(plugin) = plugin else {
            return Err(fail(format!("plugins[{index}]: must be an object")));
        };
        let Some(plugin_type) = plugin.get("type").and_then(Value::as_str) else {
            return Err(fail(format!(
                "plugins[{index}].type: required, the plugin's binary name"
            )));
        };
        if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type.starts_with('.') {
            return Err(fail(format!(
                "plugins[{index}].type: {plugin_type:?} must be a file name in the CNI bin directory"
            )));
        }
        if plugin_type != "weft" {
            if !PLUGIN_BINARIES.contains(&plugin_type) {
                chained.push((index, plugin_type.to_owned()));
            }
            continue;
        }
        found_weft = true;
        plugin
            .entry("nodeStateFile")
            .or_insert_with(|| json!(node_state));
        // The agent watches this directory: it must be the agent's, whatever the conflist says.
        plugin.insert("endpointDir".into(), json!(endpoint_dir));
        if let Some(Value::Object(ipam)) = plugin.get_mut("ipam")
            && ipam.get("type").and_then(Value::as_str) == Some("weft-ipam")
        {
            ipam.entry("nodeStateFile")
                .or_insert_with(|| json!(node_state));
            ipam.entry("dataDir").or_insert_with(|| json!(ipam_dir));
        }
        let mut single = plugin.clone();
        single.insert("cniVersion".into(), version.clone());
        single.insert("name".into(), name.clone());
        let bytes = serde_json::to_vec(&single).unwrap_or_default();
        PluginConf::parse(&bytes)
            .map_err(|error| fail(format!("plugins[{index}]: {}", error.msg)))?;
        if single
            .get("ipam")
            .and_then(|ipam| ipam.get("type"))
            .and_then(Value::as_str)
            == Some("weft-ipam")
        {
            IpamConf::parse(&bytes)
                .map_err(|error| fail(format!("plugins[{index}]: {}", error.msg)))?;
        }
    }
    if !found_weft {
        return Err(fail("plugins: no plugin of type \"weft\"".into()));
    }
    Ok(PreparedConflist {
        text: serde_json::to_string_pretty(&conflist).unwrap_or_default() + "\n",
        chained,
    })
}

/// Writes `bytes` to `target` through a temporary file and a rename, unless it already holds
/// them. Returns whether the file changed.
pub fn write_atomically(target: &Path, bytes: &[u8], mode: u32) -> Result<bool, InstallError> {
    if std::fs::read(target).is_ok_and(|current| current == bytes) {
        return Ok(false);
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let file_name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{file_name}.weft-tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        std::fs::rename(&temporary, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result.map_err(io_error(target))?;
    Ok(true)
}

/// Installs binaries and conflist; returns what changed, for the log.
pub fn install(paths: &CniPaths, network_config: &str) -> Result<Vec<PathBuf>, InstallError> {
    if !paths.conf_name.ends_with(".conflist") || paths.conf_name.contains('/') {
        return Err(InstallError::ConfName(paths.conf_name.clone()));
    }
    let conflist = prepare_conflist(network_config, paths)?;
    let mut binaries = Vec::new();
    for name in PLUGIN_BINARIES {
        let source = paths.source_dir.join(name);
        binaries.push((
            paths.bin_dir.join(name),
            std::fs::read(&source).map_err(io_error(&source))?,
        ));
    }
    for (index, name) in conflist.chained {
        let source = paths.source_dir.join(&name);
        let target = paths.bin_dir.join(&name);
        if source.is_file() {
            binaries.push((target, std::fs::read(&source).map_err(io_error(&source))?));
        } else if !target.is_file() {
            return Err(InstallError::Config(format!(
                "plugins[{index}]: plugin {name:?} is in neither {} nor {}",
                paths.source_dir.display(),
                paths.bin_dir.display()
            )));
        }
    }
    let mut changed = Vec::new();
    for (target, bytes) in binaries {
        if write_atomically(&target, &bytes, 0o755)? {
            changed.push(target);
        }
    }
    // The conflist last: the runtime uses weft only once the binaries are in place.
    let target = paths.conflist();
    if write_atomically(&target, conflist.text.as_bytes(), 0o644)? {
        changed.push(target);
    }
    Ok(changed)
}

/// Removes the conflist and the binaries (missing files are fine).
pub fn uninstall(paths: &CniPaths) -> Result<(), InstallError> {
    let mut targets = vec![paths.conflist()];
    targets.extend(PLUGIN_BINARIES.iter().map(|name| paths.bin_dir.join(name)));
    for target in targets {
        match std::fs::remove_file(&target) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(InstallError::Io {
                    path: target,
                    source: error,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> CniPaths {
        CniPaths {
            source_dir: dir.join("src"),
            bin_dir: dir.join("bin"),
            conf_dir: dir.join("conf"),
            conf_name: "10-weft.conflist".into(),
            state_dir: dir.join("state"),
        }
    }

    const CONFLIST: &str = r#"{"cniVersion": "1.1.0", "name": "weft",
        "plugins": [{"type": "weft", "ipam": {"type": "weft-ipam", "mode": "pool"}}]}"#;

    #[test]
    fn state_paths_are_filled_in_and_kept_when_set() {
        let dir = tempfile::tempdir().unwrap();
        let text = prepare_conflist(CONFLIST, &paths(dir.path())).unwrap().text;
        let value: Value = serde_json::from_str(&text).unwrap();
        let state = dir.path().join("state/node-state.json");
        assert_eq!(value["plugins"][0]["nodeStateFile"], json!(state));
        assert_eq!(value["plugins"][0]["ipam"]["nodeStateFile"], json!(state));
        assert_eq!(
            value["plugins"][0]["ipam"]["dataDir"],
            json!(dir.path().join("state/ipam"))
        );
        let preset = CONFLIST.replace(r#""mode": "pool""#, r#""mode": "pool", "dataDir": "/x""#);
        let text = prepare_conflist(&preset, &paths(dir.path())).unwrap().text;
        assert!(text.contains(r#""dataDir": "/x""#));
    }

    #[test]
    fn bad_configs_name_the_field_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        for (text, expected) in [
            ("[]", "must be a JSON object"),
            (
                r#"{"cniVersion": "1.1.0", "name": "weft"}"#,
                "plugins: required",
            ),
            (
                &CONFLIST.replace(r#""type": "weft","#, r#""type": "weft", "mtu": 5,"#),
                "plugins[0]: mtu: 5 is not allowed",
            ),
            (
                &CONFLIST.replace("pool", "pond"),
                "plugins[0]: ipam.mode: \"pond\" is not allowed",
            ),
        ] {
            let error = install(&paths, text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(!paths.conf_dir.exists() && !paths.bin_dir.exists());
    }

    #[test]
    fn install_is_idempotent_and_uninstall_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::create_dir_all(&paths.source_dir).unwrap();
        for name in PLUGIN_BINARIES {
            std::fs::write(paths.source_dir.join(name), name).unwrap();
        }
        assert_eq!(install(&paths, CONFLIST).unwrap().len(), 3);
        assert!(install(&paths, CONFLIST).unwrap().is_empty());
        let mode = std::fs::metadata(paths.bin_dir.join("weft"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let leftovers: Vec<_> = std::fs::read_dir(&paths.bin_dir)
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().contains("weft-tmp"))
            .collect();
        assert!(leftovers.is_empty());
        uninstall(&paths).unwrap();
        assert!(!paths.conflist().exists() && !paths.bin_dir.join("weft").exists());
        uninstall(&paths).unwrap();
    }

    const WITH_PORTMAP: &str = r#"{"cniVersion": "1.1.0", "name": "weft", "plugins": [
        {"type": "weft", "ipam": {"type": "weft-ipam", "mode": "pool"}},
        {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}}]}"#;

    #[test]
    fn chained_plugins_come_from_the_image_or_the_host_and_stay_on_uninstall() {
        let dir = tempfile::tempdir().unwrap();
        let paths = paths(dir.path());
        std::fs::create_dir_all(&paths.source_dir).unwrap();
        for name in PLUGIN_BINARIES {
            std::fs::write(paths.source_dir.join(name), name).unwrap();
        }
        let error = install(&paths, WITH_PORTMAP).unwrap_err().to_string();
        assert!(
            error.contains(r#"plugins[1]: plugin "portmap" is in neither"#),
            "{error}"
        );
        assert!(!paths.bin_dir.exists() && !paths.conf_dir.exists());

        // The host's own portmap is used when the image carries none ...
        std::fs::create_dir_all(&paths.bin_dir).unwrap();
        std::fs::write(paths.bin_dir.join("portmap"), "host").unwrap();
        assert_eq!(install(&paths, WITH_PORTMAP).unwrap().len(), 3);
        assert_eq!(
            std::fs::read(paths.bin_dir.join("portmap")).unwrap(),
            b"host"
        );
        // ... and replaced by the image's, whose version matches the conflist.
        std::fs::write(paths.source_dir.join("portmap"), "image").unwrap();
        let changed = install(&paths, WITH_PORTMAP).unwrap();
        assert_eq!(changed, vec![paths.bin_dir.join("portmap")]);

        uninstall(&paths).unwrap();
        assert!(!paths.bin_dir.join("weft").exists());
        assert_eq!(
            std::fs::read(paths.bin_dir.join("portmap")).unwrap(),
            b"image"
        );

        let bad = WITH_PORTMAP.replace(r#""type": "portmap""#, r#""type": "../portmap""#);
        let error = install(&paths, &bad).unwrap_err().to_string();
        assert!(
            error.contains("plugins[1].type: \"../portmap\" must be a file name"),
            "{error}"
        );
    }
}
