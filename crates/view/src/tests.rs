use super::FlameWidth;
use super::chrome::place;
use super::flame::{folded_lines, frame_name};
use super::html::operator_rows;
use super::*;
use serde_json::json;

/// A span as the file sink writes it (OTLP JSON), with string attributes.
fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    start: u64,
    end: u64,
    attributes: &[(&str, &str)],
) -> serde_json::Value {
    json!({
        "traceId": trace, "spanId": id, "parentSpanId": parent, "traceState": "",
        "flags": 257, "name": name, "kind": 1,
        "startTimeUnixNano": start.to_string(), "endTimeUnixNano": end.to_string(),
        "attributes": attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
            .collect::<Vec<_>>(),
        "droppedAttributesCount": 0, "events": [], "droppedEventsCount": 0, "links": [],
        "droppedLinksCount": 0, "status": {"message": "", "code": 0},
    })
}

fn line(service: &str, spans: Vec<serde_json::Value>) -> String {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}],
                     "droppedAttributesCount": 0},
        "scopeSpans": [{"scope": {"name": "dftrace", "version": ""}, "spans": spans}],
    }]})
    .to_string()
}

const A: &str = "0af7651916cd43dd8448eb211c80319c";
const B: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const OP: (&str, &str) = ("target", "dftrace::exec");

/// Query B (started later) has a root, a planner phase, and a join over two
/// scans of the same name; query A is a lone root.
fn write_file(dir: &Path) -> PathBuf {
    let path = dir.join("trace.jsonl");
    let query_b = vec![
        span(
            B,
            "0000000000000001",
            "",
            "dftrace.query",
            2_000_000,
            12_000_000,
            &[
                ("dftrace.sql.fingerprint", "abc"),
                ("db.query.text", "select '<script>'"),
            ],
        ),
        span(
            B,
            "0000000000000002",
            "0000000000000001",
            "optimize_logical_plan",
            2_100_000,
            2_600_000,
            &[],
        ),
        span(
            B,
            "0000000000000003",
            "0000000000000001",
            "HashJoinExec",
            3_000_000,
            11_000_000,
            &[
                OP,
                ("datafusion.metrics.output_rows", "42"),
                ("dftrace.operator.self_time_ns", "700000"),
                ("dftrace.operator.estimated_rows", "40"),
                ("dftrace.operator.output_rows.min", "20"),
                ("dftrace.operator.output_rows.median", "20"),
                ("dftrace.operator.output_rows.max", "22"),
                ("dftrace.operator.peak_memory_bytes", "3407872"),
                ("thread.id", "7"),
            ],
        ),
        span(
            B,
            "0000000000000004",
            "0000000000000003",
            "DataSourceExec",
            3_100_000,
            6_000_000,
            &[
                OP,
                ("dftrace.operator.self_time_ns", "2000000"),
                ("thread.id", "7"),
            ],
        ),
        span(
            B,
            "0000000000000005",
            "0000000000000003",
            "DataSourceExec",
            3_200_000,
            9_000_000,
            &[OP, ("thread.id", "7")],
        ),
    ];
    let text = format!(
        "{}\n\n{}\n",
        line(
            "dftrace",
            vec![span(
                A,
                "00000000000000aa",
                "",
                "dftrace.query",
                1_000_000,
                1_500_000,
                &[]
            )]
        ),
        line("dftrace", query_b)
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dftrace-view-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn picks_the_last_query_by_default_and_any_by_id() {
    let file = write_file(&temp_dir("pick"));
    let last = read_trace_file(&file, None).unwrap();
    assert_eq!(last.trace_id, B);
    assert_eq!(last.spans.len(), 5);
    assert_eq!(last.spans[0].name, "dftrace.query");
    assert_eq!(last.spans[0].parent_span_id, None);
    assert_eq!(last.spans[0].service, "dftrace");
    let first = read_trace_file(&file, Some(&A.to_uppercase())).unwrap();
    assert_eq!((first.trace_id.as_str(), first.spans.len()), (A, 1));
}

#[test]
fn errors_name_the_file_the_line_and_what_is_there() {
    let dir = temp_dir("errors");
    let file = write_file(&dir);
    let unknown = read_trace_file(&file, Some("ffff"))
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("trace ffff is not in"), "{unknown}");
    assert!(unknown.contains(A) && unknown.contains(B), "{unknown}");

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, format!("{}\nnot json\n", line("s", vec![]))).unwrap();
    let parse = read_trace_file(&bad, None).unwrap_err().to_string();
    assert!(
        parse.contains("bad.jsonl:2: not an OTLP-JSON trace export request"),
        "{parse}"
    );

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let none = read_trace_file(&empty, None).unwrap_err().to_string();
    assert!(none.ends_with("empty.jsonl holds no spans"), "{none}");

    let missing = read_trace_file(&dir.join("missing.jsonl"), None)
        .unwrap_err()
        .to_string();
    assert!(
        missing.starts_with("cannot read the trace file"),
        "{missing}"
    );
}

#[test]
fn folded_stacks_keep_every_span_and_its_own_time() {
    let trace = read_trace_file(&write_file(&temp_dir("folded")), None).unwrap();
    let lines = folded_lines(&trace, FlameWidth::Wall);
    let nb = '\u{a0}';
    assert_eq!(
        lines,
        vec![
            // 10 ms root minus 0.5 ms phase and 8 ms join: 1.5 ms of its own.
            "dftrace.query 1500".to_string(),
            "dftrace.query;optimize_logical_plan 500".to_string(),
            // The join's children ran concurrently for longer than it did.
            "dftrace.query;HashJoinExec 1".to_string(),
            "dftrace.query;HashJoinExec;DataSourceExec 2900".to_string(),
            format!("dftrace.query;HashJoinExec;DataSourceExec{nb}[2] 5800"),
        ]
    );
    assert_eq!(
        frame_name(" a;b  Stage 3 "),
        format!("a,b{nb}{nb}Stage{nb}3")
    );
    assert_eq!(frame_name(""), "(unnamed)");

    // By self time: each operator is as wide as its own work (the second
    // scan has no figure and keeps its wall time), the others as before.
    assert_eq!(
        folded_lines(&trace, FlameWidth::SelfTime),
        vec![
            "dftrace.query 1500".to_string(),
            "dftrace.query;optimize_logical_plan 500".to_string(),
            "dftrace.query;HashJoinExec 700".to_string(),
            "dftrace.query;HashJoinExec;DataSourceExec 2000".to_string(),
            format!("dftrace.query;HashJoinExec;DataSourceExec{nb}[2] 5800"),
        ]
    );
}

#[test]
fn the_svg_has_a_frame_per_span() {
    let trace = read_trace_file(&write_file(&temp_dir("svg")), None).unwrap();
    let svg = trace.flame_graph_svg(FlameWidth::Wall);
    assert!(svg.contains("<svg"), "{svg}");
    // One <g> frame per span plus inferno's "all" frame.
    assert_eq!(
        svg.matches("<g><title>").count(),
        trace.spans.len() + 1,
        "{svg}"
    );
    assert!(svg.contains("DataSourceExec\u{a0}[2] ("), "{svg}");
}

#[test]
fn lanes_keep_complete_events_nested() {
    let mut lanes = Vec::new();
    assert_eq!(place(&mut lanes, 0, 100), 0);
    assert_eq!(place(&mut lanes, 10, 50), 0); // inside the first
    assert_eq!(place(&mut lanes, 20, 60), 1); // overlaps [10, 50] without nesting
    assert_eq!(place(&mut lanes, 55, 90), 0); // [10, 50] has ended
    assert_eq!(place(&mut lanes, 200, 300), 0); // everything ended
}

#[test]
fn the_chrome_trace_has_an_event_per_span_and_named_tracks() {
    let trace = read_trace_file(&write_file(&temp_dir("chrome")), None).unwrap();
    let value: serde_json::Value = serde_json::from_str(&trace.chrome_trace_json()).unwrap();
    let events = value["traceEvents"].as_array().unwrap();
    let complete: Vec<_> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), trace.spans.len());
    let join = complete
        .iter()
        .find(|e| e["name"] == "HashJoinExec")
        .unwrap();
    assert_eq!(
        (join["ts"].as_f64(), join["dur"].as_f64()),
        (Some(1000.0), Some(8000.0))
    );
    assert_eq!(join["args"]["datafusion.metrics.output_rows"], "42");
    // The two scans overlap without nesting: two lanes of thread 7.
    let scan_tids: Vec<_> = complete
        .iter()
        .filter(|e| e["name"] == "DataSourceExec")
        .map(|e| e["tid"].as_i64().unwrap())
        .collect();
    assert_eq!(scan_tids, vec![7000, 7001]);
    let track_names: Vec<_> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| e["args"]["name"].as_str().unwrap())
        .collect();
    assert!(
        track_names.contains(&"thread 7 · lane 2"),
        "{track_names:?}"
    );
}

#[test]
fn the_page_lists_operators_in_plan_order_and_escapes_text() {
    let trace = read_trace_file(&write_file(&temp_dir("html")), None).unwrap();
    let (children, roots) = trace.tree();
    let rows: Vec<_> = operator_rows(&trace, &children, &roots)
        .into_iter()
        .map(|(i, depth)| (trace.spans[i].name.as_str(), depth))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("HashJoinExec", 0),
            ("DataSourceExec", 1),
            ("DataSourceExec", 1)
        ]
    );
    let page = trace.html_page();
    assert!(page.contains("select &#39;&lt;script&gt;&#39;"), "{page}");
    assert!(
        !page.contains("<?xml"),
        "the SVG is inlined without its prolog"
    );
    assert!(page.contains("<td>42</td>"), "{page}");
    // Self time, estimated rows and the spread over partitions.
    assert!(page.contains("<td>700.0 µs</td>"), "{page}");
    assert!(page.contains("<td>40</td>"), "{page}");
    assert!(page.contains("<td>20 / 20 / 22</td>"), "{page}");
    // The peak memory pool reservation; no spill figure shows as none.
    assert!(page.contains("<td>3.2 MiB</td><td>–</td>"), "{page}");
    // Both flame graphs, one script: the self-time one is switched to.
    assert!(page.contains("id=\"width-self\""), "{page}");
    assert!(page.matches("<svg").count() >= 2, "{page}");
    assert!(page.contains("(operator self time)"), "{page}");
}

#[test]
fn render_writes_the_three_files() {
    let dir = temp_dir("render");
    let files = render_trace_file(&write_file(&dir), None, &dir.join("out")).unwrap();
    assert_eq!(files.trace_id, B);
    for path in [
        &files.svg,
        &files.self_time_svg,
        &files.html,
        &files.chrome_trace,
    ] {
        assert!(
            std::fs::metadata(path).unwrap().len() > 100,
            "{}",
            path.display()
        );
    }
}
