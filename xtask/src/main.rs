//! `cargo xtask`: the project's automation, in Rust (its one dependency,
//! `serde_json`, reads `cargo metadata`).
//!
//! - `cargo xtask test`: every check CI runs (formatting, lints, tests,
//!   doctests, docs, the rust-version check, the packaged crates and
//!   the downstream hosts), after installing the test peers (the `rotel` collector
//!   and the `moto` S3 server) into `target/tools/venv` when missing.
//! - `cargo xtask cli`: build `datafusion-cli` patched with dftrace, and run it.
//! - `cargo xtask demo`: TPC-H Q1 through the traced CLI.
//! - `cargo xtask view`: a query of a trace file as a flame graph, a Chrome
//!   trace and an HTML page.
//! - `cargo xtask bench`: the overhead of each preset, as ratios (release).
//! - `cargo xtask schema [--update]`: check (or regenerate) the span schema
//!   and configuration reference in `docs/`.
//! - `cargo xtask peers`: only install the test peers and print their paths.
//! - `cargo xtask downstream`: package the publishable crates and build and
//!   run the hosts of `tests/downstream/` against the packages.
//! - `cargo xtask msrv`: check the declared `rust-version`.

mod bench;
mod cli;
mod demo;
mod downstream;
mod files;
mod msrv;
mod peers;
mod process;
mod schema;
mod test;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test     run every check CI runs: fmt, clippy, tests, doctests, docs
           (installs the rotel and moto test peers under target/tools first);
           cargo xtask test --browser runs the headless-Chromium checks
           (installs Debian's chromium with apt-get when missing);
           cargo xtask test --repeat N runs the integration tests N times in
           all (to find flaky tests before CI does)
  cli      build datafusion-cli patched with dftrace and run it:
           cargo xtask cli [--release] [--build-only] [-- <datafusion-cli args>]
           (binary: target/debug/datafusion-cli, or target/release/ with --release)
  bench    the overhead of each preset against uninstrumented DataFusion and raw
           datafusion-tracing, in one process (release build):
           cargo xtask bench [--quick] [--scale 1] [--queries 1,3,5] [--rounds 30]
           [--short-runs 300] [--warmup 1] [--allocator system|mimalloc];
           writes target/bench/latest.{json,md}
  demo     generate small TPC-H data and run Q1 through the traced CLI
  view     draw one query of a trace file: cargo xtask view <trace-file.jsonl>
           [--trace-id ID] [--out DIR] writes <trace id>.svg (flame graph),
           .html (page with the operator table) and .trace.json (Perfetto)
  schema   check the span schema and configuration docs against the code;
           cargo xtask schema --update regenerates them (review the diff)
  peers    install the test peers under target/tools and print their paths
  downstream  cargo package every publishable crate, then build and run the
           hosts of tests/downstream/ against the packages (part of test)
  msrv     check rust-version against the dependencies' declared minimum
           (part of test)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test::run(&args[1..]),
        Some("cli") => cli::run_cli(&args[1..]),
        Some("demo") => demo::run_demo(&args[1..]),
        Some("bench") => bench::run_bench(&args[1..]),
        Some("view") => view::run_view(&args[1..]),
        Some("schema") => schema::run_schema(&args[1..]),
        Some("downstream") => downstream::run_all(),
        Some("msrv") => msrv::check(),
        Some("peers") => peers::ensure().map(|peers| {
            for (var, path) in peers.env() {
                println!("{var}={}", path.display());
            }
        }),
        Some("help" | "-h" | "--help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
