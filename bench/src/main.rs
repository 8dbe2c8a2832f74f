//! `dftrace-bench [--quick] [--scale F] [--queries 1,3,5] [--rounds R]
//! [--short-runs N] [--clients C] [--warmup W]`: runs the benchmark, prints the table, and
//! writes `target/bench/latest.json` and `target/bench/latest.md`.
//! `cargo xtask bench` runs it in release mode. `--profile NAME` runs only
//! that configuration's short-query loop (`--short-runs` times), for `perf`.
//! `--rss-probe NAME` (which the full run starts once per configuration)
//! prints the peak RSS of a process that ran only that configuration.
//! Built with the `mimalloc` feature (`cargo xtask bench --allocator
//! mimalloc`), every allocation goes through mimalloc instead of the system's.

use dftrace_bench::{Options, Variant, profile_short, report, rss_probe, run};
use std::path::PathBuf;

// Every configuration in this process allocates through it (the report
// names it: `dftrace_bench::ALLOCATOR`).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static MIMALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: dftrace-bench [--quick] [--scale F] [--queries 1,3,5] [--rounds R] \
                     [--short-runs N] [--clients C] [--warmup W] [--profile CONFIGURATION] \
                     [--rss-probe CONFIGURATION]";

/// What this process does.
enum Mode {
    /// The whole benchmark.
    Run,
    /// One configuration's short loop, for a profiler.
    Profile(Variant),
    /// One configuration's peak RSS.
    RssProbe(Variant),
}

fn value<T: std::str::FromStr>(flag: &str, text: Option<&String>) -> Result<T, String> {
    let text = text.ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
    text.parse()
        .map_err(|_| format!("invalid value `{text}` for {flag}\n{USAGE}"))
}

fn parse(args: &[String], target: PathBuf) -> Result<(Options, Mode), String> {
    let data_root = target.join("tpch");
    let mut options = if args.iter().any(|a| a == "--quick") {
        Options::quick(data_root)
    } else {
        Options::full(data_root)
    };
    let mut mode = Mode::Run;
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--quick" => {}
            "--scale" => options.scale = value(flag, args.next())?,
            "--rounds" => options.rounds = value(flag, args.next())?,
            "--warmup" => options.warmup = value(flag, args.next())?,
            "--short-runs" => options.short_runs = value(flag, args.next())?,
            "--clients" => options.clients = value(flag, args.next())?,
            "--profile" => {
                let name: String = value(flag, args.next())?;
                mode = Mode::Profile(Variant::from_name(&name)?);
            }
            "--rss-probe" => {
                let name: String = value(flag, args.next())?;
                mode = Mode::RssProbe(Variant::from_name(&name)?);
            }
            "--queries" => {
                let list: String = value(flag, args.next())?;
                options.queries = list
                    .split(',')
                    .map(|q| value(flag, Some(&q.trim().to_owned())))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    if options.rounds == 0 {
        return Err(format!("--rounds must be at least 1\n{USAGE}"));
    }
    Ok((options, mode))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let result = parse(&args, target.clone()).and_then(|(mut options, mode)| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        match mode {
            Mode::Run => {}
            Mode::Profile(variant) => {
                return runtime
                    .block_on(profile_short(variant, &options))
                    .map(|_| ());
            }
            Mode::RssProbe(variant) => {
                let bytes = runtime.block_on(rss_probe(variant, &options))?;
                println!("peak_rss_bytes={bytes}");
                return Ok(());
            }
        }
        options.rss_probe_exe =
            Some(std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?);
        let report = runtime.block_on(run(&options))?;
        let table = report::markdown_table(&report);
        println!("{table}");
        let out = target.join("bench");
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        for (name, text) in [("latest.json", report::json(&report)), ("latest.md", table)] {
            std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))?;
        }
        eprintln!("wrote {}/latest.json and latest.md", out.display());
        if report.mismatches.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "configurations returned different rows:\n{}",
                report.mismatches.join("\n")
            ))
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dftrace-bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
