//! `cargo xtask view <trace-file.jsonl> [--trace-id ID] [--out DIR]`: one
//! query of a trace file as a flame graph (SVG), a Chrome trace and an HTML
//! page, by the `dftrace-view` crate's binary.

use crate::process::{cargo, run};
use std::path::PathBuf;

pub(crate) fn run_view(args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err(
            "usage: cargo xtask view <trace-file.jsonl> [--trace-id ID] [--out DIR]".into(),
        );
    }
    // Cargo runs from the workspace root: paths are made absolute first.
    let here = std::env::current_dir().map_err(|error| error.to_string())?;
    let mut forwarded = Vec::with_capacity(args.len());
    let mut previous: Option<&str> = None;
    for arg in args {
        let is_path = match previous {
            Some("--out") => true,
            Some("--trace-id") => false,
            _ => !arg.starts_with('-'),
        };
        forwarded.push(if is_path {
            here.join(PathBuf::from(arg)).display().to_string()
        } else {
            arg.clone()
        });
        previous = Some(arg.as_str());
    }
    // Only dftrace-view and its OpenTelemetry dependencies: seconds.
    run(cargo()
        .args([
            "run",
            "-q",
            "--locked",
            "-p",
            "dftrace-view",
            "--bin",
            "dftrace-view",
            "--",
        ])
        .args(&forwarded))
}
