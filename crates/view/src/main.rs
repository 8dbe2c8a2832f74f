//! `dftrace-view <trace-file.jsonl> [--trace-id ID] [--out DIR]`: draws one
//! query of a trace file as a flame graph (SVG), a Chrome trace and an HTML
//! page. `cargo xtask view` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: dftrace-view <trace-file.jsonl> [--trace-id ID] [--out DIR]\n\
  --trace-id  the trace to draw (default: the last query in the file)\n\
  --out       where to write <trace id>.{svg,html,trace.json} (default: view/ beside the file)";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dftrace-view: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut file = None;
    let mut trace_id = None;
    let mut out = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--trace-id" => trace_id = Some(value("--trace-id")?),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            flag if flag.starts_with('-') => {
                return Err(format!("unknown option `{flag}`\n{USAGE}"));
            }
            path if file.is_none() => file = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument `{extra}`\n{USAGE}")),
        }
    }
    let file = file.ok_or_else(|| format!("no trace file given\n{USAGE}"))?;
    let out = out.unwrap_or_else(|| {
        file.parent()
            .map_or_else(|| PathBuf::from("view"), |dir| dir.join("view"))
    });
    let files = dftrace_view::render_trace_file(&file, trace_id.as_deref(), &out)
        .map_err(|error| error.to_string())?;
    println!("trace {}", files.trace_id);
    println!("  flame graph   {}", files.svg.display());
    println!("  HTML page     {}", files.html.display());
    println!(
        "  Chrome trace  {} (open in https://ui.perfetto.dev or chrome://tracing)",
        files.chrome_trace.display()
    );
    Ok(())
}
