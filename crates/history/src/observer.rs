//! The query observer that fills the history as queries end.

use crate::kept::{KeptQuery, QueryHistory};
use crate::tables::HISTORY_MARKER;
use datafusion::physical_plan::ExecutionPlan;
use dftrace_registry::saturating_i64;
use dftrace_registry::{OperatorFigures, QueryEnd, QueryObserver};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::trace::TraceContextExt;
use std::sync::{Arc, OnceLock};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Histogram of each operator's own time, seconds.
const OPERATOR_SELF_TIME: &str = "dftrace.operator.self_time";
/// Counter of the rows each operator produced.
const OPERATOR_OUTPUT_ROWS: &str = "dftrace.operator.output_rows";
/// The metric attribute naming the operator kind.
const OPERATOR_NAME: &str = "dftrace.operator.name";

/// The per-operator OpenTelemetry instruments (`history.operator_metrics`).
#[derive(Debug)]
pub(crate) struct OperatorInstruments {
    self_time: Histogram<f64>,
    output_rows: Counter<u64>,
}

impl OperatorInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        OperatorInstruments {
            self_time: meter
                .f64_histogram(OPERATOR_SELF_TIME)
                .with_unit("s")
                .with_description("Each operator's own compute time, by operator name")
                .build(),
            output_rows: meter
                .u64_counter(OPERATOR_OUTPUT_ROWS)
                .with_unit("{row}")
                .with_description("Rows each operator produced, by operator name")
                .build(),
        }
    }

    /// Records each operator's own time and rows under its name (the only
    /// attribute: low cardinality).
    pub(crate) fn record(&self, operators: &[OperatorFigures]) {
        for operator in operators {
            let attributes = [KeyValue::new(OPERATOR_NAME, operator.name.clone())];
            if let Some(ns) = operator.self_time_ns {
                self.self_time.record(ns as f64 / 1e9, &attributes);
            }
            if let Some(count) = operator.output_rows {
                self.output_rows.add(count, &attributes);
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct HistoryObserver {
    history: Arc<QueryHistory>,
    operator_metrics: bool,
    /// Made on first use, from the global meter provider in force then.
    instruments: OnceLock<OperatorInstruments>,
}

impl HistoryObserver {
    pub(crate) fn new(history: Arc<QueryHistory>, operator_metrics: bool) -> Self {
        HistoryObserver {
            history,
            operator_metrics,
            instruments: OnceLock::new(),
        }
    }
}

impl QueryObserver for HistoryObserver {
    fn on_query_end(&self, end: &QueryEnd<'_>) {
        // A query over the history is not kept: no feedback loop.
        if end.plan.is_some_and(|plan| reads_history(plan.as_ref())) {
            return;
        }
        let trace = end.span.context().span().span_context().trace_id();
        // Their descriptions were masked when they were taken, as the
        // spans' `datafusion.node` is.
        let operators = end.operators.to_vec();
        if self.operator_metrics {
            self.instruments
                .get_or_init(|| {
                    OperatorInstruments::new(&opentelemetry::global::meter(
                        dftrace_registry::keys::SCOPE_NAME,
                    ))
                })
                .record(&operators);
        }
        let sum = |name: &str| -> Option<i64> {
            let values: Vec<i64> = operators
                .iter()
                .flat_map(|op| op.metrics.iter())
                .filter(|(metric, _)| metric == name)
                .map(|(_, value)| *value)
                .collect();
            (!values.is_empty()).then(|| values.iter().sum())
        };
        #[allow(unused_mut, reason = "only the storage feature sets them")]
        let mut storage: Option<(i64, i64, i64)> = None;
        #[cfg(feature = "storage")]
        if let Some(totals) = dftrace_object_store_registry::query_storage_totals(end.span) {
            storage = Some((
                saturating_i64(totals.requests),
                saturating_i64(totals.bytes_read),
                saturating_i64(totals.bytes_written),
            ));
        }
        let start_unix_ns = end
            .started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| saturating_i64(d.as_nanos()));
        let memory = dftrace_registry::query_state::<dftrace_registry::QueryMemory>(end.span);
        let query = KeptQuery {
            trace_id: trace.to_string(),
            run_id: end.run_id.to_owned(),
            fingerprint: end.fingerprint.map(str::to_owned),
            sql: end.sql.map(str::to_owned),
            start_unix_ns,
            duration_ns: saturating_i64(end.elapsed.as_nanos()),
            error_kind: end.error.as_deref().map(error_kind),
            cancelled: end.cancelled,
            output_rows: end.rows.map(saturating_i64),
            bytes_scanned: sum("bytes_scanned"),
            spilled_bytes: sum("spilled_bytes"),
            peak_memory_bytes: memory
                .as_ref()
                .map(|memory| saturating_i64(memory.peak_bytes())),
            failed_reservations: memory
                .as_ref()
                .map(|memory| saturating_i64(memory.failed_reservations())),
            storage_requests: storage.map(|s| s.0),
            storage_bytes_read: storage.map(|s| s.1),
            storage_bytes_written: storage.map(|s| s.2),
            operators,
        };
        self.history.keep(query);
    }

    fn wants_operators(&self) -> bool {
        true
    }
}

/// Whether `plan` scans one of the history's own tables.
fn reads_history(plan: &dyn ExecutionPlan) -> bool {
    plan.schema().metadata().contains_key(HISTORY_MARKER)
        || plan
            .children()
            .into_iter()
            .any(|child| reads_history(child.as_ref()))
}

/// The kind of an error: DataFusion's prefix (`Execution error`, `Arrow
/// error`, `Error during planning`), never the message, which can quote
/// values of the data.
fn error_kind(message: &str) -> String {
    match message.split_once(':') {
        Some((kind, _))
            if !kind.is_empty()
                && kind.len() <= 48
                && kind
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == ' ' || c == '_') =>
        {
            kind.trim().to_owned()
        }
        _ => "error".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::error_kind;

    #[test]
    fn error_kind_is_the_prefix_and_never_the_message() {
        assert_eq!(
            error_kind("Arrow error: Cast error: Cannot cast string 'x' to Int64"),
            "Arrow error"
        );
        assert_eq!(
            error_kind("Error during planning: table 't' not found"),
            "Error during planning"
        );
        assert_eq!(error_kind("'secret': broken"), "error");
        assert_eq!(error_kind("no colon here"), "error");
    }
}
