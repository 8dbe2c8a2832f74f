//! One trace across a distributed query: TPC-H Q3 on a coordinator and three
//! `datafusion-distributed` workers, each a separate process (the
//! `distributed` example) on loopback with its own dftrace telemetry writing
//! OTLP-JSON lines. The spans of all four processes must form one trace
//! under the coordinator's root query span, every worker must have run and
//! traced operators, and the rows must equal a single-node run.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use dftrace_tests::moto::{free_port, wait_for_port};
use dftrace_tests::rotel::Rotel;
use dftrace_tests::tpch::{Q3, Table, write_tables};
use dftrace_tests::{example_binary, isolated_command};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// One exported span, with the `service.instance.id` of its process.
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    target: String,
    instance: String,
    /// Values as text (an int as its digits).
    attributes: HashMap<String, String>,
}

fn read_spans(dir: &Path) -> Vec<Span> {
    let mut spans = Vec::new();
    // The file sink's metrics files (`*.metrics.jsonl`) hold no spans.
    for entry in std::fs::read_dir(dir)
        .expect("a trace folder")
        .flatten()
        .filter(|entry| !entry.path().to_string_lossy().ends_with(".metrics.jsonl"))
    {
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let read = dftrace_view::read_line(line).expect("an OTLP-JSON trace request");
            for (trace_id, span) in read {
                // The view labels a span's process `service.name/service.instance.id`.
                let instance = span
                    .service
                    .rsplit_once('/')
                    .map(|(_, instance)| instance.to_owned())
                    .expect("every process names its instance");
                let attributes: HashMap<String, String> = span.attributes.into_iter().collect();
                spans.push(Span {
                    trace_id,
                    span_id: span.span_id,
                    parent_span_id: span.parent_span_id.unwrap_or_default(),
                    name: span.name,
                    target: attributes["target"].clone(),
                    instance,
                    attributes,
                });
            }
        }
    }
    spans
}

/// Every span in rotel's detailed debug log, with its resource's
/// `service.instance.id`.
fn rotel_spans(log: &str) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut instance = String::new();
    let mut in_resource = false;
    for line in log.lines() {
        let trimmed = line.trim();
        if line.starts_with("ResourceSpans #") {
            in_resource = true;
            instance.clear();
        } else if line.starts_with("ScopeSpans #") {
            in_resource = false;
        } else if line.starts_with("Span #") {
            spans.push(Span {
                trace_id: String::new(),
                span_id: String::new(),
                parent_span_id: String::new(),
                name: String::new(),
                target: String::new(),
                instance: instance.clone(),
                attributes: HashMap::new(),
            });
        } else if let Some((key, value)) = trimmed
            .strip_prefix("-> ")
            .and_then(|kv| kv.split_once(": "))
        {
            // `-> key: Str(text)` / `Int(12)` / `Double(0.5)` / `Bool(true)`
            let text = value
                .split_once('(')
                .map_or(value, |(_, rest)| rest.strip_suffix(')').unwrap_or(rest))
                .to_owned();
            if in_resource {
                if key == "service.instance.id" {
                    instance = text;
                }
            } else if let Some(span) = spans.last_mut() {
                if key == "target" {
                    span.target = text.clone();
                }
                span.attributes.insert(key.to_owned(), text);
            }
        } else if let (Some(span), Some((field, value))) =
            (spans.last_mut(), trimmed.split_once(':'))
        {
            let value = value.trim().to_owned();
            match field.trim() {
                "Trace ID" => span.trace_id = value,
                "Parent ID" => span.parent_span_id = value,
                "ID" => span.span_id = value,
                "Name" => span.name = value,
                _ => {}
            }
        }
    }
    spans
}

/// A worker process; it stops (flushing its spans) when its stdin closes.
struct WorkerProcess(Child);

impl WorkerProcess {
    /// Stops the worker; returns how many spans it exported.
    fn stop(mut self) -> u64 {
        drop(self.0.stdin.take());
        let output = self.0.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "the worker exits cleanly: {}\n{stderr}",
            output.status
        );
        exported_spans(&stderr)
    }
}

/// The span count a process of the `distributed` example says it exported
/// (its last line on stderr: `distributed: <n> spans exported, <m> dropped`).
fn exported_spans(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|line| {
            line.strip_prefix("distributed: ")?
                .split_once(" spans exported")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no export count in the process's output:\n{stderr}"))
}

/// What a cluster run left to check.
struct ClusterRun {
    trace_id: String,
    ports: Vec<u16>,
    /// Spans all four processes exported, by their own count.
    exported: u64,
}

/// TPC-H Q3 over three worker processes and a coordinator process (the
/// `distributed` example) on loopback, `maximal`, each process exporting as
/// `export` says. Checks the rows against a single-node run; returns the
/// trace id the coordinator printed, the worker ports and the spans the
/// processes exported.
fn run_cluster(name: &str, export: &[(&str, String)]) -> ClusterRun {
    let root =
        std::env::temp_dir().join(format!("dftrace-distributed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("tpch");
    let creates = write_tables(
        &data,
        0.01,
        &[Table::Customer, Table::Orders, Table::Lineitem],
    );
    let binary = example_binary("distributed");
    let configure = |command: &mut std::process::Command| {
        command.env("DFTRACE_PRESET", "maximal");
        for (var, value) in export {
            command.env(var, value);
        }
    };

    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut workers = Vec::new();
    for port in &ports {
        let mut command = isolated_command(&binary);
        configure(&mut command);
        let child = command
            .args(["worker", &port.to_string()])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("a worker starts");
        workers.push(WorkerProcess(child));
        wait_for_port(*port, "a distributed worker");
    }
    let mut coordinator = isolated_command(&binary);
    configure(&mut coordinator);
    let port_list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let output = coordinator
        .arg("coordinator")
        .arg(&data)
        .arg(&port_list)
        .arg(Q3)
        .output()
        .expect("the coordinator runs");
    let mut exported = exported_spans(&String::from_utf8_lossy(&output.stderr));
    for worker in workers {
        exported += worker.stop();
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The rows equal a single-node run of the same query on the same files.
    let single_node = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ctx = SessionContext::new();
        for create in &creates {
            ctx.sql(create).await.unwrap();
        }
        let batches = ctx.sql(Q3).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    });
    assert!(
        stdout.contains(&single_node),
        "distributed:\n{stdout}\nsingle node:\n{single_node}"
    );
    let trace_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("trace "))
        .expect("the coordinator prints the trace id")
        .to_owned();
    ClusterRun {
        trace_id,
        ports,
        exported,
    }
}

#[test]
fn a_distributed_query_is_one_trace_across_coordinator_and_workers() {
    let traces =
        std::env::temp_dir().join(format!("dftrace-distributed-traces-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&traces);
    let run = run_cluster(
        "files",
        &[
            ("DFTRACE_EXPORT__SINK", "file".to_owned()),
            ("DFTRACE_EXPORT__FILE__DIR", traces.display().to_string()),
        ],
    );
    let spans = read_spans(&traces);
    assert_eq!(
        spans.len() as u64,
        run.exported,
        "the files hold every exported span"
    );
    check_one_trace(&spans, &run.trace_id, &run.ports);
}

/// The same, each process exporting over OTLP/HTTP to one real collector.
#[test]
fn a_distributed_query_reaches_the_collector_as_one_trace() {
    let rotel = Rotel::start();
    let run = run_cluster(
        "rotel",
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", rotel.http_endpoint())],
    );
    // Each process flushed before it exited and said how many spans the
    // collector accepted; rotel logs them shortly after.
    let received = rotel.wait_for_span_count(run.exported as usize, Duration::from_secs(60));
    assert_eq!(
        received as u64, run.exported,
        "the collector logged every accepted span"
    );
    check_one_trace(&rotel_spans(&rotel.output()), &run.trace_id, &run.ports);
}

/// The spans of all four processes form one trace under the coordinator's
/// root query span, every worker ran and traced operators, and the root's
/// summary counts the workers' files.
fn check_one_trace(spans: &[Span], trace_id: &str, ports: &[u16]) {
    let by_id: HashMap<&str, &Span> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let query_root = spans
        .iter()
        .find(|s| s.name == "dftrace.query" && s.trace_id == trace_id)
        .expect("the coordinator's root query span");
    assert_eq!(query_root.instance, "coordinator");

    let worker_instances: BTreeSet<String> =
        ports.iter().map(|port| format!("worker-{port}")).collect();
    let seen: BTreeSet<String> = spans.iter().map(|s| s.instance.clone()).collect();
    assert_eq!(
        seen,
        worker_instances
            .iter()
            .cloned()
            .chain(["coordinator".to_owned()])
            .collect(),
        "each process exported under its own service.instance.id"
    );

    let mut operators_per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    // A task reaches a worker on a coordinator channel of its own; each task
    // a worker ran yields one operator tree, whose top hangs under one of
    // that worker's request spans.
    let mut tasks_per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    let mut trees_per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    let mut requests_from_coordinator = 0;
    for span in spans.iter().filter(|s| s.instance != "coordinator") {
        // Every worker span is in the query's trace ...
        assert_eq!(
            span.trace_id, trace_id,
            "{} on {}",
            span.name, span.instance
        );
        // ... and its parent chain climbs, across processes, to the root.
        let mut current = span;
        let mut hops = 0;
        while let Some(parent) = by_id.get(current.parent_span_id.as_str()) {
            current = parent;
            hops += 1;
            assert!(hops < 64, "a parent cycle at {}", span.name);
        }
        assert_eq!(
            current.span_id, query_root.span_id,
            "{} on {} reaches {} ({}), not the query root",
            span.name, span.instance, current.name, current.instance
        );
        if span.target == "dftrace::exec" {
            *operators_per_worker
                .entry(span.instance.as_str())
                .or_default() += 1;
            if by_id
                .get(span.parent_span_id.as_str())
                .is_some_and(|parent| {
                    parent.name == "dftrace.worker" && parent.instance == span.instance
                })
            {
                *trees_per_worker.entry(span.instance.as_str()).or_default() += 1;
            }
        }
        if span.name == "dftrace.worker"
            && span.attributes.get("rpc.method").map(String::as_str) == Some("CoordinatorChannel")
        {
            *tasks_per_worker.entry(span.instance.as_str()).or_default() += 1;
        }
        if span.name == "dftrace.worker" {
            // A request from the coordinator hangs under the query span; one
            // from another worker (a stage reading a remote stage) under
            // that worker's request span.
            let parent = by_id[span.parent_span_id.as_str()];
            let from_coordinator = parent.span_id == query_root.span_id;
            let from_worker = parent.name == "dftrace.worker" && parent.instance != "coordinator";
            assert!(
                from_coordinator || from_worker,
                "a worker request under {} on {}",
                parent.name,
                parent.instance
            );
            requests_from_coordinator += usize::from(from_coordinator);
        }
    }
    assert!(
        requests_from_coordinator >= 3,
        "{requests_from_coordinator} plans sent to workers"
    );
    // Every worker ran a stage, and its operators are traced.
    assert_eq!(
        operators_per_worker
            .keys()
            .map(|k| (*k).to_owned())
            .collect::<BTreeSet<_>>(),
        worker_instances,
        "operator spans per worker: {operators_per_worker:?}"
    );
    // Every task traces its operators where it ran, those that feed a
    // shuffle or a broadcast too (their head, which datafusion-distributed
    // replaces at run time, must not take the task's root with it).
    assert_eq!(
        trees_per_worker, tasks_per_worker,
        "operator trees per worker against the tasks each was sent; operator spans per worker: \
         {operators_per_worker:?}"
    );
    let worker_scans = spans
        .iter()
        .filter(|s| s.instance != "coordinator" && s.name == "DataSourceExec")
        .count();
    let coordinator_scans = spans
        .iter()
        .filter(|s| s.instance == "coordinator" && s.name == "DataSourceExec")
        .count();
    // The workers scan, the coordinator does not; that every file was
    // scanned on a worker is the summary's count below.
    assert!(
        worker_scans >= 1 && coordinator_scans == 0,
        "the workers scan the files: {worker_scans} scans on workers, {coordinator_scans} on \
         the coordinator; operator spans per worker: {operators_per_worker:?}"
    );

    // The coordinator scans nothing itself: the files in its summary are the
    // workers' (folded in by plan_with_worker_metrics).
    let files_opened: u64 = query_root.attributes["dftrace.metrics.files_opened"]
        .parse()
        .expect("the summary counts opened files");
    assert!(
        files_opened >= 3,
        "files opened across workers: {files_opened}"
    );
    // Redaction and previews follow the preset on the workers too.
    assert!(
        spans
            .iter()
            .any(|s| s.instance != "coordinator" && s.attributes.contains_key("datafusion.preview")),
        "maximal previews on worker operators"
    );
}
