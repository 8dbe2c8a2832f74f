//! Every example in `examples/examples/` runs and says what it should. The
//! examples assert their own invariants; this test runs the binaries that
//! `cargo test --workspace` (what `cargo xtask test` runs) builds with its
//! default targets, and checks their output.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_tests::rotel::Rotel;
use dftrace_tests::{example_binary, isolated_command, workspace_root};
use std::process::Command;
use std::time::Duration;

/// Each example with a line its output must contain.
const EXAMPLES: &[(&str, &str)] = &[
    ("registry_config", "session built with every linked plugin"),
    ("rules_span_tree", "dftrace.query"),
    ("preview_redaction", "allow-list [id, contact.city]"),
    ("object_store_spans", "file.get"),
    ("metrics_summary", "dftrace.metrics.output_rows = 10"),
    ("file_sink", "0 dropped"),
    ("host", "0 dropped"),
    ("udf", "has a frame for score"),
    ("history", "held query seen running, then kept"),
    ("caches", "each scan found the footer the CREATE cached"),
    ("view", "drawn: flame graphs, Chrome trace, HTML page"),
    (
        "own_telemetry",
        "1 query root under the request, no literal",
    ),
    // Three worker processes and a coordinator on loopback (all-in-one mode;
    // its worker and coordinator modes are checked span by span in
    // distributed.rs).
    (
        "distributed",
        "the span files of the coordinator and the 3 workers",
    ),
];

fn run(name: &str, command: &mut Command) -> String {
    let output = command
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run example {name}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "example {name} failed with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn every_example_is_tested() {
    let mut on_disk: Vec<String> = std::fs::read_dir(workspace_root().join("examples/examples"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_owned)
        })
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = EXAMPLES
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .chain(["otlp_export".to_owned()])
        .collect();
    tested.sort();
    assert_eq!(on_disk, tested, "every example has a case here");
}

#[test]
fn examples_run_and_print_what_they_promise() {
    for (name, expected) in EXAMPLES {
        // Isolated, as below: a traced example's flush at exit is bounded
        // only against a hang, so a loaded machine cannot cut it short.
        let stdout = run(name, &mut isolated_command(example_binary(name)));
        assert!(
            stdout.contains(expected),
            "example {name} should print `{expected}`:\n{stdout}"
        );
    }
}

#[test]
fn otlp_export_example_delivers_to_a_real_collector() {
    let rotel = Rotel::start();
    let stdout = run(
        "otlp_export",
        // Isolated: its flush at exit bounded only against a hang (on a
        // loaded machine, the example's 3 s could end it before the
        // collector answered).
        isolated_command(example_binary("otlp_export"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    );
    assert!(stdout.contains(" 0 dropped"), "{stdout}");
    assert_eq!(
        rotel.wait_for_spans("dftrace.query", 1, Duration::from_secs(10)),
        1,
        "the collector received the query span"
    );
}
