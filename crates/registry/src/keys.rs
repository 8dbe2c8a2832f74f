//! The names on the wire: span names, `tracing` targets and attribute keys
//! that more than one dftrace crate writes or reads. One constant per name;
//! `docs/span-schema.md` says what each holds.

/// The name of the root query span (`dftrace-rules` creates it). Crates that
/// attribute work to a query (storage byte counters, the metrics summary)
/// find the query's span by this name among the current span's ancestors.
pub const QUERY_SPAN_NAME: &str = "dftrace.query";

/// The boolean field a span records as `true` when its trace is not sampled
/// (`dftrace-rules` records it on the root query span). dftrace-bootstrap's
/// subscriber then disables every span opened inside it, so upstream's own
/// `is_disabled()` checks skip plan formatting and diffs for a trace
/// that would export nothing.
pub const UNSAMPLED_FIELD: &str = "dftrace.unsampled";

/// The `tracing` target of dftrace's own warnings (a setup that drops its
/// spans); every span target below starts with it, so `dftrace=trace` in a
/// filter lets all of them through.
pub const WARNING_TARGET: &str = "dftrace";
/// The `tracing` target of root query spans.
pub const QUERY_TARGET: &str = "dftrace::query";
/// The `tracing` target of operator spans (deferred spans carry it as their
/// `target` attribute too).
pub const EXEC_TARGET: &str = "dftrace::exec";
/// The `tracing` target of planner spans.
pub const PLANNER_TARGET: &str = "dftrace::planner";
/// The `target` attribute of function spans (`dftrace-udf`, built through
/// OpenTelemetry directly, like deferred operator spans).
pub const UDF_TARGET: &str = "dftrace::udf";
/// The `tracing` target of the worker request spans.
pub const WORKER_TARGET: &str = "dftrace::distributed";
/// The name of the span a datafusion-distributed worker opens per request
/// (`dftrace-distributed`); deferred operator spans of the plan it runs go
/// under it.
pub const WORKER_SPAN_NAME: &str = "dftrace.worker";

/// The attribute `tracing-opentelemetry` writes a span's target to.
pub const TARGET: &str = "target";

/// An operator's one-line description (DataFusion's `DisplayAs`).
pub const NODE: &str = "datafusion.node";
/// An operator's output partitioning.
pub const PARTITIONING: &str = "datafusion.partitioning";
/// When an operator emits rows.
pub const EMISSION_TYPE: &str = "datafusion.emission_type";
/// Whether an operator's output is bounded.
pub const BOUNDEDNESS: &str = "datafusion.boundedness";
/// An operator's first rows, redacted.
pub const PREVIEW: &str = "datafusion.preview";
/// How many rows the preview shows.
pub const PREVIEW_ROWS: &str = "datafusion.preview_rows";
/// The prefix of an operator's DataFusion metrics.
pub const METRICS_PREFIX: &str = "datafusion.metrics.";
/// The plan diff a planner span records.
pub const PLAN_DIFF: &str = "datafusion.plan_diff";

/// An operator's position in its plan, in pre-order (the root is 0).
pub const OPERATOR_INDEX: &str = "dftrace.operator.index";
/// An operator's output partitions.
pub const OPERATOR_PARTITIONS: &str = "dftrace.operator.partitions";
/// An operator's own time: its `elapsed_compute`, summed over partitions,
/// in nanoseconds.
pub const SELF_TIME_NS: &str = "dftrace.operator.self_time_ns";
/// The smallest per-partition self time.
pub const SELF_TIME_MIN: &str = "dftrace.operator.self_time_ns.min";
/// The median per-partition self time.
pub const SELF_TIME_MEDIAN: &str = "dftrace.operator.self_time_ns.median";
/// The largest per-partition self time.
pub const SELF_TIME_MAX: &str = "dftrace.operator.self_time_ns.max";
/// The fewest rows a partition produced.
pub const ROWS_MIN: &str = "dftrace.operator.output_rows.min";
/// The median of the rows the partitions produced.
pub const ROWS_MEDIAN: &str = "dftrace.operator.output_rows.median";
/// The most rows a partition produced.
pub const ROWS_MAX: &str = "dftrace.operator.output_rows.max";
/// The rows DataFusion's statistics estimated for the operator.
pub const ESTIMATED_ROWS: &str = "dftrace.operator.estimated_rows";
/// Whether that estimate is exact.
pub const ESTIMATED_ROWS_EXACT: &str = "dftrace.operator.estimated_rows_exact";
/// On a root query span: the run id.
pub const RUN_ID: &str = "dftrace.run_id";
/// On a root query span: the literal-free SQL fingerprint.
pub const SQL_FINGERPRINT: &str = "dftrace.sql.fingerprint";
/// On a root query span: the SQL text (only with `rules.record_sql`).
pub const QUERY_TEXT: &str = "db.query.text";
/// On a root query span: the rows the query returned.
pub const QUERY_ROWS: &str = "dftrace.rows";
/// On a root query span: dftrace opened it, for a host that ran a query
/// without `run_sql` or `QuerySpan`.
pub const QUERY_AUTO: &str = "dftrace.query.auto";
/// On a root query span: the query was dropped before its end (its stream
/// dropped: cancelled, or its consumer stopped reading). Its status stays
/// unset; the operator spans show what ran.
pub const QUERY_CANCELLED: &str = "dftrace.query.cancelled";

/// The name of the analyzer's phase span.
pub const ANALYZE_PHASE: &str = "analyze_logical_plan";
/// The name of a logical optimizer pass's phase span.
pub const OPTIMIZE_PHASE: &str = "optimize_logical_plan";
/// The name of the physical planning span (around the query planner).
pub const CREATE_PHYSICAL_PLAN: &str = "create_physical_plan";
/// The name of the physical optimizer's phase span.
pub const OPTIMIZE_PHYSICAL_PHASE: &str = "optimize_physical_plan";
/// On a planner phase: the rules that changed the plan, comma-separated.
pub const EFFECTIVE_RULES: &str = "datafusion.effective_rules";
/// On a logical optimizer phase: its pass, from 1.
pub const OPTIMIZER_PASS: &str = "datafusion.optimizer.pass";
/// On a logical optimizer phase: the session's `datafusion.optimizer.max_passes`.
pub const OPTIMIZER_MAX_PASSES: &str = "datafusion.optimizer.max_passes";
/// On a planner phase: the rules it ran.
pub const PLANNER_RULES: &str = "dftrace.planner.rules";
/// On a planner phase: the time its rules took, in nanoseconds.
pub const PLANNER_RULE_TIME_NS: &str = "dftrace.planner.rule_time_ns";
/// On a planner rule span: whether the rule changed the plan.
pub const PLANNER_CHANGED: &str = "dftrace.planner.changed";
/// On `create_physical_plan`: the optimized logical plan, masked.
pub const LOGICAL_PLAN: &str = "logical_plan";
/// On `create_physical_plan`: the physical plan, masked.
pub const PHYSICAL_PLAN: &str = "physical_plan";
/// The field `tracing-opentelemetry` reads a span's status code from.
pub const STATUS_CODE: &str = "otel.status_code";
/// The field `tracing-opentelemetry` reads a span's status message from.
pub const STATUS_DESCRIPTION: &str = "otel.status_description";
/// The instrumentation scope (and meter) name of everything dftrace
/// records through OpenTelemetry directly.
pub const SCOPE_NAME: &str = "dftrace";

/// On a root query span: the most memory pool reservation the query held
/// at once (`dftrace-memory`).
pub const MEMORY_PEAK: &str = "dftrace.memory.peak_bytes";
/// On a root query span: the memory pool's limit, when it has one.
pub const MEMORY_LIMIT: &str = "dftrace.memory.limit_bytes";
/// On a root query span: the peak over the limit, 0 to 1.
pub const MEMORY_PEAK_FRACTION: &str = "dftrace.memory.peak_fraction";
/// On a root query span: reservations the pool refused the query.
pub const MEMORY_FAILED: &str = "dftrace.memory.failed_reservations";
/// On an operator span: the most its partitions held at once, together.
pub const OPERATOR_PEAK_MEMORY: &str = "dftrace.operator.peak_memory_bytes";
/// On an operator span: the most one of its partitions held.
pub const OPERATOR_PEAK_MEMORY_PARTITION: &str = "dftrace.operator.peak_memory_bytes.partition_max";
/// On an operator span: reservations the pool refused it.
pub const OPERATOR_FAILED_RESERVATIONS: &str = "dftrace.operator.failed_reservations";
/// On a root query span: bytes the query's operators spilled to disk
/// (`dftrace-metrics-summary`).
pub const SUMMARY_SPILLED_BYTES: &str = "dftrace.metrics.spilled_bytes";
