//! The real peers the tests talk to, installed from PyPI into a virtual
//! environment under `target/tools/venv`:
//!
//! - `rotel` (an OpenTelemetry collector; the wheel carries the
//!   `rotel-agent` binary), pinned to the version `shared/design.md` names;
//! - `moto[server]` (an S3-compatible server, `moto_server`).

use crate::process::run;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROTEL_REQUIREMENT: &str = "rotel==0.0.1a15";
const MOTO_REQUIREMENT: &str = "moto[server]";

/// Paths of the installed peers.
pub(crate) struct Peers {
    rotel: PathBuf,
    moto: PathBuf,
}

impl Peers {
    /// The environment variables the tests read the peer paths from.
    pub(crate) fn env(&self) -> [(&'static str, &Path); 2] {
        [
            ("DFTRACE_ROTEL_BIN", &self.rotel),
            ("DFTRACE_MOTO_BIN", &self.moto),
        ]
    }
}

/// Installs the peers when missing and returns their paths.
pub(crate) fn ensure() -> Result<Peers, String> {
    let venv = crate::workspace_root().join("target/tools/venv");
    if let Some(peers) = find(&venv) {
        return Ok(peers);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    if !venv.join("bin/pip").exists() {
        run(Command::new(&python).args(["-m", "venv"]).arg(&venv)).map_err(|error| {
            format!("{error}\nthe test peers need Python 3 with the venv module (set PYTHON=...)")
        })?;
    }
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "--quiet",
        ROTEL_REQUIREMENT,
        MOTO_REQUIREMENT,
    ]))
    .map_err(|error| format!("{error}\ncould not install the test peers from PyPI"))?;
    find(&venv).ok_or_else(|| {
        format!(
            "installed {ROTEL_REQUIREMENT} and {MOTO_REQUIREMENT} into {} but could not find \
             rotel-agent and moto_server there",
            venv.display()
        )
    })
}

fn find(venv: &Path) -> Option<Peers> {
    let moto = venv.join("bin/moto_server");
    let lib = venv.join("lib");
    // site-packages lives under lib/pythonX.Y/, whatever the minor version.
    let rotel = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages/rotel/rotel-agent"))
        .find(|path| path.is_file())?;
    moto.is_file().then_some(Peers { rotel, moto })
}
