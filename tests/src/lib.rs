//! Shared helpers for dftrace's end-to-end tests.
//!
//! Tests that need a real peer (the `rotel` collector, the `moto` S3 server)
//! find it through [`peer_binary`], which fails with instructions instead of
//! skipping when the peer is missing.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::path::PathBuf;

pub use text::{assert_contains_all, error_text};

/// What a test that uses `?` returns.
pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub mod capture;
pub mod config_doc;
pub mod functions;
pub mod moto;
pub mod optimizer;
pub mod rotel;
pub mod rows;
pub mod secrets;
pub mod span_schema;
pub mod text;
pub mod tpch;
pub mod wait;

/// A real peer process a test talks to.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// The `rotel` OpenTelemetry collector (`rotel-agent`).
    Rotel,
    /// The `moto` S3 server (`moto_server`).
    Moto,
}

impl Peer {
    fn variable(self) -> &'static str {
        match self {
            Peer::Rotel => "DFTRACE_ROTEL_BIN",
            Peer::Moto => "DFTRACE_MOTO_BIN",
        }
    }

    fn venv_candidates(self, venv: &std::path::Path) -> Vec<PathBuf> {
        match self {
            Peer::Moto => vec![venv.join("bin/moto_server")],
            Peer::Rotel => std::fs::read_dir(venv.join("lib"))
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|entry| entry.path().join("site-packages/rotel/rotel-agent"))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// The path of `peer`'s binary: `$DFTRACE_ROTEL_BIN` / `$DFTRACE_MOTO_BIN`
/// (which `cargo xtask test` sets), else the copy `cargo xtask peers`
/// installs under `target/tools/venv`.
///
/// # Panics
///
/// When the peer cannot be found, with a message saying how to install it: a
/// test that needs a peer must fail, never skip.
pub fn peer_binary(peer: Peer) -> PathBuf {
    if let Some(path) = std::env::var_os(peer.variable()).map(PathBuf::from) {
        assert!(
            path.is_file(),
            "{} points at {}, which does not exist; run `cargo xtask peers` to install the test \
             peers",
            peer.variable(),
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join("target/tools/venv");
    peer.venv_candidates(&venv).into_iter().find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "this test needs the {peer:?} test peer, which is not installed: run the tests with \
             `cargo xtask test` (it installs rotel==0.0.1a15 and moto[server] under \
             target/tools/venv), or run `cargo xtask peers` once, or set {} to the binary",
            peer.variable()
        )
    })
}

/// The patched CLI: `$DFTRACE_CLI_BIN` (set by `cargo xtask test`), else the
/// debug build `cargo xtask cli --build-only` leaves in `target/`.
///
/// # Panics
///
/// When it is not built, saying how to build it.
pub fn cli_binary() -> PathBuf {
    let path = std::env::var_os("DFTRACE_CLI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/datafusion-cli"));
    assert!(
        path.is_file(),
        "the traced datafusion-cli is not built at {}: run `cargo xtask test` (it builds it first), \
         or `cargo xtask cli --build-only`",
        path.display()
    );
    path
}

/// An example binary `cargo xtask test` builds (`target/debug/examples/`).
///
/// # Panics
///
/// When it is not built, saying how to build it.
pub fn example_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug/examples").join(name);
    assert!(
        path.is_file(),
        "example `{name}` is not built at {}: run `cargo xtask test`, or build the examples \
         first with `cargo build --workspace --examples`",
        path.display()
    );
    path
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// A field of a Linux `/proc` file in KiB, e.g. `proc_kib("/proc/self/status",
/// "VmHWM")` for the peak resident set size (`None` off Linux).
pub fn proc_kib(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let rest = text
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?;
    rest.trim().trim_end_matches("kB").trim().parse().ok()
}

/// A command for `program` that inherits nothing from the `DFTRACE_*` /
/// `OTEL_*` / `RUST_LOG` variables of the test's own environment, so each
/// case sets exactly the configuration it means — but for the shutdown
/// timeout, which is [`HANG_BOUND_MS`] unless the case sets its
/// own: whether a flush finishes in 5 s must not depend on how busy the
/// machine is.
pub fn isolated_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("DFTRACE_") || key.starts_with("OTEL_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env(SHUTDOWN_TIMEOUT_VAR, HANG_BOUND_MS);
    command
}

/// The variable that bounds a traced process's flush at exit.
const SHUTDOWN_TIMEOUT_VAR: &str = "DFTRACE_EXPORT__SHUTDOWN_TIMEOUT_MS";

/// A timeout (export, flush, shutdown) that only turns a hang into a
/// failure: longer than any test runs.
pub const HANG_BOUND_MS: &str = "600000";

/// A session with every linked dftrace plugin applied under `config`, as a
/// host builds it.
///
/// # Panics
///
/// When a plugin refuses the config.
pub fn dftrace_context(
    config: &dftrace_registry::DftraceConfig,
) -> datafusion::prelude::SessionContext {
    try_dftrace_context(config).unwrap_or_else(|error| panic!("dftrace session: {error}"))
}

/// [`dftrace_context`] for code that reports errors instead of panicking
/// (the helper programs under `src/bin`).
///
/// # Errors
///
/// When a plugin refuses the config.
pub fn try_dftrace_context(
    config: &dftrace_registry::DftraceConfig,
) -> Result<datafusion::prelude::SessionContext, dftrace_registry::RegistryError> {
    use dftrace_registry::RegistryStateBuilderExt;
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(config)?
        .build_dftrace()?;
    Ok(datafusion::prelude::SessionContext::new_with_state(state))
}

/// The runtime the helper programs run their queries on: two worker
/// threads, as the `#[tokio::test]`s that drive them use.
///
/// # Errors
///
/// When the runtime cannot start its threads.
pub fn two_worker_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// Fails the test unless the child process behind `output` exited
/// successfully, showing its status and stderr.
#[track_caller]
pub fn assert_success(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes the tests of a binary that call it take turns: each holds the
/// guard for its whole body. A test that failed while holding it (poisoning
/// the lock) does not fail the ones after it.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
