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

/// `cargo xtask test --browser`: the checks that need headless Chromium.
fn run_browser() -> Result<(), String> {
    let chromium = peers::ensure_chromium()?;
    let cli = crate::cli::build(false)?;
    // `--workspace` keeps the features of the main test build (no rebuild);
    // the browser checks are the `view` tests marked `#[ignore]`.
    run_command(
        cargo()
            .env("DFTRACE_CLI_BIN", &cli)
            .env("DFTRACE_CHROMIUM_BIN", &chromium)
            .args([
                "test",
                "--locked",
                "--workspace",
                "--test",
                "view",
                "--",
                "--ignored",
            ]),
    )
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    match args {
        [] => {}
        [flag] if flag == "--browser" => {
            run_browser()?;
            eprintln!("\nxtask test --browser: the browser checks passed");
            return Ok(());
        }
        [extra, ..] => {
            return Err(format!(
                "`cargo xtask test` takes no arguments but `--browser`, got `{extra}`"
            ));
        }
    }
    let peers = peers::ensure()?;
    run_all(&peers)?;
    eprintln!("\nxtask test: every check passed");
    Ok(())
}
