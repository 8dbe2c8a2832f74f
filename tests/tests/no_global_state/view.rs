//! `cargo xtask view`: the traced CLI prints a view command for its last
//! query, and that trace becomes a flame graph with a frame per span, a
//! Chrome trace whose tracks nest, and an HTML page listing every operator —
//! which headless Chromium renders (`cargo xtask test --browser`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_tests::tpch::{Q3, Table, write_tables};
use dftrace_tests::{assert_success, cli_binary, isolated_command, workspace_root};
use dftrace_view::{Trace, ViewFiles, read_trace_file, render_trace_file};
use quick_xml::Reader;
use quick_xml::events::Event;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

/// TPC-H Q3 through the traced CLI, then the printed view command's trace
/// drawn into a fresh folder: (the trace, the files).
fn drawn_query() -> &'static (Trace, ViewFiles) {
    static DRAWN: OnceLock<(Trace, ViewFiles)> = OnceLock::new();
    DRAWN.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dftrace-view-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let creates = write_tables(
            &dir.join("data"),
            0.01,
            &[Table::Customer, Table::Orders, Table::Lineitem],
        );
        let mut command = isolated_command(cli_binary());
        command.current_dir(&dir).arg("-q");
        for statement in creates.iter().map(String::as_str).chain([Q3]) {
            command.args(["-c", statement]);
        }
        let output = command.output().expect("the CLI runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");

        // "dftrace: see the last query: cargo xtask view <file> --trace-id <id>"
        let command = stderr
            .lines()
            .find_map(|line| line.strip_prefix("dftrace: see the last query: cargo xtask view "))
            .unwrap_or_else(|| panic!("the CLI prints a view command:\n{stderr}"));
        let (file, trace_id) = command
            .split_once(" --trace-id ")
            .expect("file and trace id");
        let file = dir.join(file);
        let trace = read_trace_file(&file, Some(trace_id)).unwrap();
        let root = trace
            .spans
            .iter()
            .find(|s| s.parent_span_id.is_none())
            .unwrap_or_else(|| panic!("the trace has a root span:\n{stderr}\n{trace:#?}"));
        assert_eq!(
            (root.name.as_str(), root.attribute("dftrace.rows")),
            ("dftrace.query", Some("10")),
            "the view command names the Q3 trace, not a CREATE's"
        );
        let files = render_trace_file(&file, Some(trace_id), &dir.join("view")).unwrap();
        (trace, files)
    })
}

fn operator_names(trace: &Trace) -> Vec<&str> {
    trace
        .spans
        .iter()
        .filter(|s| s.is_operator())
        .map(|s| s.name.as_str())
        .collect()
}

/// The frame names of the SVG (from each frame's `<title>`, without the
/// ` (N µs, P%)` suffix and the ` [k]` numbering of namesakes).
fn svg_frames(svg: &str) -> Vec<String> {
    let mut reader = Reader::from_str(svg);
    let mut frames = Vec::new();
    let mut in_title = false;
    loop {
        match reader
            .read_event()
            .expect("the flame graph is well-formed XML")
        {
            Event::Start(tag) if tag.name().as_ref() == b"title" => in_title = true,
            Event::End(tag) if tag.name().as_ref() == b"title" => in_title = false,
            Event::Text(text) if in_title => {
                let title = text.decode().unwrap().into_owned();
                let name = title
                    .rsplit_once(" (")
                    .map_or(title.as_str(), |(name, _)| name);
                let name = name.split_once("\u{a0}[").map_or(name, |(name, _)| name);
                frames.push(name.to_owned());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    frames
}

#[test]
fn the_flame_graph_has_one_frame_per_span() {
    let (trace, files) = drawn_query();
    let svg = std::fs::read_to_string(&files.svg).unwrap();
    let frames = svg_frames(&svg);
    // Every span, plus inferno's "all".
    assert_eq!(frames.len(), trace.spans.len() + 1, "{frames:?}");
    let count = |names: Vec<&str>| {
        names
            .into_iter()
            .fold(BTreeMap::<String, usize>::new(), |mut counts, name| {
                *counts.entry(name.replace(' ', "\u{a0}")).or_default() += 1;
                counts
            })
    };
    let all_spans = count(trace.spans.iter().map(|s| s.name.as_str()).collect());
    let all_frames = count(
        frames
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "all")
            .collect(),
    );
    assert_eq!(all_frames, all_spans);
    let operators = operator_names(trace);
    assert!(
        operators.contains(&"HashJoinExec") && operators.len() >= 8,
        "Q3 runs joins, aggregates, sorts: {operators:?}"
    );
}

#[test]
fn the_chrome_trace_has_every_span_on_nesting_tracks() {
    let (trace, files) = drawn_query();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.chrome_trace).unwrap()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), trace.spans.len());
    // On each track, events either nest or do not overlap (what the trace
    // viewers need to draw them).
    let mut tracks: HashMap<(i64, i64), Vec<(f64, f64)>> = HashMap::new();
    for event in &complete {
        let start = event["ts"].as_f64().unwrap();
        let end = start + event["dur"].as_f64().unwrap();
        let key = (
            event["pid"].as_i64().unwrap(),
            event["tid"].as_i64().unwrap(),
        );
        tracks.entry(key).or_default().push((start, end));
    }
    // Timestamps have nanosecond resolution: `ts + dur` in microseconds
    // can miss a span that starts where another ends by a rounding error.
    const NS: f64 = 0.001;
    for (track, intervals) in &tracks {
        for (i, a) in intervals.iter().enumerate() {
            for b in &intervals[i + 1..] {
                let disjoint = a.1 <= b.0 + NS || b.1 <= a.0 + NS;
                let nested =
                    (a.0 <= b.0 + NS && b.1 <= a.1 + NS) || (b.0 <= a.0 + NS && a.1 <= b.1 + NS);
                assert!(disjoint || nested, "track {track:?}: {a:?} and {b:?} cross");
            }
        }
    }
    let named_tracks = events.iter().filter(|e| e["name"] == "thread_name").count();
    assert_eq!(named_tracks, tracks.len(), "every track has a name");
}

#[test]
fn the_page_lists_every_operator_with_its_figures() {
    let (trace, files) = drawn_query();
    let page = std::fs::read_to_string(&files.html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "no external assets"
    );
    let rows = page.matches("<td class=\"name\"").count();
    assert_eq!(rows, operator_names(trace).len());
    for operator in operator_names(trace) {
        assert!(
            page.contains(&format!(">{operator}</td>")),
            "{operator} is in the table"
        );
    }
    let scan = trace
        .spans
        .iter()
        .find(|s| s.name == "DataSourceExec")
        .unwrap();
    let scanned_rows = scan.attribute("datafusion.metrics.output_rows").unwrap();
    assert!(
        page.contains(&format!("<td>{scanned_rows}</td>")),
        "figures come from the span"
    );
}

/// Debian's Chromium: `$DFTRACE_CHROMIUM_BIN` (set by `cargo xtask test
/// --browser`, which installs it when missing), else `/usr/bin/chromium`.
fn chromium() -> PathBuf {
    let path = std::env::var_os("DFTRACE_CHROMIUM_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "this test needs Chromium at {}: run `cargo xtask test --browser` (it installs Debian's \
         `chromium` with apt-get), or set DFTRACE_CHROMIUM_BIN",
        path.display()
    );
    path
}

fn headless(extra: &[&str], url: &str) -> std::process::Output {
    let profile = std::env::temp_dir().join(format!("dftrace-chromium-{}", std::process::id()));
    let output = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("Chromium starts");
    assert_success(&output);
    output
}

#[test]
#[ignore = "needs Chromium: run `cargo xtask test --browser`"]
fn chromium_renders_the_page_with_every_operator() {
    let (trace, files) = drawn_query();
    let url = format!("file://{}", files.html.display());
    let dom = headless(&["--dump-dom"], &url);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    // The flame graph's own script runs without errors in the page.
    assert!(!stderr.contains("Uncaught"), "{stderr}");
    for operator in operator_names(trace) {
        assert!(
            dom_text.contains(&format!(">{operator}</td>")),
            "{operator} is shown"
        );
    }
    assert!(dom_text.contains("HashJoinExec"), "{dom_text}");

    // A screenshot, kept as the test's artifact.
    let artifacts = workspace_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("view.png");
    let _ = std::fs::remove_file(&screenshot);
    headless(&[&format!("--screenshot={}", screenshot.display())], &url);
    let png = std::fs::read(&screenshot).expect("Chromium wrote the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", screenshot.display());
}
