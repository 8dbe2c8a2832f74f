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
    crate::msrv::check()?;
    // With the bench's other allocator (`cargo xtask bench --allocator
    // mimalloc`), built only when asked for, so it keeps building: the feature
    // adds code and changes nothing else (`--workspace`: no other crate's
    // features move, nothing rebuilds).
    run_command(cargo().args([
        "clippy",
        "--locked",
        "--workspace",
        "--all-targets",
        "--features",
        "dftrace-bench/mimalloc",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The CLI tests drive the patched datafusion-cli as a process.
    let cli = crate::cli::build(false)?;
    // Cargo's default targets: every library and binary, their unit tests
    // where `test` is not off (the helper programs turn it off: a test
    // harness of each would link DataFusion once more, about 270 MB of disk),
    // the integration tests, the doctests, and the examples built (the
    // `examples` test runs them). Not `--bins`, which overrides `test =
    // false`; not `--all-targets`, which links every example once more as a
    // test binary.
    run_command(with_peers(cargo()).env("DFTRACE_CLI_BIN", &cli).args([
        "test",
        "--locked",
        "--workspace",
    ]))?;
    // The bench targets, once each as a test (the defaults leave them out;
    // `--benches` would also take every library and binary again).
    run_command(cargo().args(["test", "--locked", "--workspace", "--bench", "*"]))?;
    run_command(
        cargo()
            .args(["doc", "--locked", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // The publishable crates packaged, and hosts outside the workspace built
    // against the packages.
    crate::downstream::run_all()?;
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
                "no_global_state",
                "--",
                "--ignored",
                "view::",
            ]),
    )
}

/// The unit and integration tests (the `dftrace-tests` package holds every
/// test that drives real peers, processes and traces), once more.
fn run_integration_tests(peers: &peers::Peers) -> Result<(), String> {
    let cli = crate::cli::build(false)?;
    let mut command = cargo();
    for (var, path) in peers.env() {
        command.env(var, path);
    }
    run_command(command.env("DFTRACE_CLI_BIN", &cli).args([
        "test",
        "--locked",
        // `--workspace` keeps the features of the main test build (a single
        // package would resolve DataFusion's features anew and rebuild it).
        "--workspace",
        "--tests",
    ]))
}

/// What `cargo xtask test` was asked to do.
#[derive(Debug, PartialEq)]
enum Mode {
    /// Every check once, then the integration tests `repeat - 1` more times.
    All { repeat: u32 },
    /// The headless-Chromium checks.
    Browser,
}

fn parse(args: &[String]) -> Result<Mode, String> {
    match args {
        [] => Ok(Mode::All { repeat: 1 }),
        [flag] if flag == "--browser" => Ok(Mode::Browser),
        [flag, count] if flag == "--repeat" => match count.parse::<u32>() {
            Ok(repeat) if repeat >= 1 => Ok(Mode::All { repeat }),
            _ => Err(format!(
                "`--repeat` takes a whole number of runs, 1 or more, got `{count}`"
            )),
        },
        [flag] if flag == "--repeat" => {
            Err("`--repeat` needs a number of runs: `--repeat 5`".into())
        }
        [extra, ..] => Err(format!(
            "`cargo xtask test` takes `--browser` or `--repeat N`, got `{extra}`"
        )),
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let repeat = match parse(args)? {
        Mode::Browser => {
            run_browser()?;
            eprintln!("\nxtask test --browser: the browser checks passed");
            return Ok(());
        }
        Mode::All { repeat } => repeat,
    };
    let peers = peers::ensure()?;
    run_all(&peers)?;
    // Flaky tests show up as a failure in one of several identical runs.
    for run in 2..=repeat {
        let started = std::time::Instant::now();
        run_integration_tests(&peers)
            .map_err(|error| format!("integration tests, run {run} of {repeat}: {error}"))?;
        eprintln!(
            "\nxtask test: integration tests run {run} of {repeat} passed in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    if repeat > 1 {
        eprintln!("\nxtask test: every check passed; the integration tests passed {repeat} times");
    } else {
        eprintln!("\nxtask test: every check passed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_browser_repeat_or_nothing() {
        let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        assert_eq!(parse(&args(&[])), Ok(Mode::All { repeat: 1 }));
        assert_eq!(parse(&args(&["--browser"])), Ok(Mode::Browser));
        assert_eq!(
            parse(&args(&["--repeat", "5"])),
            Ok(Mode::All { repeat: 5 })
        );
        for bad in [
            &["--repeat"][..],
            &["--repeat", "0"],
            &["--repeat", "x"],
            &["--fast"],
        ] {
            let error = parse(&args(bad)).expect_err("refused");
            assert!(
                error.contains("--repeat") || error.contains("--browser"),
                "{error}"
            );
        }
    }
}
