//! OpenTelemetry instruments for queries, named and measured in the
//! semantic-convention style, with low-cardinality attributes only.

use crate::summary::QueryMetricsSummary;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};
use std::time::Duration;

/// The query instruments of one meter.
#[derive(Debug, Clone)]
pub struct QueryInstruments {
    duration: Histogram<f64>,
    rows: Counter<u64>,
    bytes_scanned: Counter<u64>,
    spilled_bytes: Counter<u64>,
    storage_read: Counter<u64>,
    storage_written: Counter<u64>,
    errors: Counter<u64>,
    /// Read by the meter when it collects: no cost per query.
    _in_flight: ObservableGauge<u64>,
}

/// How a query ended, as the duration's `dftrace.query.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryOutcome {
    /// It returned all its rows.
    Ok,
    /// It failed.
    Error,
    /// It was dropped before its end (cancelled, or its consumer stopped
    /// reading).
    Cancelled,
}

impl QueryOutcome {
    /// `ok`, `error` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryOutcome::Ok => "ok",
            QueryOutcome::Error => "error",
            QueryOutcome::Cancelled => "cancelled",
        }
    }
}

impl QueryInstruments {
    /// Creates the instruments on `meter`:
    ///
    /// | name | kind | unit |
    /// |---|---|---|
    /// | `dftrace.query.duration` | histogram | `s` |
    /// | `dftrace.query.rows` | counter | `{row}` |
    /// | `dftrace.query.bytes_scanned` | counter | `By` |
    /// | `dftrace.query.spilled_bytes` | counter | `By` |
    /// | `dftrace.storage.bytes_read` | counter | `By` |
    /// | `dftrace.storage.bytes_written` | counter | `By` |
    /// | `dftrace.query.errors` | counter | `{error}` |
    /// | `dftrace.queries.in_flight` | observable gauge | `{query}` |
    ///
    /// The only attribute is `dftrace.query.outcome` (`ok`, `error` or
    /// `cancelled`) on the duration: no SQL, no run ids. The gauge counts
    /// the process's queries whose root is open.
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        QueryInstruments {
            duration: meter
                .f64_histogram("dftrace.query.duration")
                .with_unit("s")
                .with_description("Duration of DataFusion queries, from planning to the last row")
                .build(),
            rows: counter("dftrace.query.rows", "{row}", "Rows returned by queries"),
            bytes_scanned: counter(
                "dftrace.query.bytes_scanned",
                "By",
                "Bytes scanned by file sources",
            ),
            spilled_bytes: counter("dftrace.query.spilled_bytes", "By", "Bytes spilled to disk"),
            storage_read: counter(
                "dftrace.storage.bytes_read",
                "By",
                "Bytes read from object stores",
            ),
            storage_written: counter(
                "dftrace.storage.bytes_written",
                "By",
                "Bytes written to object stores",
            ),
            errors: counter("dftrace.query.errors", "{error}", "Queries that failed"),
            _in_flight: meter
                .u64_observable_gauge("dftrace.queries.in_flight")
                .with_unit("{query}")
                .with_description("Queries whose root span is open (planning or executing)")
                .with_callback(|observer| {
                    observer.observe(dftrace_registry::queries_in_flight(), &[]);
                })
                .build(),
        }
    }

    /// Records one finished query.
    pub fn record(
        &self,
        elapsed: Duration,
        outcome: QueryOutcome,
        summary: Option<&QueryMetricsSummary>,
    ) {
        let attributes = [KeyValue::new("dftrace.query.outcome", outcome.as_str())];
        self.duration.record(elapsed.as_secs_f64(), &attributes);
        if outcome == QueryOutcome::Error {
            self.errors.add(1, &[]);
        }
        let Some(summary) = summary else { return };
        let pairs = [
            (&self.rows, summary.output_rows),
            (&self.bytes_scanned, summary.bytes_scanned),
            (&self.spilled_bytes, summary.spilled_bytes),
            (&self.storage_read, summary.storage_bytes_read),
            (&self.storage_written, summary.storage_bytes_written),
        ];
        for (counter, value) in pairs {
            if let Some(value) = value {
                counter.add(value, &[]);
            }
        }
    }
}
