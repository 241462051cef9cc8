//! `weftctl crds`: prints every weft CustomResourceDefinition as multi-document YAML, or writes
//! one file per CRD into a directory (what `make crds` runs to refresh `crds/`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use weft_api::crds::{crd_file_name, render_all, render_crd};

#[derive(clap::Args)]
pub struct Args {
    /// Write one `<plural>.<group>.yaml` file per CRD into this directory instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let result = match &args.out_dir {
        None => render_all()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Some(dir) => write_files(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("weftctl crds: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn write_files(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if !dir.is_dir() {
        anyhow::bail!("--out-dir {}: not a directory", dir.display());
    }
    for crd in weft_api::crds() {
        let path = dir.join(crd_file_name(&crd));
        let yaml = render_crd(&crd)?;
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
