//! The real peers the tests talk to, installed from PyPI into a virtual
//! environment under `target/tools/venv`:
//!
//! - `rotel` (an OpenTelemetry collector; the wheel carries the
//!   `rotel-agent` binary), pinned to the version `shared/design.md` names;
//! - `moto[server]` (an S3-compatible server, `moto_server`);
//! - datafusion-python, pytest and the OpenTelemetry SDK, for the Python
//!   package's suite (`crates/python`), which runs this environment's Python.

use crate::process::run;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROTEL_REQUIREMENT: &str = "rotel==0.0.1a15";
const MOTO_REQUIREMENT: &str = "moto[server]";
/// What the Python package's suite imports: the datafusion-python release
/// whose FFI the extension speaks, the test runner, and the OpenTelemetry SDK
/// a Python application would trace with.
const PYTHON_SUITE_REQUIREMENTS: [&str; 3] = ["datafusion==55.0.0", "pytest", "opentelemetry-sdk"];

/// Paths of the installed peers.
pub(crate) struct Peers {
    rotel: PathBuf,
    moto: PathBuf,
    python: PathBuf,
}

impl Peers {
    /// The environment variables the tests read the peer paths from.
    pub(crate) fn env(&self) -> [(&'static str, &Path); 3] {
        [
            ("DFTRACE_ROTEL_BIN", &self.rotel),
            ("DFTRACE_MOTO_BIN", &self.moto),
            ("DFTRACE_PYTHON_BIN", &self.python),
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
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", ROTEL_REQUIREMENT, MOTO_REQUIREMENT])
        .args(PYTHON_SUITE_REQUIREMENTS))
    .map_err(|error| format!("{error}\ncould not install the test peers from PyPI"))?;
    find(&venv).ok_or_else(|| {
        format!(
            "installed {ROTEL_REQUIREMENT}, {MOTO_REQUIREMENT} and {} into {} but could not \
             find rotel-agent, moto_server, datafusion and pytest there",
            PYTHON_SUITE_REQUIREMENTS.join(", "),
            venv.display()
        )
    })
}

fn find(venv: &Path) -> Option<Peers> {
    let moto = venv.join("bin/moto_server");
    let python = venv.join("bin/python");
    // site-packages lives under lib/pythonX.Y/, whatever the minor version.
    let site_packages = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages"))
        .find(|path| path.is_dir())?;
    let rotel = site_packages.join("rotel/rotel-agent");
    let python_suite = [
        "datafusion/_internal.abi3.so",
        "pytest/__init__.py",
        "opentelemetry/sdk/trace/__init__.py",
    ]
    .iter()
    .all(|module| site_packages.join(module).is_file());
    (rotel.is_file() && moto.is_file() && python.is_file() && python_suite).then_some(Peers {
        rotel,
        moto,
        python,
    })
}

/// Debian's Chromium for the browser checks: `$DFTRACE_CHROMIUM_BIN`, else
/// `/usr/bin/chromium`, installed with apt-get (as root, or through sudo)
/// when missing.
pub(crate) fn ensure_chromium() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("DFTRACE_CHROMIUM_BIN").map(PathBuf::from) {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "DFTRACE_CHROMIUM_BIN points at {}, which does not exist",
                path.display()
            ))
        };
    }
    let path = PathBuf::from("/usr/bin/chromium");
    if !path.is_file() {
        eprintln!("Chromium is missing: installing Debian's `chromium` package with apt-get");
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        let apt = |args: &[&str]| {
            let mut command = if is_root {
                Command::new("apt-get")
            } else {
                let mut sudo = Command::new("sudo");
                sudo.arg("apt-get");
                sudo
            };
            command.env("DEBIAN_FRONTEND", "noninteractive").args(args);
            command
        };
        run(&mut apt(&["update", "-qq"]))
            .and_then(|()| run(&mut apt(&["install", "-y", "-qq", "chromium"])))
            .map_err(|error| {
                format!(
                    "{error}\nthe browser checks need Chromium: install Debian's `chromium` \
                     package (apt-get install chromium) or set DFTRACE_CHROMIUM_BIN"
                )
            })?;
    }
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "apt-get ran but {} is still missing; set DFTRACE_CHROMIUM_BIN",
            path.display()
        ))
    }
}
