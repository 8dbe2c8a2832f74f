//! Observability must never break its host: collector faults (absent, killed
//! and restarted, accepting but never answering), a normal exit, and a burst
//! of concurrent queries — against the real `rotel` collector, with a traced
//! host process (`scripted_host`) driven query by query.
//!
//! Every case checks that queries return the right rows, that no span is
//! lost silently (the guard's dropped count equals what the collector did
//! not receive), and that queries never wait on export: a collector that
//! holds an export request unanswered while every query still returns shows
//! it without timing anything. The cases run one at a time (they share the
//! machine's two cores and the collector ports).

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_tests::moto::free_port;
use dftrace_tests::rotel::Rotel;
use dftrace_tests::wait::{SHUTDOWN_SLACK_MS, poll_until};
use dftrace_tests::{isolated_command, serial};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

/// How long one command may take before the host counts as hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// For the timeouts a case's answer must not depend on (how fast the
/// machine delivers): they only turn a hang into a failure.
const HANG_MS: &str = dftrace_tests::HANG_BOUND_MS;

/// How long spans may take to reach the collector (or to fail to) before
/// the test counts them as lost: only a bound on a hang.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

struct Host {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Host {
    /// Starts the host with `env` (nothing inherited from DFTRACE_/OTEL_).
    fn start(env: &[(&str, String)]) -> Host {
        let mut command = isolated_command(env!("CARGO_BIN_EXE_scripted_host"));
        command
            .env("DFTRACE_PRESET", "maximal-no-data")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start scripted_host");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let mut host = Host {
            child,
            stdin,
            lines,
        };
        assert_eq!(host.answer()["ready"], true);
        host
    }

    fn answer(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(COMMAND_TIMEOUT)
            .unwrap_or_else(|_| {
                let _ = self.child.kill();
                panic!("the host did not answer within {COMMAND_TIMEOUT:?}: hung or crashed")
            });
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad answer `{line}`: {e}"))
    }

    fn send(&mut self, command: &str) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.answer()
    }

    /// Runs `n` queries; asserts their rows.
    fn run(&mut self, n: usize, label: &str) {
        let answer = self.send(&format!("run {n} {label}"));
        assert_eq!(answer["all_right"], true, "{label}: wrong rows: {answer}");
    }

    /// The span counts so far: `(ended, exported, failed)`.
    fn progress(&mut self) -> (u64, u64, u64) {
        let progress = self.send("progress");
        (
            count(&progress, "ended"),
            count(&progress, "exported"),
            count(&progress, "failed"),
        )
    }

    /// Waits until every span that ended so far has been through an export
    /// attempt (exported, or failed), and returns the counts. Valid while
    /// the export queue never overflowed (no span is lost without an
    /// attempt).
    fn wait_until_export_settles(&mut self) -> (u64, u64, u64) {
        let mut last = (0, 0, 0);
        let settled = poll_until(DELIVERY_TIMEOUT, || {
            last = self.progress();
            let (ended, exported, failed) = last;
            exported + failed == ended
        });
        assert!(
            settled,
            "spans still unexported after {DELIVERY_TIMEOUT:?}: (ended, exported, failed) = {last:?}"
        );
        last
    }

    fn peak_rss_kib(&mut self) -> u64 {
        self.send("rss")["peak_rss_kib"].as_u64().unwrap()
    }

    /// Exits normally; returns the shutdown report.
    fn exit(mut self) -> Value {
        let report = self.send("exit");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "host exited with {status}");
        report
    }
}

/// The exit `report` of a host whose collector took no span (`case`
/// names it): nothing exported, every ended span counted as dropped, and
/// the flush at exit given up within `shutdown_timeout_ms` (plus slack).
fn assert_nothing_delivered(report: &Value, shutdown_timeout_ms: u64, case: &str) {
    assert_eq!(count(report, "exported"), 0, "{case}: {report}");
    assert_eq!(
        count(report, "dropped"),
        count(report, "ended"),
        "{case}: {report}"
    );
    assert!(
        count(report, "shutdown_ms") <= shutdown_timeout_ms + SHUTDOWN_SLACK_MS,
        "{case}: the shutdown timeout holds: {report}"
    );
}

fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no `{key}` in {report}"))
}

/// A collector that accepts connections, reads what is sent, and never
/// says a word: an export to it stays in flight until its timeout.
struct SilentCollector {
    port: u16,
    received: Arc<AtomicU64>,
}

impl SilentCollector {
    fn start() -> SilentCollector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    // Held open, never answered, until the peer gives up.
                    while let Ok(read @ 1..) = stream.read(&mut buffer) {
                        counter.fetch_add(read as u64, Ordering::SeqCst);
                    }
                });
            }
        });
        SilentCollector { port, received }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until an exporter has sent it something: from then on, that
    /// export is in flight and unanswered.
    fn wait_for_an_export(&self) {
        assert!(
            poll_until(DELIVERY_TIMEOUT, || self.received.load(Ordering::SeqCst)
                > 0),
            "no export reached the silent collector within {DELIVERY_TIMEOUT:?}"
        );
    }
}

#[test]
fn collector_absent_at_start_costs_dropped_spans_only() {
    let _serial = serial();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut host = Host::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", dead),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("DFTRACE_EXPORT__SHUTDOWN_TIMEOUT_MS", "3000".to_owned()),
    ]);
    host.run(2, "warmup");
    // The exporter has found nobody listening...
    let mut failed = 0;
    assert!(
        poll_until(DELIVERY_TIMEOUT, || {
            failed = host.progress().2;
            failed > 0
        }),
        "no export failed within {DELIVERY_TIMEOUT:?} with no collector"
    );
    // ... and queries keep returning the right rows (`run` checks them).
    host.run(8, "measured");
    let report = host.exit();
    assert!(count(&report, "ended") > 50, "{report}");
    assert_nothing_delivered(&report, 3_000, "no collector");
}

#[test]
fn collector_killed_and_restarted_receives_what_came_after() {
    let _serial = serial();
    let first = Rotel::start();
    let (grpc_port, http_port) = (first.grpc_port(), first.http_port());
    let mut host = Host::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", first.grpc_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        // Bounds on a hang only (as the flush at exit, `isolated_command`):
        // an export to a live collector must not time out on a loaded
        // machine (the collector could still read a request the exporter
        // counted failed), and one to a dead port is refused at once.
        ("OTEL_EXPORTER_OTLP_TIMEOUT", HANG_MS.to_owned()),
        ("OTEL_BSP_EXPORT_TIMEOUT", HANG_MS.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]);
    host.run(3, "before");
    // Every span so far went out; the first collector received what the
    // exporter says it delivered.
    let (_, exported_before, failed_before) = host.wait_until_export_settles();
    assert_eq!(failed_before, 0, "the first collector was up");
    let received_first = first.wait_for_span_count(exported_before as usize, DELIVERY_TIMEOUT);
    assert_eq!(received_first as u64, exported_before);
    drop(first);

    host.run(3, "down");
    // The exporter tries (and fails) to send those while nobody listens.
    let (_, _, failed_down) = host.wait_until_export_settles();
    assert!(failed_down > 0, "the down phase's exports failed");
    let second = Rotel::start_on(grpc_port, http_port);
    host.run(3, "after");
    let report = host.exit();
    let delivered_second = count(&report, "exported") - exported_before;
    second.wait_for_span_count(delivered_second as usize, DELIVERY_TIMEOUT);
    assert!(
        second.spans_named("dftrace.query") >= 3,
        "the queries after the restart arrive"
    );
    let received = (received_first + second.span_count()) as u64;
    let ended = count(&report, "ended");
    assert!(
        count(&report, "dropped") > 0,
        "the down phase lost spans: {report}"
    );
    assert_eq!(
        count(&report, "dropped"),
        ended - received,
        "dropped is exactly what did not arrive ({received} of {ended} arrived): {report}"
    );
}

#[test]
fn collector_that_never_answers_neither_blocks_queries_nor_grows_memory() {
    let _serial = serial();
    // An export to the silent collector cannot end, by success or by
    // timeout, while the test looks.
    const NEVER_MS: &str = HANG_MS;
    for protocol in ["grpc", "http/protobuf"] {
        // One per protocol: bytes the first host sent must not pass for
        // the second's export.
        let collector = SilentCollector::start();
        let mut host = Host::start(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", NEVER_MS.to_owned()),
            ("OTEL_BSP_EXPORT_TIMEOUT", NEVER_MS.to_owned()),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "256".to_owned()),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64".to_owned()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("DFTRACE_EXPORT__SHUTDOWN_TIMEOUT_MS", "2000".to_owned()),
        ]);
        host.run(2, "warmup");
        collector.wait_for_an_export();
        // Twenty queries run to the right rows while that export hangs.
        host.run(10, "measured");
        let after_first = host.peak_rss_kib();
        host.run(10, "more");
        let after_second = host.peak_rss_kib();
        let (ended, exported, failed) = host.progress();
        assert_eq!(
            (exported, failed),
            (0, 0),
            "{protocol}: the export was still in flight while the queries ran"
        );
        assert!(
            ended > 256,
            "{protocol}: more spans than the queue holds: {ended}"
        );
        assert!(
            after_second.saturating_sub(after_first) < 16 * 1024,
            "{protocol}: memory grew with unexported spans: {after_first} -> {after_second} KiB"
        );
        let report = host.exit();
        println!("{protocol}: peak RSS {after_first} -> {after_second} KiB; {report}");
        assert_eq!(report["timed_out"], true, "{protocol}: {report}");
        assert_nothing_delivered(&report, 2_000, protocol);
    }
}

#[test]
fn a_normal_exit_delivers_every_span() {
    let _serial = serial();
    let rotel = Rotel::start();
    let mut host = Host::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        // Exported when a batch fills or at exit, never on a timer, however
        // long the queries take (the flush at exit is bounded only against
        // a hang: `isolated_command`).
        ("OTEL_BSP_SCHEDULE_DELAY", HANG_MS.to_owned()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "65536".to_owned()),
    ]);
    host.run(12, "exit");
    let report = host.exit();
    let ended = count(&report, "ended");
    assert_eq!(count(&report, "dropped"), 0, "{report}");
    assert_eq!(count(&report, "exported"), ended, "{report}");
    assert_eq!(
        rotel.wait_for_span_count(ended as usize, DELIVERY_TIMEOUT) as u64,
        ended,
        "the collector got them all"
    );
    assert_eq!(rotel.spans_named("dftrace.query"), 12);
}

#[test]
fn plans_with_huge_literals_are_capped_and_still_delivered() {
    let _serial = serial();
    let rotel = Rotel::start();
    for (limit, delivered) in [("16384", true), ("0", false)] {
        let before = rotel.spans_named("dftrace.query");
        let mut host = Host::start(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint()),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", limit.to_owned()),
            // One export, at exit, of every span: uncapped, none of them
            // can slip out in an early batch of small planner spans.
            ("OTEL_BSP_SCHEDULE_DELAY", HANG_MS.to_owned()),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4096".to_owned()),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096".to_owned()),
            // Kept as they are, the literal's 500 000 values are the plan
            // text (masked, the list would be one `?`), which `maximal-no-data`
            // records in its plan diffs and planner plans.
            ("DFTRACE_RULES__RECORD_LITERALS", "true".to_owned()),
            ("DFTRACE_PRESET", "maximal-no-data".to_owned()),
        ]);
        let answer = host.send("huge");
        assert_eq!(answer["all_right"], true, "{answer}");
        let report = host.exit();
        let ended = count(&report, "ended");
        if delivered {
            // Capped: every span arrives, the query span among them.
            assert_eq!(count(&report, "dropped"), 0, "limit {limit}: {report}");
            assert_eq!(
                rotel.wait_for_spans("dftrace.query", before + 1, DELIVERY_TIMEOUT),
                before + 1
            );
            assert!(
                rotel.output().contains("…[truncated "),
                "the cut is visible"
            );
        } else {
            // Uncapped, the collector refuses the oversized request; the loss
            // is counted, never silent.
            assert_eq!(count(&report, "dropped"), ended, "limit {limit}: {report}");
        }
    }
}

#[test]
fn thirty_two_concurrent_queries_with_an_overflowing_queue_report_their_losses() {
    let _serial = serial();
    let rotel = Rotel::start();
    let mut host = Host::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.grpc_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        // A queue far smaller than a burst of 32 traced queries.
        ("OTEL_BSP_MAX_QUEUE_SIZE", "64".to_owned()),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "32".to_owned()),
        // An export held by the paused collector waits for it rather than
        // failing while the request sits in its socket (a failed request
        // the collector reads later would be counted twice). Only a bound
        // on a hang.
        ("OTEL_EXPORTER_OTLP_TIMEOUT", HANG_MS.to_owned()),
        ("OTEL_BSP_EXPORT_TIMEOUT", HANG_MS.to_owned()),
    ]);
    // The collector takes nothing during the burst, so the queue overflows
    // however fast the machine exports (on a fast one it kept up).
    rotel.pause();
    let answer = host.send("concurrent 32 3");
    rotel.resume();
    assert_eq!(answer["all_right"], true, "{answer}");
    let report = host.exit();
    // What the exporter says it delivered has arrived (or the wait ends at
    // the deadline and the equality below names the difference).
    let received =
        rotel.wait_for_span_count(count(&report, "exported") as usize, DELIVERY_TIMEOUT) as u64;
    let ended = count(&report, "ended");
    println!("{ended} spans ended, {received} received: {report}");
    assert!(
        count(&report, "dropped") > 0,
        "the burst overflowed the queue: {report}"
    );
    assert_eq!(count(&report, "dropped"), ended - received, "{report}");
}
