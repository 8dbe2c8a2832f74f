//! dftrace-bootstrap against the real `rotel` collector: every protocol
//! delivers every span with typed attributes and the resource; the file sink's
//! lines are OTLP JSON a collector accepts; a dead collector loses nothing
//! silently; samplers and OTEL_SDK_DISABLED do what the specification says.
//! Each scenario runs `emit_spans` as a child process (bootstrap installs
//! process-wide state).

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_tests::rotel::Rotel;
use dftrace_tests::{assert_contains_all, isolated_command};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Runs the emitter with `env` (and nothing inherited from DFTRACE_/OTEL_).
fn emit(argument: &str, env: &[(&str, String)]) -> Value {
    let mut command = isolated_command(env!("CARGO_BIN_EXE_emit_spans"));
    let dir = std::env::temp_dir().join(format!("dftrace-emit-{}", std::process::id()));
    command.arg(argument).current_dir(
        std::fs::create_dir_all(&dir)
            .map(|()| dir)
            .unwrap_or_else(|e| panic!("{e}")),
    );
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run emit_spans: {e}"));
    assert!(
        output.status.success(),
        "emit_spans failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "emit_spans printed no report ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{key}` in {report}"))
}

#[test]
fn every_protocol_delivers_all_spans_with_types_and_resource() {
    for protocol in ["grpc", "http/protobuf", "http/json"] {
        let rotel = Rotel::start();
        let endpoint = if protocol == "grpc" {
            rotel.grpc_endpoint()
        } else {
            rotel.http_endpoint()
        };
        let service = format!("dftrace-test-{}", protocol.replace('/', "-"));
        let report = emit(
            "1000",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
                ("OTEL_SERVICE_NAME", service.clone()),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=ci,team=data".to_owned(),
                ),
            ],
        );
        assert_eq!(
            (
                count(&report, "ended"),
                count(&report, "exported"),
                count(&report, "dropped")
            ),
            (1000, 1000, 0),
            "{protocol}: {report}"
        );
        let received = rotel.wait_for_spans("emitted", 1000, Duration::from_secs(20));
        assert_eq!(
            received, 1000,
            "{protocol}: rotel received {received} of 1000"
        );
        let output = rotel.output();
        for expected in [
            format!("service.name: Str({service})"),
            "deployment.environment: Str(ci)".to_owned(),
            "test.index: Int(999)".to_owned(),
            "test.ratio: Double(0.5)".to_owned(),
            "test.flag: Bool(true)".to_owned(),
        ] {
            assert!(
                output.contains(&expected),
                "{protocol}: `{expected}` not in rotel's output"
            );
        }
    }
}

/// POSTs `body` to rotel's OTLP/HTTP JSON receiver; returns the status line.
fn post_json(port: u16, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    let request = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn file_sink_lines_are_otlp_json_a_collector_accepts() {
    let path = std::env::temp_dir().join(format!("dftrace-file-sink-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let report = emit(
        "250",
        &[
            ("DFTRACE_EXPORT__SINK", "file".to_owned()),
            ("DFTRACE_EXPORT__FILE__PATH", path.display().to_string()),
        ],
    );
    assert_eq!(count(&report, "exported"), 250, "{report}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
    let rotel = Rotel::start();
    let mut spans = 0;
    for line in text.lines() {
        spans += dftrace_view::read_line(line)
            .unwrap_or_else(|e| panic!("not an OTLP-JSON trace request ({e}): {line}"))
            .len();
        let status = post_json(rotel.http_port(), line);
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "rotel refused a line: {status}"
        );
    }
    assert_eq!(spans, 250);
    assert_eq!(
        rotel.wait_for_spans("emitted", 250, Duration::from_secs(20)),
        250
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn collector_down_loses_nothing_silently_and_queries_still_work() {
    // A port nobody listens on.
    let dead = format!("http://127.0.0.1:{}", dftrace_tests::moto::free_port());
    for protocol in ["grpc", "http/protobuf"] {
        let report = emit(
            "--query",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", dead.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".to_owned()),
                ("DFTRACE_EXPORT__SHUTDOWN_TIMEOUT_MS", "3000".to_owned()),
                ("DFTRACE_PRESET", "maximal-no-data".to_owned()),
            ],
        );
        let rows = report["rows"].as_str().unwrap_or_default();
        assert!(
            rows.contains("| 0 | 80 |") && rows.contains("| 2 | 80 |"),
            "{protocol}: wrong results: {rows}"
        );
        let ended = count(&report, "ended");
        assert!(ended > 5, "{protocol}: the query produced spans: {report}");
        assert_eq!(count(&report, "exported"), 0, "{protocol}: {report}");
        assert_eq!(
            count(&report, "dropped"),
            ended,
            "{protocol}: every span counted as dropped: {report}"
        );
        assert!(
            count(&report, "shutdown_ms") <= 3_000 + dftrace_tests::wait::SHUTDOWN_SLACK_MS,
            "{protocol}: shutdown within the timeout: {report}"
        );
    }
}

#[test]
fn samplers_and_sdk_disabled() {
    let rotel = Rotel::start();
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint());
    let none = emit(
        "100",
        &[
            endpoint.clone(),
            ("OTEL_TRACES_SAMPLER", "traceidratio".into()),
            ("OTEL_TRACES_SAMPLER_ARG", "0".into()),
        ],
    );
    assert_eq!(
        (count(&none, "ended"), count(&none, "exported")),
        (0, 0),
        "{none}"
    );
    let all = emit(
        "100",
        &[
            endpoint.clone(),
            ("OTEL_TRACES_SAMPLER", "always_on".into()),
        ],
    );
    assert_eq!(count(&all, "exported"), 100, "{all}");
    assert_eq!(
        rotel.wait_for_spans("emitted", 100, Duration::from_secs(20)),
        100,
        "only always_on's spans arrive (the ratio-0 run ended none)"
    );

    let disabled = emit("100", &[endpoint, ("OTEL_SDK_DISABLED", "true".into())]);
    assert_eq!(
        (count(&disabled, "ended"), count(&disabled, "exported")),
        (0, 0),
        "{disabled}"
    );
    assert!(
        disabled["trace_file"].is_null(),
        "no file either: {disabled}"
    );
}

#[test]
fn bad_settings_fail_init_naming_the_variable() {
    for (var, value, expected) in [
        (
            "OTEL_TRACES_SAMPLER",
            "sometimes",
            "unknown variant `sometimes`",
        ),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "carrier-pigeon",
            "unknown variant `carrier-pigeon`",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "localhost:4317",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-5", "OTEL_BSP_MAX_QUEUE_SIZE"),
        (
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            "0",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        ),
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "5000000000", "1 to 1000000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "-3", "OTEL_BSP_SCHEDULE_DELAY"),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://:99999/",
            "empty host",
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "ftp://host:4317",
            "http:// or https://",
        ),
        (
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
            "-1",
            "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        ),
    ] {
        let mut command = isolated_command(env!("CARGO_BIN_EXE_emit_spans"));
        let output = command
            .arg("1")
            .env(var, value)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(expected), "{var}={value}: {stderr}");
        assert!(
            !stderr.contains("panicked"),
            "{var}={value} panicked: {stderr}"
        );
    }
}

#[test]
fn a_ratio_outside_zero_to_one_fails_init() {
    let output = isolated_command(env!("CARGO_BIN_EXE_emit_spans"))
        .arg("1")
        .env("OTEL_TRACES_SAMPLER", "traceidratio")
        .env("OTEL_TRACES_SAMPLER_ARG", "1.5")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_contains_all(&stderr, &["OTEL_TRACES_SAMPLER_ARG", "a ratio from 0 to 1"]);
}
