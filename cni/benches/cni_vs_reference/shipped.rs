//! weft's plugins as the agent image ships them: static musl binaries, built with the command
//! `images/build.sh` uses. They go to a target directory of their own, because the `cargo
//! bench` that runs this holds the lock of the workspace's. `WEFT_CNI_STATIC_DIR` names a
//! directory of prebuilt `weft` and `weft-ipam` instead.

use std::path::{Path, PathBuf};
use std::process::Command;

const MUSL: &str = "x86_64-unknown-linux-musl";

pub fn static_plugins() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_CNI_STATIC_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("weft").is_file() && dir.join("weft-ipam").is_file(),
            "WEFT_CNI_STATIC_DIR={}: must hold the weft and weft-ipam binaries",
            dir.display()
        );
        return dir;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target_dir = root.join("target/cni-static");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            MUSL,
            "-p",
            "weft-cni",
            "--bins",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("run cargo build for the static plugins");
    assert!(
        status.success(),
        "building weft's static plugins failed (the {MUSL} target is needed: `rustup target add {MUSL}`, \
         as images/build.sh does; or set WEFT_CNI_STATIC_DIR)"
    );
    target_dir.join(MUSL).join("release")
}
