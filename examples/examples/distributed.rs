//! One trace across a distributed query: three `datafusion-distributed`
//! workers and a coordinator on localhost, each process running dftrace.
//! Every worker's request and operator spans are descendants of the
//! coordinator's `dftrace.query` span; each worker names itself with
//! `service.instance.id`.
//!
//! - `cargo run -p dftrace-examples --example distributed`: all of it —
//!   TPC-H (scale 0.01) parquet, three worker processes, TPC-H Q3.
//! - `... -- worker <port>`: one worker on `127.0.0.1:<port>`, until its
//!   standard input closes or Ctrl-C.
//! - `... -- coordinator <data-dir> <port,port,...> [sql]`: one query over
//!   the TPC-H tables under `<data-dir>` (a folder of parquet per table).
//!
//! Every process reads the dftrace config from the environment
//! (`DFTRACE_PRESET`, `DFTRACE_CONFIG`, `OTEL_*`); with no OTLP endpoint each
//! writes its own OTLP-JSON-lines file under `DFTRACE_EXPORT__FILE__DIR`
//! (default `dftrace-traces/`).

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt as _, Worker, WorkerResolver};
use dftrace_bootstrap::{ExportConfig, TelemetryGuard};
use dftrace_distributed::{
    WorkerSessions, WorkerTraceLayer, plan_with_worker_metrics, with_trace_context,
};
use dftrace_registry::{DftraceConfig, RegistryStateBuilderExt as _};
use dftrace_rules::{QueryOptions, QuerySpan};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use tracing::Instrument as _;
// Plugins register at link time: reference each crate the host wants.
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_preview_redaction as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str =
    "usage: distributed [worker <port> | coordinator <data-dir> <port,port,...> [sql]]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => all_on_localhost(),
        ["worker", port] => port
            .parse()
            .map_err(|_| format!("`{port}` is not a port number").into())
            .and_then(worker),
        ["coordinator", data, ports, rest @ ..] if rest.len() <= 1 => parse_ports(ports)
            .and_then(|ports| {
                let sql = rest.first().copied().unwrap_or(dftrace_tests::tpch::Q3);
                coordinator(Path::new(data), &ports, sql)
            })
            .map(|trace_id| println!("trace {trace_id}")),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("distributed: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_ports(text: &str) -> Result<Vec<u16>, BoxError> {
    text.split(',')
        .map(|port| {
            port.trim()
                .parse()
                .map_err(|_| format!("`{port}` is not a port number").into())
        })
        .collect()
}

/// Telemetry for one process of the cluster, named `instance`.
fn telemetry(config: &DftraceConfig, instance: &str) -> Result<TelemetryGuard, BoxError> {
    let mut export: ExportConfig = config.section()?;
    export
        .resource_attributes
        .entry("service.instance.id".into())
        .or_insert_with(|| instance.to_owned());
    Ok(dftrace_bootstrap::init(&export)?)
}

/// Runs `work` on a multi-threaded runtime, and shuts telemetry down only
/// after the runtime: tasks it drops at shutdown end their spans first.
fn with_runtime<T>(
    telemetry: TelemetryGuard,
    work: impl Future<Output = Result<T, BoxError>>,
) -> Result<T, BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(work);
    drop(runtime);
    let report = telemetry.shutdown();
    // One line per process; the tests add up what every process delivered.
    eprintln!(
        "distributed: {} spans exported, {} dropped",
        report.exported,
        report.dropped()
    );
    result
}

/// A worker: gRPC on `127.0.0.1:<port>`, sessions through the dftrace
/// registry, a span per request under the coordinator's trace.
fn worker(port: u16) -> Result<(), BoxError> {
    let config = DftraceConfig::from_env()?;
    let guard = telemetry(&config, &format!("worker-{port}"))?;
    with_runtime(guard, async move {
        let worker = Worker::from_session_builder(WorkerSessions::new(config));
        // Stops when standard input closes (the parent process is done) or on Ctrl-C.
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        });
        let stop = async {
            tokio::select! {
                _ = stdin_closed => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        tonic::transport::Server::builder()
            .layer(WorkerTraceLayer)
            .add_service(worker.into_worker_server())
            .serve_with_shutdown(([127, 0, 0, 1], port).into(), stop)
            .await?;
        Ok(())
    })
}

/// The workers on loopback, by port.
#[derive(Debug, Clone)]
struct LocalhostWorkers(Vec<u16>);

impl WorkerResolver for LocalhostWorkers {
    fn get_urls(&self) -> datafusion::error::Result<Vec<url::Url>> {
        self.0
            .iter()
            .map(|port| {
                url::Url::parse(&format!("http://127.0.0.1:{port}"))
                    .map_err(|error| datafusion::error::DataFusionError::External(error.into()))
            })
            .collect()
    }
}

/// Runs `sql` distributed over the workers on `ports`, prints the result, and
/// returns the trace id.
fn coordinator(data: &Path, ports: &[u16], sql: &str) -> Result<String, BoxError> {
    let config = DftraceConfig::from_env()?;
    let guard = telemetry(&config, "coordinator")?;
    let ports = ports.to_vec();
    let data = data.to_path_buf();
    let sql = sql.to_owned();
    with_runtime(guard, async move {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_distributed_worker_resolver(LocalhostWorkers(ports))
            .with_distributed_planner()
            // Small files: split scans finely so that every worker gets a task.
            .with_distributed_file_scan_config_bytes_per_partition(64 * 1024)?
            .with_dftrace(&config)?
            .build_dftrace()?;
        let ctx = SessionContext::new_with_state(state);
        register_tables(&ctx, &data).await?;

        let query = QuerySpan::start(&ctx.copied_config(), Some(&sql), &QueryOptions::new())?;
        let span = query.span().clone();
        let outcome = async {
            let span = query.span();
            let frame = ctx.sql(&sql).await?;
            // The query span's trace context travels with every request.
            let frame = with_trace_context(frame, span, Default::default())?;
            let task_ctx = std::sync::Arc::new(frame.task_ctx());
            let plan = frame.create_physical_plan().await?;
            let batches = collect(std::sync::Arc::clone(&plan), task_ctx).await?;
            // The workers' metrics, so the summary covers the whole query.
            let plan = plan_with_worker_metrics(plan).await?;
            Ok::<_, datafusion::error::DataFusionError>((batches, plan))
        }
        .instrument(span)
        .await;
        let trace_id = query.trace_id();
        match outcome {
            Ok((batches, plan)) => {
                let rows = batches.iter().map(|batch| batch.num_rows()).sum();
                query.record_success(rows, Some(&plan));
                println!("{}", pretty_format_batches(&batches)?);
            }
            Err(error) => {
                query.record_error(&error);
                return Err(error.into());
            }
        }
        Ok(trace_id)
    })
}

/// `CREATE EXTERNAL TABLE` for each folder of parquet under `data`.
async fn register_tables(ctx: &SessionContext, data: &Path) -> Result<(), BoxError> {
    for entry in std::fs::read_dir(data)? {
        let path = entry?.path();
        if let (true, Some(name)) = (path.is_dir(), path.file_name().and_then(|n| n.to_str())) {
            ctx.sql(&format!(
                "CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '{}/'",
                path.display()
            ))
            .await?;
        }
    }
    Ok(())
}

/// Kills nothing: a worker stops when its standard input closes.
struct WorkerProcess(Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn all_on_localhost() -> Result<(), BoxError> {
    use dftrace_tests::tpch::{Table, write_tables};
    let root = std::env::temp_dir().join(format!("dftrace-distributed-{}", std::process::id()));
    let data = root.join("tpch");
    write_tables(
        &data,
        0.01,
        &[Table::Customer, Table::Orders, Table::Lineitem],
    );
    let traces: PathBuf = std::env::var_os("DFTRACE_EXPORT__FILE__DIR")
        .map_or_else(|| root.join("traces"), PathBuf::from);

    let ports: Vec<u16> = (0..3).map(|_| dftrace_tests::moto::free_port()).collect();
    let mut workers = Vec::new();
    for port in &ports {
        let child = Command::new(std::env::current_exe()?)
            .args(["worker", &port.to_string()])
            .env("DFTRACE_EXPORT__FILE__DIR", &traces)
            .stdin(Stdio::piped())
            .spawn()?;
        workers.push(WorkerProcess(child));
        dftrace_tests::moto::wait_for_port(*port, "a worker");
    }
    let trace_id = run_coordinator_child(&data, &ports, &traces)?;
    drop(workers);
    println!(
        "trace {trace_id}: the span files of the coordinator and the 3 workers are in {}",
        traces.display()
    );
    Ok(())
}

/// The coordinator as a child process too, so each process has its own
/// telemetry (and `service.instance.id`).
fn run_coordinator_child(data: &Path, ports: &[u16], traces: &Path) -> Result<String, BoxError> {
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let output = Command::new(std::env::current_exe()?)
        .arg("coordinator")
        .arg(data)
        .arg(&ports)
        .env("DFTRACE_EXPORT__FILE__DIR", traces)
        .stderr(Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    if !output.status.success() {
        return Err(format!("the coordinator failed with {}", output.status).into());
    }
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("trace "))
        .map(str::to_owned)
        .ok_or_else(|| "the coordinator printed no trace id".into())
}
