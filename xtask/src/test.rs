//! `cargo xtask test`: every check, in the order CI runs them.

use crate::peers;
use crate::process::{cargo, run as run_command};

pub(crate) fn run_all(peers: &peers::Peers) -> Result<(), String> {
    let with_peers = |mut command: std::process::Command| -> std::process::Command {
        for (var, path) in peers.env() {
            command.env(var, path);
        }
        command
    };
    run_command(cargo().args(["fmt", "--all", "--check"]))?;
    run_command(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The CLI tests drive the patched datafusion-cli as a process.
    let cli = crate::cli::build(false)?;
    // The `examples` test runs the example binaries (target/debug/examples/);
    // `--workspace` keeps the features those of the test build (no rebuild).
    run_command(cargo().args(["build", "--locked", "--workspace", "--examples"]))?;
    run_command(with_peers(cargo()).env("DFTRACE_CLI_BIN", &cli).args([
        "test",
        "--locked",
        "--workspace",
        "--all-targets",
    ]))?;
    // `--all-targets` skips doctests, so they run on their own.
    run_command(with_peers(cargo()).args(["test", "--locked", "--workspace", "--doc"]))?;
    run_command(
        cargo()
            .args(["doc", "--locked", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    Ok(())
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!(
            "`cargo xtask test` takes no arguments, got `{extra}`"
        ));
    }
    let peers = peers::ensure()?;
    run_all(&peers)?;
    eprintln!("\nxtask test: every check passed");
    Ok(())
}
