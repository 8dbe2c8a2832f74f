//! Runs the Python suite (`tests/python`) against the extension this package
//! builds, in the environment `cargo xtask test` keeps under
//! `target/tools/venv` (datafusion 55.0.0 from PyPI, pytest,
//! opentelemetry-sdk).
//!
//! The extension is the cdylib cargo builds beside this test; it is put with
//! the package's Python sources into a directory of its own, which is what
//! `pip install` of the package lays out in site-packages.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The extension's file name as cargo writes it, and as Python imports it.
const BUILT: &str = "lib_dftrace.so";
const IMPORTED: &str = "_dftrace.abi3.so";

fn python() -> PathBuf {
    std::env::var_os("DFTRACE_PYTHON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "DFTRACE_PYTHON_BIN is not set: run `cargo xtask test`, which installs \
             datafusion==55.0.0, pyarrow, pytest and opentelemetry-sdk into \
             target/tools/venv and sets it, or point it at a Python that has them"
            )
        })
}

/// `target/<profile>/deps/`, where cargo puts this test and the cdylib.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .expect("the test binary's directory")
        .to_path_buf()
}

/// The package as pip would install it: `dftrace/` with the Python sources
/// and the extension.
fn assemble_package(root: &Path) -> PathBuf {
    let extension = deps_dir().join(BUILT);
    assert!(
        extension.is_file(),
        "{} is missing: cargo builds it with this test (`cargo test -p dftrace-python`)",
        extension.display()
    );
    let site = root.join("site");
    let package = site.join("dftrace");
    let _ = std::fs::remove_dir_all(&site);
    std::fs::create_dir_all(&package).expect("create the package directory");
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/dftrace");
    for entry in std::fs::read_dir(&sources).expect("read python/dftrace") {
        let path = entry.expect("a source file").path();
        if path.is_file() {
            std::fs::copy(&path, package.join(path.file_name().expect("a file name")))
                .expect("copy a source file");
        }
    }
    std::fs::copy(&extension, package.join(IMPORTED)).expect("copy the extension");
    site
}

#[test]
fn the_python_suite_passes() {
    let root = deps_dir().join("../../tmp/dftrace-python");
    let site = assemble_package(&root);
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let output = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("PYTHONPATH", &site)
        // The suite sets its own configuration; the caller's must not leak in.
        .env_remove("DFTRACE_CONFIG")
        .env_remove("DFTRACE_PRESET")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python suite failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(" passed") && !stdout.contains(" skipped"),
        "the Python suite ran no test or skipped some:\n{stdout}"
    );
}
