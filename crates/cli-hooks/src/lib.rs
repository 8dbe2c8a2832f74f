//! `dftrace-cli-hooks`: what the patched `datafusion-cli` calls (see
//! `cargo xtask cli`). The patch itself is a handful of one-line hooks; the
//! work is here and in the dftrace crates.
//!
//! - [`run_main`]: the CLI's `main`: telemetry around a Tokio runtime.
//! - [`init`]: reads the dftrace config from the environment
//!   (`DFTRACE_CONFIG`, `DFTRACE_PRESET`, `DFTRACE_*`, `OTEL_*`) and starts
//!   `dftrace-bootstrap`. With no preset chosen the CLI uses `maximal`; with
//!   no OTLP endpoint it writes OTLP-JSON lines under `dftrace-traces/` and
//!   prints one summary line per query on stderr.
//! - [`session_state`]: the CLI's session state, built through the dftrace
//!   registry with every plugin; `history.enabled` is on unless the config
//!   sets it, so `dftrace.queries`, `dftrace.operators` and `dftrace.spans`
//!   are there from the first statement; `memory.enabled` too, so the
//!   pool of `--memory-limit` is observed and a statement that spilled or
//!   held more than half the limit says so on its line.
//! - [`traced_statement`] and [`note_plan`]: one root query span per SQL
//!   statement, with the executed plan handed to the metrics summary; a
//!   statement running longer than `cli.progress_after_ms` shows a progress
//!   line on stderr (a terminal only), which [`before_output`] erases
//!   before the result prints.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod progress;

pub use progress::before_output;

// Linked so their plugins register (link-time registration).
use dftrace_history as _;
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_preview_redaction as _;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionState;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use dftrace_bootstrap::{ExportConfig, ResolvedSink, Sink, TelemetryGuard};
use dftrace_history::HistoryConfig;
use dftrace_memory::MemoryConfig;
use dftrace_registry::{DftraceConfig, Plugin, Preset, RegistryStateBuilderExt, Section, Stage};
use dftrace_rules::{QueryOptions, QuerySpan};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tracing::Instrument;

static CONFIG: OnceLock<DftraceConfig> = OnceLock::new();

/// Whether the session keeps its queries as tables, and the hint naming
/// them has yet to be printed (after the first statement, with the console
/// line).
static TABLES_HINT: AtomicBool = AtomicBool::new(false);

/// When a statement's progress line shows (`None`: never).
static PROGRESS_AFTER: OnceLock<Option<Duration>> = OnceLock::new();

/// The traced CLI's own settings: the `[cli]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// Show a progress line on stderr (a terminal only) for a statement
    /// running longer than `progress_after_ms`.
    pub progress: bool,
    /// Milliseconds a statement runs before its progress line shows; 0
    /// shows it from the start.
    pub progress_after_ms: u64,
}

impl Section for CliConfig {
    const NAME: &'static str = "cli";

    fn for_preset(_preset: Preset) -> Self {
        CliConfig {
            progress: true,
            progress_after_ms: 2000,
        }
    }
}

dftrace_registry::inventory::submit! {
    // Settings only: the CLI reads them in `init`.
    Plugin::new::<CliConfig>(Stage::Observation)
}

/// The trace id of the last statement, for the view command printed at exit.
static LAST_TRACE: Mutex<Option<String>> = Mutex::new(None);

/// The environment variable a caller sets to run every statement inside its
/// trace (the W3C `traceparent` of the parent span).
pub const TRACEPARENT_VAR: &str = "TRACEPARENT";

fn external(error: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// Telemetry for the CLI's lifetime; dropping it flushes every span and says
/// where the traces went.
#[derive(Debug)]
pub struct CliTelemetry {
    guard: Option<TelemetryGuard>,
}

impl Drop for CliTelemetry {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            let file = guard.trace_file().map(|path| path.display().to_string());
            let report = guard.shutdown();
            // dftrace-bootstrap reports; the CLI says it, as it always has.
            if report.dropped() > 0 {
                eprintln!("dftrace: {report}");
            }
            if let Some(file) = file
                && report.exported > 0
            {
                eprintln!("dftrace: {} spans written to {file}", report.exported);
                let last = LAST_TRACE.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(trace_id) = last.as_deref() {
                    eprintln!(
                        "dftrace: see the last query: cargo xtask view {file} --trace-id {trace_id}"
                    );
                }
            }
        }
    }
}

/// Runs the CLI's async `main` on a multi-threaded Tokio runtime (what
/// `#[tokio::main]` builds) with telemetry started before the runtime and
/// shut down after it. The order matters: a query that stops early (a
/// `LIMIT` over a merge) aborts tasks that still hold operator spans, and
/// the runtime drops them only when it shuts down; flushing before that
/// would lose those spans and their query's root span.
pub fn run_main<F>(main: F) -> std::process::ExitCode
where
    F: Future<Output = std::process::ExitCode>,
{
    let telemetry = match init() {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("dftrace: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dftrace: cannot start the Tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(main);
    // Drops every task still alive, ending the spans they hold.
    drop(runtime);
    drop(telemetry);
    code
}

/// Reads the config and starts telemetry. Errors name the bad setting.
pub fn init() -> Result<CliTelemetry> {
    let asked = DftraceConfig::from_env().map_err(external)?;
    let mut builder = DftraceConfig::builder().env(std::env::vars());
    if asked.preset_origin() == "default" {
        // The CLI is for seeing everything; a host library defaults lower.
        builder = builder.preset(Preset::Maximal);
    }
    if !asked.sets_field(HistoryConfig::NAME, "enabled") {
        // The session's queries as tables (`dftrace.queries`, ...): on in
        // the CLI unless the user says otherwise.
        builder = builder.set_field::<HistoryConfig, _>("enabled", true);
    }
    if !asked.sets_field(MemoryConfig::NAME, "enabled") {
        // Which statement and which operator filled the pool: on in the CLI
        // (`--memory-limit`'s pool is observed) unless the user says otherwise.
        builder = builder.set_field::<MemoryConfig, _>("enabled", true);
    }
    let config = builder.build().map_err(external)?;
    let mut export: ExportConfig = config.section().map_err(external)?;
    let has_endpoint = export.otlp.endpoint.is_some() || export.otlp.traces_endpoint.is_some();
    if export.sink == Sink::File || (export.sink == Sink::Auto && !has_endpoint) {
        // The embedded default: a file to keep plus a line per query to read.
        export.console_summary = true;
    }
    let guard = dftrace_bootstrap::init(&export).map_err(external)?;
    if let ResolvedSink::Otlp { endpoint, protocol } = guard.sink() {
        tracing::debug!(endpoint, protocol, "dftrace exports over OTLP");
    }
    let history: HistoryConfig = config.section().map_err(external)?;
    TABLES_HINT.store(history.enabled && export.console_summary, Ordering::Relaxed);
    let cli: CliConfig = config.section().map_err(external)?;
    let _ = PROGRESS_AFTER.set(
        cli.progress
            .then(|| Duration::from_millis(cli.progress_after_ms)),
    );
    let _ = CONFIG.set(config);
    Ok(CliTelemetry { guard: Some(guard) })
}

/// The CLI's session state: what `SessionContext::new_with_config_rt`
/// builds, with every linked dftrace plugin applied.
pub fn session_state(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> Result<SessionState> {
    let dftrace = match CONFIG.get() {
        Some(config) => config.clone(),
        None => DftraceConfig::from_env().map_err(external)?,
    };
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_dftrace(&dftrace)?
        .build_dftrace()?;
    Ok(state)
}

tokio::task_local! {
    /// Where the statement running in this task leaves its physical plan.
    static PLAN: Arc<Mutex<Option<Arc<dyn ExecutionPlan>>>>;
}

/// Records the physical plan of the statement running now, so its metrics
/// can be summarized when it ends. Outside [`traced_statement`], a no-op.
pub fn note_plan(plan: &Arc<dyn ExecutionPlan>) {
    let _ = PLAN.try_with(|slot| {
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(plan));
    });
}

/// Runs one statement's planning, execution and printing under a root query
/// span, and records its outcome.
pub async fn traced_statement<F>(session: &SessionConfig, sql: &str, statement: F) -> Result<()>
where
    F: Future<Output = Result<()>>,
{
    let mut options = QueryOptions::new();
    if let Ok(traceparent) = std::env::var(TRACEPARENT_VAR) {
        options = options.traceparent(traceparent);
    }
    let query = QuerySpan::start(session, Some(sql), &options)?;
    // An unsampled trace is not exported: nothing to view.
    if query.is_sampled() {
        *LAST_TRACE.lock().unwrap_or_else(PoisonError::into_inner) = Some(query.trace_id());
    }
    let slot = Arc::new(Mutex::new(None));
    progress::start(query.progress(), PROGRESS_AFTER.get().copied().flatten());
    // Erased however the statement ends, ^C (which drops this future) too.
    let _progress = progress::Erase;
    let result = PLAN
        .scope(
            Arc::clone(&slot),
            statement.instrument(query.span().clone()),
        )
        .await;
    // A statement that printed nothing (DDL) or failed: the line goes now.
    before_output();
    let plan = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    match &result {
        Ok(()) => {
            let rows = plan
                .as_ref()
                .and_then(|plan| plan.metrics())
                .and_then(|metrics| metrics.output_rows())
                .unwrap_or(0);
            query.record_success(rows, plan.as_ref());
        }
        Err(error) => query.record_error(error),
    }
    // The plan holds the operator spans open: end them before the root.
    drop(plan);
    // The root ends once its operator spans are built (off the statement's
    // path): the summary line it prints comes before the next prompt.
    let ended = query.ended();
    drop(query);
    ended.await;
    if TABLES_HINT.swap(false, Ordering::Relaxed) {
        eprintln!(
            "dftrace: this session's queries are tables: SELECT * FROM dftrace.queries \
             (and dftrace.operators, dftrace.spans)"
        );
    }
    result
}
