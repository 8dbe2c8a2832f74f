//! The traced `datafusion-cli` (`cargo xtask cli`), driven as a process: its
//! trace file, its OTLP export to a real collector, byte-identical query
//! output, and error handling.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_tests::rotel::Rotel;
use dftrace_tests::tpch::{Table, write_tables};
use dftrace_tests::{assert_contains_all, assert_success, cli_binary, isolated_command};
use dftrace_view::TraceSpan;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A fresh working directory (traces land in its `dftrace-traces/`).
fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dftrace-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = isolated_command(cli_binary());
    command
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .expect("the CLI runs")
}

/// A span of the trace files and its trace id.
struct Span {
    trace_id: String,
    span: TraceSpan,
}

/// Every span in the trace files under `dir`, read as the view reads them.
fn spans_in(dir: &Path) -> Vec<Span> {
    let mut spans = Vec::new();
    for entry in std::fs::read_dir(dir.join("dftrace-traces"))
        .expect("a trace folder")
        .flatten()
        .filter(|entry| !is_metrics_file(&entry.path()))
    {
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let read = dftrace_view::read_line(line).expect("each line is an OTLP-JSON request");
            spans.extend(
                read.into_iter()
                    .map(|(trace_id, span)| Span { trace_id, span }),
            );
        }
    }
    spans
}

/// The file sink's metrics, beside each trace file.
fn is_metrics_file(path: &Path) -> bool {
    path.to_string_lossy().ends_with(".metrics.jsonl")
}

/// The TPC-H data, written once per process (the tests run in parallel).
fn tpch_dir() -> (PathBuf, Vec<String>) {
    static DATA: std::sync::OnceLock<(PathBuf, Vec<String>)> = std::sync::OnceLock::new();
    DATA.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dftrace-cli-tpch-{}", std::process::id()));
        let creates = write_tables(
            &dir,
            0.01,
            &[
                Table::Lineitem,
                Table::Nation,
                Table::Customer,
                Table::Orders,
            ],
        );
        (dir, creates)
    })
    .clone()
}

const SELECT: &str = "SELECT l_returnflag, count(*) AS n, sum(l_quantity) AS q FROM lineitem WHERE l_discount > 0.02 GROUP BY l_returnflag ORDER BY l_returnflag";

/// Runs [`SELECT`], after the statement that creates `lineitem` over the
/// TPC-H data, in a fresh working directory `name` with `env`; returns the
/// directory and the CLI's output once it has succeeded.
fn run_select(name: &str, env: &[(&str, &str)]) -> (PathBuf, Output) {
    let (_data, creates) = tpch_dir();
    let dir = workdir(name);
    let output = run_cli(&dir, env, &["-q", "-c", &creates[0], "-c", SELECT]);
    assert_success(&output);
    (dir, output)
}

#[test]
fn local_parquet_query_writes_one_trace_with_every_kind_of_span() {
    let (dir, output) = run_select("file", &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_contains_all(&stderr, &["dftrace: trace ", "spans written to"]);

    let spans = spans_in(&dir);
    let select_root = spans
        .iter()
        .find(|s| {
            s.span.name == "dftrace.query" && s.span.int_attributes.get("dftrace.rows") == Some(&3)
        })
        .expect("the SELECT's root span, with its 3 rows");
    let names: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.trace_id == select_root.trace_id)
        .map(|s| s.span.name.as_str())
        .collect();
    for expected in [
        "dftrace.query",
        "analyze_logical_plan",
        "optimize_logical_plan",
        "optimize_physical_plan",
        "AggregateExec",
        "FilterExec",
        "DataSourceExec",
    ] {
        assert!(
            names.contains(expected),
            "`{expected}` missing from the SELECT's trace: {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("file.")),
        "file storage spans: {names:?}"
    );
    // The metrics summary's typed attributes are on the root.
    assert_eq!(
        select_root
            .span
            .int_attributes
            .get("dftrace.metrics.output_rows"),
        Some(&3)
    );
}

#[test]
fn with_an_endpoint_spans_go_to_the_collector() {
    let rotel = Rotel::start();
    let endpoint = rotel.grpc_endpoint();
    let (dir, _) = run_select(
        "otlp",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    assert_eq!(
        rotel.wait_for_spans("dftrace.query", 2, Duration::from_secs(20)),
        2
    );
    let log = rotel.output();
    assert!(
        log.contains("Name           : AggregateExec"),
        "operator spans reach rotel"
    );
    assert!(
        !dir.join("dftrace-traces").exists(),
        "no trace file when exporting over OTLP"
    );
}

#[test]
fn json_output_is_byte_identical_with_telemetry_off_and_stdout_is_clean() {
    let (_data, creates) = tpch_dir();
    let args = ["-q", "--format", "json", "-c", &creates[0], "-c", SELECT];
    let traced = run_cli(&workdir("json-on"), &[], &args);
    let plain = run_cli(
        &workdir("json-off"),
        &[("OTEL_SDK_DISABLED", "true")],
        &args,
    );
    assert!(traced.status.success() && plain.status.success());
    assert!(!traced.stdout.is_empty());
    assert_eq!(
        traced.stdout, plain.stdout,
        "stdout carries only query output"
    );
    assert!(!String::from_utf8_lossy(&traced.stdout).contains("dftrace"));
}

#[test]
fn a_failing_statement_keeps_the_cli_behaviour_and_marks_its_span() {
    let bad = "SELECT missing_column FROM (VALUES (1)) AS t(x)";
    let dir = workdir("error");
    let traced = run_cli(&dir, &[], &["-q", "-c", bad]);
    let plain = run_cli(
        &workdir("error-off"),
        &[("OTEL_SDK_DISABLED", "true")],
        &["-q", "-c", bad],
    );
    assert_eq!(traced.status.code(), plain.status.code());
    assert!(!traced.status.success());
    assert_eq!(traced.stdout, plain.stdout, "the CLI's usual error output");
    let root = spans_in(&dir)
        .into_iter()
        .find(|s| s.span.name == "dftrace.query")
        .expect("a root span")
        .span;
    assert_eq!(root.status_code, 2, "ERROR status: {root:?}");
    assert!(
        root.error
            .as_deref()
            .unwrap_or_default()
            .contains("missing_column")
    );
}

/// TPC-H Q3 stops early (`LIMIT` over a merge): the merge's input tasks are
/// aborted and only dropped when the runtime shuts down, holding operator
/// spans (and so the root) open until then. Telemetry must end after the
/// runtime, or the last query's root is lost (seen: 4 runs in 12 when the
/// flush came first).
#[test]
fn an_early_stopping_last_query_keeps_its_root_span() {
    let (_data, creates) = tpch_dir();
    for run in 0..8 {
        let dir = workdir(&format!("early-stop-{run}"));
        let mut args = vec!["-q"];
        for statement in [&creates[0], &creates[2], &creates[3]] {
            args.extend(["-c", statement.as_str()]);
        }
        args.extend(["-c", dftrace_tests::tpch::Q3]);
        assert_success(&run_cli(&dir, &[], &args));
        let spans = spans_in(&dir);
        let roots = spans
            .iter()
            .filter(|s| s.span.name == "dftrace.query")
            .count();
        assert_eq!(
            roots, 4,
            "run {run}: every statement's root span is in the file"
        );
        let ids: BTreeSet<&str> = spans.iter().map(|s| s.span.span_id.as_str()).collect();
        let orphans: Vec<&str> = spans
            .iter()
            .filter(|s| {
                s.span
                    .parent_span_id
                    .as_deref()
                    .is_some_and(|parent| !ids.contains(parent))
            })
            .map(|s| s.span.name.as_str())
            .collect();
        assert!(
            orphans.is_empty(),
            "run {run}: spans whose parent was lost: {orphans:?}"
        );
    }
}

/// A literal typed into a statement stays out of the trace file, unless
/// `rules.record_literals` says otherwise (then it is there: the search
/// finds what is there).
#[test]
fn a_literal_typed_into_the_cli_stays_out_of_its_trace_unless_asked() {
    let (_data, creates) = tpch_dir();
    let literal = "Zqliteral7";
    let sql = format!(
        "SELECT l_returnflag, count(*) FROM lineitem WHERE l_comment <> '{literal}' AND l_quantity < 48123 GROUP BY l_returnflag"
    );
    for (name, env, kept) in [
        ("literals-masked", vec![], false),
        (
            "literals-kept",
            vec![("DFTRACE_RULES__RECORD_LITERALS", "true")],
            true,
        ),
    ] {
        let dir = workdir(name);
        assert_success(&run_cli(&dir, &env, &["-q", "-c", &creates[0], "-c", &sql]));
        let mut bytes = String::new();
        // The spans (the metrics files hold counts, whose digits could
        // match the number literal by chance).
        for entry in std::fs::read_dir(dir.join("dftrace-traces"))
            .unwrap()
            .flatten()
            .filter(|entry| !is_metrics_file(&entry.path()))
        {
            bytes.push_str(&std::fs::read_to_string(entry.path()).unwrap());
        }
        assert!(
            bytes.contains("FilterExec"),
            "{name}: the trace has the plan"
        );
        assert_eq!(bytes.contains(literal), kept, "{name}: the string literal");
        assert_eq!(bytes.contains("48123"), kept, "{name}: the number literal");
    }
}

/// Settings that hold credentials are never echoed: a malformed header list
/// and an endpoint with a password make the CLI fail naming the variable
/// and the defect, without the secret.
#[test]
fn credentials_in_settings_are_never_echoed() {
    for (var, value, secret) in [
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer Zqtoken123,broken",
            "Zqtoken123",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://user:Zqpassword9@collector:bad",
            "Zqpassword9",
        ),
    ] {
        let dir = workdir("credentials");
        let output = run_cli(&dir, &[(var, value)], &["-q", "-c", "SELECT 1"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{var}: refused: {stderr}");
        assert!(stderr.contains(var), "{var}: names the variable: {stderr}");
        assert!(
            !stderr.contains(secret),
            "{var}: the secret is not echoed: {stderr}"
        );
        assert!(stderr.contains("***"), "{var}: shows the mask: {stderr}");
    }
}

/// The lines of a CSV result printed by `-q --format csv`, after its header.
fn csv_rows<'a>(stdout: &'a str, header: &str) -> Vec<&'a str> {
    let mut lines = stdout.lines().skip_while(|line| *line != header).skip(1);
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        // The next statement's header starts with a letter; rows here
        // start with a digit or a quote.
        if line.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            break;
        }
        rows.push(line);
    }
    rows
}

#[test]
fn the_session_and_past_traces_can_be_asked_in_sql() {
    let (_data, creates) = tpch_dir();
    // A first session writes a trace file.
    let (earlier, _) = run_select("history-earlier", &[]);
    let file = std::fs::read_dir(earlier.join("dftrace-traces"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| !is_metrics_file(path))
        .expect("a trace file");
    let written = spans_in(&earlier);
    let mut root_rows: Vec<(u64, String)> = written
        .iter()
        .filter(|s| s.span.name == "dftrace.query")
        .map(|s| {
            (
                s.span.start_unix_ns,
                s.span.int_attributes["dftrace.rows"].to_string(),
            )
        })
        .collect();
    root_rows.sort();

    // A second one asks its own queries and the first one's trace file.
    let dir = workdir("history");
    let spans_path = file.display().to_string();
    let output = run_cli(
        &dir,
        &[("DFTRACE_HISTORY__SPANS_PATH", &spans_path)],
        &[
            "-q",
            "--format",
            "csv",
            "-c",
            &creates[0],
            "-c",
            SELECT,
            "-c",
            "SELECT count(*) AS total FROM lineitem",
            "-c",
            "SELECT output_rows, outcome FROM dftrace.queries ORDER BY duration_ns DESC LIMIT 5",
            "-c",
            "SELECT count(*) AS spans FROM dftrace.spans",
            "-c",
            "SELECT int_attributes['dftrace.rows'] AS root_rows FROM dftrace.spans \
             WHERE name = 'dftrace.query' ORDER BY start",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("SELECT * FROM dftrace.queries"),
        "the CLI names the tables: {stderr}"
    );
    // The three statements before it, whatever their order by duration:
    // the CREATE (no rows), the SELECT's 3 groups, the count's one row.
    let mut queries = csv_rows(&stdout, "output_rows,outcome");
    queries.sort_unstable();
    assert_eq!(queries, ["0,ok", "1,ok", "3,ok"], "{stdout}");
    assert_eq!(
        csv_rows(&stdout, "spans"),
        [written.len().to_string()],
        "every span of the earlier file: {stdout}"
    );
    let expected: Vec<&str> = root_rows.iter().map(|(_, rows)| rows.as_str()).collect();
    assert_eq!(csv_rows(&stdout, "root_rows"), expected, "{stdout}");
}

/// Runs the CLI under a pseudo-terminal (Python's `pty` module, part of
/// every Python 3); returns what the terminal showed, stdout and stderr
/// together as a user sees them.
fn run_cli_in_terminal(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let script = "import pty, sys\nstatus = pty.spawn(sys.argv[1:])\nsys.exit(status >> 8)";
    let output = isolated_command("python3")
        .current_dir(dir)
        .envs(env.iter().copied())
        .arg("-c")
        .arg(script)
        .arg(cli_binary())
        .args(args)
        .output()
        .expect("python3 runs the CLI in a terminal (install Python 3 if it is missing)");
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "the CLI failed: {shown}");
    shown
}

/// What the terminal shows once its control sequences are applied: each
/// line as it ends up after carriage returns and line erasures.
fn final_screen_lines(shown: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut rest = shown;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\u{1b}[2K") {
            line.clear();
            rest = after;
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '\r' => {
                // Overwritten by what follows on the same line (a shorter
                // text leaves the end: the line erasure above handles that).
                if !rest.starts_with('\n') {
                    line.clear();
                }
            }
            '\n' => lines.push(std::mem::take(&mut line)),
            _ => line.push(c),
        }
    }
    lines.push(line);
    lines
}

#[test]
fn a_long_statement_shows_a_progress_line_on_a_terminal_and_erases_it() {
    let query = "SELECT count(*) AS n FROM generate_series(1, 200000)";
    // Shown from the start, so even a quick statement draws it once.
    let env = [("DFTRACE_CLI__PROGRESS_AFTER_MS", "0")];
    let shown = run_cli_in_terminal(&workdir("progress-tty"), &env, &["-q", "-c", query]);
    assert!(
        shown.contains("dftrace: running"),
        "the progress line was drawn: {shown:?}"
    );
    let screen = final_screen_lines(&shown);
    assert!(
        !screen.iter().any(|line| line.contains("dftrace: running")),
        "and erased before the result: {screen:#?}"
    );
    assert!(
        screen.iter().any(|line| line.contains("200000")),
        "the result printed: {screen:#?}"
    );
    // Not a terminal: no progress line, whatever the setting.
    let piped = run_cli(&workdir("progress-pipe"), &env, &["-q", "-c", query]);
    assert!(piped.status.success());
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("dftrace: running"));
    assert!(!String::from_utf8_lossy(&piped.stdout).contains("dftrace: running"));
    // Turned off: none on a terminal either.
    let off = run_cli_in_terminal(
        &workdir("progress-off"),
        &[
            ("DFTRACE_CLI__PROGRESS", "false"),
            ("DFTRACE_CLI__PROGRESS_AFTER_MS", "0"),
        ],
        &["-q", "-c", query],
    );
    assert!(!off.contains("dftrace: running"), "{off:?}");
}

#[test]
fn the_file_sink_writes_the_metrics_beside_the_spans() {
    let (dir, _) = run_select("metrics-file", &[]);
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("dftrace-traces"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    let metrics: Vec<&PathBuf> = files.iter().filter(|path| is_metrics_file(path)).collect();
    assert_eq!(
        metrics.len(),
        1,
        "one metrics file beside the trace file: {files:?}"
    );
    let trace_file = files.iter().find(|path| !is_metrics_file(path)).unwrap();
    assert_eq!(
        metrics[0].to_string_lossy(),
        trace_file
            .to_string_lossy()
            .replace(".jsonl", ".metrics.jsonl"),
        "named after the trace file"
    );
    // What the OTLP sink sends: OTLP-JSON export requests, flushed at exit.
    let mut names = BTreeSet::new();
    for line in std::fs::read_to_string(metrics[0]).unwrap().lines() {
        let request: Value = serde_json::from_str(line).expect("each line is JSON");
        for resource in request["resourceMetrics"]
            .as_array()
            .expect("resourceMetrics")
        {
            for scope in resource["scopeMetrics"].as_array().unwrap() {
                for metric in scope["metrics"].as_array().unwrap() {
                    names.insert(metric["name"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    for expected in [
        "dftrace.query.duration",
        "dftrace.query.rows",
        "dftrace.queries.in_flight",
        "dftrace.query.memory.peak",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }
    // dftrace.spans reads the folder's files with the view's reader, which
    // skips the metrics lines without a word.
    assert!(dftrace_view::read_trace_file(trace_file, None).is_ok());
    for line in std::fs::read_to_string(metrics[0]).unwrap().lines() {
        assert!(dftrace_view::read_line(line).unwrap().is_empty());
    }
}
