//! The root query span: one span per query, above every planner, operator and
//! storage span of that query.

use crate::config::RulesConfig;
use crate::ended::QueryEnded;
use crate::error::RulesError;
use crate::operators::Collector;
use crate::trace_context::parse_trace_context;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use dftrace_registry::literals::QueryLiterals;
use dftrace_registry::saturating_i64;
use dftrace_registry::{
    DftraceSession, InFlight, OperatorAttributes, QueryObserver, QueryPhase, RunningEntry,
    RunningQueries, RunningQuery, RunningSnapshot, SpanLevel, keys,
};
use opentelemetry::trace::TraceContextExt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use dftrace_registry::QUERY_SPAN_NAME;
use dftrace_registry::keys::QUERY_TARGET;

macro_rules! query_span {
    ($level:expr) => {
        tracing::span!(
            target: QUERY_TARGET,
            $level,
            QUERY_SPAN_NAME,
            dftrace.run_id = tracing::field::Empty,
            dftrace.sql.fingerprint = tracing::field::Empty,
            db.query.text = tracing::field::Empty,
            dftrace.rows = tracing::field::Empty,
            dftrace.unsampled = tracing::field::Empty,
            dftrace.query.auto = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        )
    };
}

fn new_query_span(level: SpanLevel) -> Span {
    match level {
        SpanLevel::Trace => query_span!(tracing::Level::TRACE),
        SpanLevel::Debug => query_span!(tracing::Level::DEBUG),
        SpanLevel::Info => query_span!(tracing::Level::INFO),
        SpanLevel::Warn => query_span!(tracing::Level::WARN),
        SpanLevel::Error => query_span!(tracing::Level::ERROR),
    }
}

/// Identity a host gives a query.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct QueryOptions {
    traceparent: Option<String>,
    tracestate: Option<String>,
    run_id: Option<String>,
    attributes: Vec<(String, String)>,
}

impl QueryOptions {
    /// Options with a generated run id and no parent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Joins a caller's distributed trace: a W3C `traceparent` header value.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// The caller's W3C `tracestate`, kept with the `traceparent` parent
    /// (ignored without one).
    pub fn tracestate(mut self, tracestate: impl Into<String>) -> Self {
        self.tracestate = Some(tracestate.into());
        self
    }

    /// Uses this run id instead of a generated UUID.
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Adds a host attribute to the root span (e.g. `tenant`, `job.name`).
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }
}

/// A started root query span. Hosts that drive execution themselves (such as
/// a CLI) run planning and execution inside [`QuerySpan::span`] and then call
/// [`QuerySpan::record_success`] or [`QuerySpan::record_error`].
///
/// The span closes when this value is dropped *and* every span opened under
/// it has closed; [`QuerySpan::ended`] resolves then.
#[derive(Debug)]
pub struct QuerySpan {
    span: Span,
    ended: QueryEnded,
    /// The operators that run under the span report here.
    collector: Arc<Collector>,
    /// The query's literal values: texts about it are masked with them.
    literals: Arc<QueryLiterals>,
    /// Decided once, when the span starts.
    unsampled: bool,
    run_id: String,
    /// The literal-free fingerprint of the SQL, when known.
    fingerprint: Option<String>,
    /// The SQL text, kept only with `rules.record_sql`.
    sql: Option<String>,
    started: Instant,
    started_at: std::time::SystemTime,
    observers: Vec<Arc<dyn QueryObserver>>,
    operator_attributes: Vec<Arc<dyn OperatorAttributes>>,
    /// Counts the query in flight (and, with a history, lists it among the
    /// running ones) until its end has been told; taken when it is.
    in_flight: Mutex<Option<InFlightQuery>>,
}

/// A query's places among the queries in flight, held until the end of its
/// end (so it leaves `dftrace.running` once it is in `dftrace.queries`).
#[derive(Debug)]
pub(crate) struct InFlightQuery {
    _counted: InFlight,
    _listed: Option<RunningEntry>,
    /// What the running tables read, to freeze at the query's end.
    live: Option<Arc<LiveQuery>>,
}

/// A running query as `dftrace.running` shows it.
#[derive(Debug)]
struct LiveQuery {
    span: Span,
    run_id: String,
    fingerprint: Option<String>,
    started_at: std::time::SystemTime,
    collector: Arc<Collector>,
    /// Its operators as they ended, for the moment between its end and
    /// its row in `dftrace.queries` (the collector is emptied at the end).
    ended: OnceLock<Vec<dftrace_registry::RunningOperator>>,
}

impl LiveQuery {
    /// Freezes what the running tables show: the query has ended.
    fn finish(&self) {
        self.ended
            .get_or_init(|| crate::operators::running_operators(self.collector.snapshot()));
    }
}

impl RunningQuery for LiveQuery {
    fn snapshot(&self) -> RunningSnapshot {
        let (operators, phase) = match self.ended.get() {
            Some(operators) => (operators.clone(), QueryPhase::Ending),
            None => {
                let operators = crate::operators::running_operators(self.collector.snapshot());
                let phase = if operators.is_empty() {
                    QueryPhase::Planning
                } else {
                    QueryPhase::Executing
                };
                (operators, phase)
            }
        };
        RunningSnapshot {
            trace_id: self
                .span
                .context()
                .span()
                .span_context()
                .trace_id()
                .to_string(),
            run_id: self.run_id.clone(),
            fingerprint: self.fingerprint.clone(),
            started: self.started_at,
            phase,
            output_rows: operators.first().map_or(0, |top| top.rows),
            peak_memory_bytes: dftrace_registry::query_state::<dftrace_registry::QueryMemory>(
                &self.span,
            )
            .map(|memory| memory.peak_bytes() as u64),
            operators,
        }
    }
}

/// What a running query has done so far, for a host that shows progress
/// (the traced CLI's progress line): read when asked for.
#[derive(Debug, Clone)]
pub struct QueryProgress {
    collector: Arc<Collector>,
    started: Instant,
}

impl QueryProgress {
    /// Time since the query's root opened.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Its operators that have run, top first, with rows and partitions
    /// so far (as `dftrace.running_operators` shows them).
    pub fn operators(&self) -> Vec<dftrace_registry::RunningOperator> {
        crate::operators::running_operators(self.collector.snapshot())
    }
}

impl QuerySpan {
    /// A handle on what the query has done so far.
    pub fn progress(&self) -> QueryProgress {
        QueryProgress {
            collector: Arc::clone(&self.collector),
            started: self.started,
        }
    }

    /// Starts the root span for a query on a session, with settings from the
    /// session's `[rules]` section (when dftrace was applied) or the defaults.
    /// `sql`, when given, is fingerprinted (and recorded verbatim only if
    /// `rules.record_sql` is set).
    pub fn start(
        session: &SessionConfig,
        sql: Option<&str>,
        options: &QueryOptions,
    ) -> std::result::Result<Self, RulesError> {
        let settings = QuerySettings::of(session);
        QuerySpan::start_with(&settings, sql, options, None)
    }

    /// Starts a root with settings already resolved; `literals`, when
    /// given, is the set the query's texts were masked with so far.
    pub(crate) fn start_with(
        settings: &QuerySettings,
        sql: Option<&str>,
        options: &QueryOptions,
        literals: Option<Arc<QueryLiterals>>,
    ) -> std::result::Result<Self, RulesError> {
        let config = &settings.config;
        let parent = options
            .traceparent
            .as_deref()
            .map(|traceparent| parse_trace_context(traceparent, options.tracestate.as_deref()))
            .transpose()?;

        let span = new_query_span(config.span_level);
        if span.is_disabled() {
            crate::filter::note_root_disabled(config.span_level);
        }
        if let Some(parent) = parent {
            // Fails only when no OpenTelemetry layer is installed or the span
            // is disabled; then there is no trace to join.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
        }
        let run_id = options.run_id.clone().unwrap_or_else(random_run_id);
        span.record(keys::RUN_ID, run_id.as_str());
        let shape = sql.map(recent_shape);
        if let (Some(sql), Some(shape)) = (sql, &shape) {
            span.record(keys::SQL_FINGERPRINT, shape.fingerprint.as_str());
            if config.record_sql {
                span.record(keys::QUERY_TEXT, sql);
            }
        }
        for (key, value) in config
            .custom_fields
            .iter()
            .chain(options.attributes.iter().map(|(k, v)| (k, v)))
        {
            span.set_attribute(key.clone(), value.clone());
        }
        // The sampler decides when the OpenTelemetry span starts, here. An
        // unsampled trace exports nothing, so the span is marked and
        // dftrace-bootstrap's subscriber disables everything opened inside
        // it: planner wrappers then skip their plan formatting and diffs.
        let unsampled = trace_known_unsampled(&span);
        if unsampled {
            span.record(dftrace_registry::UNSAMPLED_FIELD, true);
        }
        // Every text recorded about the query is masked with its literal
        // values (or, with `rules.record_literals`, left as it is) before it
        // reaches a span: the set lives in the root's extensions, where the
        // planner, the operators and the plugins find it.
        let literals =
            literals.unwrap_or_else(|| Arc::new(QueryLiterals::new(config.record_literals)));
        if let Some(shape) = &shape
            && !unsampled
        {
            literals.add(shape.literals.iter().cloned());
        }
        dftrace_registry::set_query_state(&span, Arc::clone(&literals));
        let observers = settings.observers.clone();
        let operator_attributes = settings.operator_attributes.clone();
        let ended = QueryEnded::watch(&span);
        let collector = Arc::new(Collector::default());
        Collector::attach(&collector, &span);
        let fingerprint = shape.map(|shape| shape.fingerprint.clone());
        let started_at = std::time::SystemTime::now();
        let live = settings.running.as_ref().map(|_| {
            Arc::new(LiveQuery {
                span: span.clone(),
                run_id: run_id.clone(),
                fingerprint: fingerprint.clone(),
                started_at,
                collector: Arc::clone(&collector),
                ended: OnceLock::new(),
            })
        });
        let listed = settings
            .running
            .as_ref()
            .zip(live.as_ref())
            .map(|(running, live)| running.add(Arc::clone(live) as Arc<dyn RunningQuery>));
        Ok(QuerySpan {
            span,
            ended,
            collector,
            literals,
            unsampled,
            run_id,
            fingerprint,
            sql: sql.filter(|_| config.record_sql).map(str::to_owned),
            started: Instant::now(),
            started_at,
            observers,
            operator_attributes,
            in_flight: Mutex::new(Some(InFlightQuery {
                _counted: InFlight::start(),
                _listed: listed,
                live,
            })),
        })
    }

    /// A root dftrace opens itself for a statement a host ran without
    /// `run_sql` or `QuerySpan` (marked `dftrace.query.auto`; no SQL text is
    /// known, so no fingerprint).
    pub(crate) fn start_auto(
        session: &SessionConfig,
        literals: Option<Arc<QueryLiterals>>,
    ) -> Result<Self> {
        QuerySpan::start_auto_with(&QuerySettings::of(session), literals)
    }

    /// [`QuerySpan::start_auto`] with settings already resolved.
    pub(crate) fn start_auto_with(
        settings: &QuerySettings,
        literals: Option<Arc<QueryLiterals>>,
    ) -> Result<Self> {
        let query = QuerySpan::start_with(settings, None, &QueryOptions::new(), literals)?;
        query.span.record(dftrace_registry::keys::QUERY_AUTO, true);
        Ok(query)
    }

    /// The query's literal values, which every text about it is masked with.
    pub(crate) fn literals(&self) -> &Arc<QueryLiterals> {
        &self.literals
    }

    /// Whether the query's trace is known not to be sampled.
    pub(crate) fn unsampled(&self) -> bool {
        self.unsampled
    }

    /// The span; run the query's planning and execution inside it.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// A handle that resolves once the span, and every span under it, has
    /// closed.
    pub fn ended(&self) -> QueryEnded {
        self.ended.clone()
    }

    /// The run id recorded on the span.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The span's trace id as 32 hex digits (all zeros when no OpenTelemetry
    /// layer is installed).
    pub fn trace_id(&self) -> String {
        self.span
            .context()
            .span()
            .span_context()
            .trace_id()
            .to_string()
    }

    /// Whether the trace is sampled, i.e. its spans will be exported.
    pub fn is_sampled(&self) -> bool {
        self.span.context().span().span_context().is_sampled()
    }

    /// Time since the span started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records a successful outcome, builds the operator spans of the plans
    /// run under this span (deferred mode), and hands the executed plan (the
    /// one given, else the one run under this span) to the session's query
    /// observers, such as the metrics summary.
    pub fn record_success(&self, rows: usize, plan: Option<&Arc<dyn ExecutionPlan>>) {
        self.span.record(keys::QUERY_ROWS, saturating_i64(rows));
        self.span.record(keys::STATUS_CODE, "OK");
        self.end(plan, Some(rows), None, false);
    }

    /// Records a failed outcome with its message, builds the operator spans
    /// (deferred mode), and tells the observers.
    pub fn record_error(&self, error: &dyn std::fmt::Display) {
        let message = self.literals.mask_error(error.to_string());
        self.span.record(keys::STATUS_CODE, "ERROR");
        self.span.record(keys::STATUS_DESCRIPTION, message.as_str());
        self.end(None, None, Some(message), false);
    }

    /// Records that the query was dropped before its end (its stream
    /// dropped), builds the spans of the operators that ran, and tells the
    /// observers (`dftrace.queries.outcome` = `cancelled`).
    pub fn record_cancelled(&self) {
        self.span.set_attribute(keys::QUERY_CANCELLED, true);
        self.end(None, None, None, true);
    }

    /// Hands what the query's end needs to [`crate::query_end`], which
    /// builds the operator spans and tells the observers after the query
    /// has returned (the root stays open until then); `cancelled` when it
    /// was dropped before its end.
    fn end(
        &self,
        plan: Option<&Arc<dyn ExecutionPlan>>,
        rows: Option<usize>,
        error: Option<String>,
        cancelled: bool,
    ) {
        let Some(in_flight) = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            // Its outcome is recorded already: once per query.
            return;
        };
        if let Some(live) = &in_flight.live {
            live.finish();
        }
        let executed = self.collector.take();
        if self.observers.is_empty() && (self.unsampled || executed.is_empty()) {
            return;
        }
        crate::query_end::submit(crate::query_end::QueryEndJob {
            span: self.span.clone(),
            literals: Arc::clone(&self.literals),
            executed,
            plan: plan.cloned(),
            observers: self.observers.clone(),
            operator_attributes: self.operator_attributes.clone(),
            unsampled: self.unsampled,
            run_id: self.run_id.clone(),
            fingerprint: self.fingerprint.clone(),
            sql: self.sql.clone(),
            started_at: self.started_at,
            // The query's time, without what its end costs.
            elapsed: self.elapsed(),
            rows,
            error,
            cancelled,
            _in_flight: Some(in_flight),
        });
    }
}

impl Drop for QuerySpan {
    fn drop(&mut self) {
        // Dropped with operators run and no outcome: the host dropped the
        // query's future (`run_sql`, a `QuerySpan` of its own) mid-way.
        let open = self
            .in_flight
            .get_mut()
            .is_ok_and(|in_flight| in_flight.is_some());
        // Not while a panic unwinds through the host (an operator's panic,
        // re-raised by `collect`): no observer runs then.
        if open && self.collector.has_executed() && !std::thread::panicking() {
            self.record_cancelled();
        }
    }
}

/// Whether `span`'s trace is known not to be sampled. Without an
/// OpenTelemetry layer there is no decision, and this is `false`.
pub(crate) fn trace_known_unsampled(span: &Span) -> bool {
    let context = span.context();
    let otel_span = context.span();
    let span_context = otel_span.span_context();
    span_context.is_valid() && !span_context.is_sampled()
}

/// The result of a traced query.
///
/// # When the query's trace is complete
///
/// The root span (`dftrace.query`) closes when the last span under it
/// closes, which is not always before [`run_sql`] returns:
///
/// - `run_sql` drops its own handle on the root before it returns;
/// - spans that the query's tasks still hold close when those tasks end: a
///   query that stops early (a `LIMIT`) cancels tasks that the runtime drops
///   a moment later;
/// - with `datafusion-tracing`'s live operator spans, the executed plan
///   ([`TracedQuery::plan`]) holds its operator spans open until it is
///   dropped.
///
/// A host that reads its own trace right after a query (from an in-memory
/// exporter, say) waits for [`TracedQuery::ended`] first, after dropping
/// the plan: `let ended = query.ended(); drop(query); ended.await;`.
#[derive(Debug)]
pub struct TracedQuery {
    /// The result batches.
    pub batches: Vec<RecordBatch>,
    /// The executed physical plan, with its metrics filled in.
    pub plan: Arc<dyn ExecutionPlan>,
    /// The run id on the root span.
    pub run_id: String,
    /// The root span's trace id (32 hex digits).
    pub trace_id: String,
    /// Wall time from span start to the last batch.
    pub elapsed: Duration,
    ended: QueryEnded,
}

impl TracedQuery {
    /// A handle that resolves once the root span, and every span of the
    /// query, has closed (see the type's docs for when that is).
    pub fn ended(&self) -> QueryEnded {
        self.ended.clone()
    }
}

/// Plans and runs `sql` on `ctx` under one root query span, and collects the
/// results.
pub async fn run_sql(
    ctx: &SessionContext,
    sql: &str,
    options: &QueryOptions,
) -> Result<TracedQuery> {
    // The session's config as it is, not a copy of it.
    let query = {
        let state = ctx.state_ref();
        let state = state.read();
        QuerySpan::start(state.config(), Some(sql), options)?
    };
    let work = async move { execute(ctx.sql(sql).await?).await };
    finish(query, work).await
}

/// Runs a `DataFrame` under one root query span and collects the results.
/// Its logical plan was built before this call; physical planning and
/// execution are traced.
pub async fn run_dataframe(df: DataFrame, options: &QueryOptions) -> Result<TracedQuery> {
    let query = QuerySpan::start(df.task_ctx().session_config(), None, options)?;
    finish(query, execute(df)).await
}

async fn execute(df: DataFrame) -> Result<(Arc<dyn ExecutionPlan>, Vec<RecordBatch>)> {
    let task_ctx = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task_ctx).await?;
    Ok((plan, batches))
}

async fn finish(
    query: QuerySpan,
    work: impl Future<Output = Result<(Arc<dyn ExecutionPlan>, Vec<RecordBatch>)>>,
) -> Result<TracedQuery> {
    match work.instrument(query.span.clone()).await {
        Ok((plan, batches)) => {
            query.record_success(batches.iter().map(RecordBatch::num_rows).sum(), Some(&plan));
            Ok(TracedQuery {
                batches,
                plan,
                trace_id: query.trace_id(),
                elapsed: query.elapsed(),
                ended: query.ended(),
                run_id: query.run_id.clone(),
            })
        }
        Err(error) => {
            query.record_error(&error);
            Err(error)
        }
    }
}

/// What every query of a session starts with: its `[rules]` settings and
/// the observers the plugins added. The rules plugin resolves it once per
/// session (a service); a query reads it without copying anything else.
#[derive(Debug)]
pub(crate) struct QuerySettings {
    pub(crate) config: Arc<RulesConfig>,
    pub(crate) observers: Vec<Arc<dyn QueryObserver>>,
    /// What the plugins put on each operator span besides dftrace-rules.
    pub(crate) operator_attributes: Vec<Arc<dyn OperatorAttributes>>,
    /// Where the session lists its queries in flight (a history's).
    pub(crate) running: Option<Arc<RunningQueries>>,
}

impl QuerySettings {
    /// A session's: resolved once, at its first query (when every plugin's
    /// hooks have run, the observers of the last ones too), and kept in
    /// its dftrace session; else from its dftrace config, else the
    /// defaults.
    pub(crate) fn of(session: &SessionConfig) -> Arc<QuerySettings> {
        match session.get_extension::<DftraceSession>() {
            Some(dftrace) => QuerySettings::of_dftrace(&dftrace, || rules_config(session)),
            None => Arc::new(QuerySettings {
                config: Arc::new(rules_config(session)),
                observers: Vec::new(),
                operator_attributes: Vec::new(),
                running: None,
            }),
        }
    }

    /// `dftrace`'s settings, resolved on first use (`config` when the rules
    /// plugin did not resolve the `[rules]` section).
    pub(crate) fn of_dftrace(
        dftrace: &DftraceSession,
        config: impl FnOnce() -> RulesConfig,
    ) -> Arc<QuerySettings> {
        if let Some(settings) = dftrace.service::<QuerySettings>() {
            return settings;
        }
        let services = dftrace.services();
        let settings = Arc::new(QuerySettings {
            config: services
                .get::<RulesConfig>()
                .unwrap_or_else(|| Arc::new(config())),
            observers: services.query_observers(),
            operator_attributes: services.operator_attributes(),
            running: services.get::<RunningQueries>(),
        });
        dftrace.insert_service(Arc::clone(&settings));
        settings
    }
}

/// A new run id: a UUID v4 whose random bits come from a generator seeded
/// once per thread (a system call per query would cost more than the rest
/// of the root span).
fn random_run_id() -> String {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            seed.0 ^ seed.1.rotate_left(17)
        });
    }
    // SplitMix64: fast, and every 64-bit seed gives a full-period stream.
    let next = || {
        STATE.with(|state| {
            let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            state.set(z);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        })
    };
    let bytes = (u128::from(next()) << 64 | u128::from(next())).to_be_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The `[rules]` section of a session the rules plugin did not set up (read
/// from its dftrace config when there is one), or the defaults.
fn rules_config(config: &SessionConfig) -> RulesConfig {
    config
        .get_extension::<DftraceSession>()
        .and_then(|session| session.config().section::<RulesConfig>().ok())
        .unwrap_or_default()
}

/// [`sql_shape`], remembered for the last few hundred distinct SQL texts:
/// hosts run the same statement again and again (dashboards, prepared
/// queries), and tokenizing it is the root span's largest cost.
fn recent_shape(sql: &str) -> Arc<SqlShape> {
    const REMEMBERED: usize = 512;
    type Recent = std::collections::HashMap<String, Arc<SqlShape>>;
    static RECENT: std::sync::LazyLock<std::sync::Mutex<Recent>> =
        std::sync::LazyLock::new(Default::default);
    let mut recent = RECENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(shape) = recent.get(sql) {
        return Arc::clone(shape);
    }
    let shape = Arc::new(sql_shape(sql));
    if recent.len() >= REMEMBERED {
        recent.clear();
    }
    recent.insert(sql.to_owned(), Arc::clone(&shape));
    shape
}

/// A stable fingerprint of a SQL text with its literals removed: statements
/// that differ only in literal values, whitespace, comments or keyword case
/// share a fingerprint, and no literal value can be read back from it.
/// 16 hex digits (FNV-1a, 64 bits).
pub fn sql_fingerprint(sql: &str) -> String {
    sql_shape(sql).fingerprint
}

/// What the root span learns from a SQL text in one pass of the tokenizer:
/// its literal-free fingerprint, and its literal values (for the export
/// pipeline to mask).
#[derive(Debug)]
struct SqlShape {
    fingerprint: String,
    literals: Vec<String>,
}

fn sql_shape(sql: &str) -> SqlShape {
    let mut literals = Vec::new();
    let normalized = match Tokenizer::new(&GenericDialect {}, sql).tokenize() {
        Ok(tokens) => tokens
            .iter()
            .filter_map(|token| {
                let literal = match token {
                    Token::Whitespace(_) | Token::EOF => return None,
                    Token::Number(text, _) => text,
                    Token::SingleQuotedString(text)
                    | Token::DoubleQuotedString(text)
                    | Token::TripleSingleQuotedString(text)
                    | Token::TripleDoubleQuotedString(text)
                    | Token::SingleQuotedByteStringLiteral(text)
                    | Token::DoubleQuotedByteStringLiteral(text)
                    | Token::TripleSingleQuotedByteStringLiteral(text)
                    | Token::TripleDoubleQuotedByteStringLiteral(text)
                    | Token::SingleQuotedRawStringLiteral(text)
                    | Token::DoubleQuotedRawStringLiteral(text)
                    | Token::TripleSingleQuotedRawStringLiteral(text)
                    | Token::TripleDoubleQuotedRawStringLiteral(text)
                    | Token::NationalStringLiteral(text)
                    | Token::EscapedStringLiteral(text)
                    | Token::UnicodeStringLiteral(text)
                    | Token::HexStringLiteral(text) => text,
                    Token::DollarQuotedString(quoted) => &quoted.value,
                    Token::QuoteDelimitedStringLiteral(quoted)
                    | Token::NationalQuoteDelimitedStringLiteral(quoted) => &quoted.value,
                    Token::Word(word) if word.quote_style.is_none() => {
                        return Some(word.value.to_ascii_uppercase());
                    }
                    other => return Some(other.to_string()),
                };
                literals.push(literal.clone());
                Some("?".to_owned())
            })
            .collect::<Vec<_>>()
            .join(" "),
        // Text the tokenizer rejects (e.g. an unterminated string) is hashed
        // whitespace-collapsed; the hash still reveals no literal.
        Err(_) => sql.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in normalized.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    SqlShape {
        fingerprint: format!("{hash:016x}"),
        literals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_uuid_v4_and_never_repeat() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| random_run_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
        }
    }

    #[test]
    fn fingerprint_ignores_literals_whitespace_comments_and_keyword_case() {
        let a = sql_fingerprint("SELECT * FROM t WHERE id = 42 AND name = 'alice'");
        let b = sql_fingerprint("select *\n  from t -- note\n where id = 7 and name = 'bob'");
        assert_eq!(a, b);
        assert_ne!(
            a,
            sql_fingerprint("SELECT * FROM u WHERE id = 42 AND name = 'alice'")
        );
        assert_eq!(a.len(), 16);
        assert_eq!(sql_fingerprint("SELECT 'x"), sql_fingerprint("SELECT  'x"));
    }
}
