//! At each query's end: one span per function under its root, and the
//! OpenTelemetry metrics.

use crate::counters::{FunctionFigures, query_functions};
use dftrace_registry::saturating_i64;
use dftrace_registry::{QueryEnd, QueryObserver, RanOperator};
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, Tracer, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The function's name.
pub const UDF_NAME: &str = "udf.name";
/// Its version, from `[udf.versions]`.
pub const UDF_VERSION: &str = "udf.version";
/// `scalar`, `aggregate` or `window`.
pub const UDF_KIND: &str = "udf.kind";
/// Evaluations (batches).
pub const UDF_CALLS: &str = "udf.calls";
/// Input rows.
pub const UDF_ROWS: &str = "udf.rows";
/// Time inside the function, nanoseconds.
pub const UDF_TIME_NS: &str = "udf.time_ns";
/// The operators that called it, as `name#index` (`dftrace.operator.index`
/// of the operator's span, numbered per plan), separated by `, `, in plan
/// order. Absent when no call ran inside an operator's poll.
pub const UDF_OPERATOR: &str = "udf.operator";
/// Calls that failed.
pub const UDF_ERRORS: &str = "udf.errors";
/// The argument types of its calls (`Int64, Utf8`; several signatures
/// separated by `; `). Never values.
pub const UDF_PARAMS: &str = "udf.params";

/// Histogram of the time per call, seconds.
const DURATION_METRIC: &str = "dftrace.udf.duration";
/// Counter of input rows.
const ROWS_METRIC: &str = "dftrace.udf.rows";
/// Counter of failed calls.
const ERRORS_METRIC: &str = "dftrace.udf.errors";

/// The per-function OpenTelemetry instruments.
#[derive(Debug)]
pub(crate) struct FunctionInstruments {
    duration: Histogram<f64>,
    rows: Counter<u64>,
    errors: Counter<u64>,
}

impl FunctionInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        FunctionInstruments {
            duration: meter
                .f64_histogram(DURATION_METRIC)
                .with_unit("s")
                .with_description("Time per call of each function, by function name")
                .build(),
            rows: meter
                .u64_counter(ROWS_METRIC)
                .with_unit("{row}")
                .with_description("Rows each function was called on, by function name")
                .build(),
            errors: meter
                .u64_counter(ERRORS_METRIC)
                .with_description("Calls of each function that failed, by function name")
                .build(),
        }
    }

    fn record(&self, name: &str, figures: &FunctionFigures) {
        let attributes = [
            KeyValue::new(UDF_NAME, name.to_owned()),
            KeyValue::new(UDF_KIND, figures.kind.as_str()),
        ];
        if figures.calls > 0 {
            // One point per query: the mean time of its calls.
            let per_call = figures.time_ns as f64 / figures.calls as f64 / 1e9;
            self.duration.record(per_call, &attributes);
        }
        self.rows.add(figures.rows, &attributes);
        self.errors.add(figures.errors, &attributes);
    }
}

#[derive(Debug)]
pub(crate) struct FunctionObserver {
    pub(crate) versions: BTreeMap<String, String>,
    pub(crate) otel_metrics: bool,
    pub(crate) instruments: OnceLock<FunctionInstruments>,
}

impl QueryObserver for FunctionObserver {
    fn on_query_end(&self, end: &QueryEnd<'_>) {
        let functions = query_functions(end.span);
        if functions.is_empty() {
            return;
        }
        if self.otel_metrics {
            let instruments = self.instruments.get_or_init(|| {
                FunctionInstruments::new(&opentelemetry::global::meter(
                    dftrace_registry::keys::SCOPE_NAME,
                ))
            });
            for ((name, _), figures) in &functions {
                instruments.record(name, figures);
            }
        }
        if end.unsampled {
            return;
        }
        let root = end.span.context();
        if !root.span().span_context().is_sampled() {
            return;
        }
        let tracer = opentelemetry::global::tracer_provider().tracer_with_scope(
            InstrumentationScope::builder(dftrace_registry::keys::SCOPE_NAME).build(),
        );
        for ((name, _), figures) in functions {
            let mut attributes = vec![
                KeyValue::new(
                    dftrace_registry::keys::TARGET,
                    dftrace_registry::keys::UDF_TARGET,
                ),
                KeyValue::new(UDF_NAME, name.clone()),
                KeyValue::new(UDF_KIND, figures.kind.as_str()),
                KeyValue::new(UDF_CALLS, saturating_i64(figures.calls)),
                KeyValue::new(UDF_ROWS, saturating_i64(figures.rows)),
                KeyValue::new(UDF_TIME_NS, saturating_i64(figures.time_ns)),
                KeyValue::new(UDF_ERRORS, saturating_i64(figures.errors)),
                KeyValue::new(
                    UDF_PARAMS,
                    figures
                        .argument_types
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ];
            if let Some(version) = self.versions.get(&name) {
                attributes.push(KeyValue::new(UDF_VERSION, version.clone()));
            }
            let mut callers: Vec<&RanOperator> = end
                .ran_operators
                .iter()
                .filter(|operator| figures.operators.contains(&operator.key))
                .collect();
            callers.sort_by_key(|operator| operator.index);
            if !callers.is_empty() {
                let names = callers
                    .iter()
                    .map(|operator| format!("{}#{}", operator.name, operator.index))
                    .collect::<Vec<_>>()
                    .join(", ");
                attributes.push(KeyValue::new(UDF_OPERATOR, names));
            }
            // Under the operator that called it, when one did and its span
            // was built; else under the root.
            let parent = match callers.as_slice() {
                [caller] => caller.span_id.map(|span_id| {
                    let root_span = root.span();
                    let root_context = root_span.span_context();
                    Context::new().with_remote_span_context(SpanContext::new(
                        root_context.trace_id(),
                        SpanId::from_bytes(span_id),
                        root_context.trace_flags(),
                        false,
                        root_context.trace_state().clone(),
                    ))
                }),
                _ => None,
            };
            let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
            let mut span = tracer
                .span_builder(name)
                .with_kind(SpanKind::Internal)
                .with_start_time(at(figures.first_start_unix_ns))
                .with_attributes(attributes)
                .start_with_context(&tracer, parent.as_ref().unwrap_or(&root));
            if figures.errors > 0 {
                span.set_status(opentelemetry::trace::Status::error(format!(
                    "{} of {} calls failed",
                    figures.errors, figures.calls
                )));
            }
            span.end_with_timestamp(at(figures.last_end_unix_ns));
        }
    }
}
