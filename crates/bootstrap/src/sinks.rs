//! Span exporters and processors: the OTLP-JSON-lines file, drop counting,
//! and the console summary.

use dftrace_registry::keys;
use opentelemetry::Value;
use opentelemetry::trace::TraceId;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// A file of JSON lines, opened for appending; each line is flushed as it is
/// written, so a crash loses at most the line being written.
#[derive(Debug)]
struct JsonLines {
    writer: Mutex<BufWriter<File>>,
    /// What the file holds, for errors: `the trace file`.
    what: &'static str,
}

impl JsonLines {
    /// `path` opened for appending, created with its directory when missing.
    fn open(path: &Path, what: &'static str) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::options().create(true).append(true).open(path)?;
        Ok(JsonLines {
            writer: Mutex::new(BufWriter::new(file)),
            what,
        })
    }

    /// Writes `request` in the OTLP JSON encoding as one line.
    fn write_line(&self, request: &impl serde::Serialize) -> OTelSdkResult {
        let line = serde_json::to_string(request).map_err(|error| {
            OTelSdkError::InternalFailure(format!("OTLP JSON encoding: {error}"))
        })?;
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writeln!(writer, "{line}")
            .and_then(|()| writer.flush())
            .map_err(|error| {
                OTelSdkError::InternalFailure(format!("writing {}: {error}", self.what))
            })
    }

    fn flush(&self) -> OTelSdkResult {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
            .map_err(|error| OTelSdkError::InternalFailure(error.to_string()))
    }
}

/// Writes each exported batch as one line: an `ExportTraceServiceRequest` in
/// the OTLP JSON encoding (what OTLP/HTTP-JSON sends), so any collector can
/// ingest the file later.
#[derive(Debug)]
pub(crate) struct FileExporter {
    file: JsonLines,
    resource: ResourceAttributesWithSchema,
}

impl FileExporter {
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        Ok(FileExporter {
            file: JsonLines::open(path, "the trace file")?,
            resource: ResourceAttributesWithSchema::default(),
        })
    }
}

impl SpanExporter for FileExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.file.write_line(&ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        })
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.file.flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}

/// The file the file sink writes OpenTelemetry metrics to: beside the
/// trace file, `<trace file stem>.metrics.jsonl`, so the trace file holds
/// spans only and the metrics are found by the same name.
pub(crate) fn metrics_path(trace_file: &Path) -> std::path::PathBuf {
    let stem = trace_file.file_stem().map_or_else(
        || "trace".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    trace_file.with_file_name(format!("{stem}.metrics.jsonl"))
}

/// Writes each metric collection as one line: an
/// `ExportMetricsServiceRequest` in the OTLP JSON encoding (what OTLP/HTTP-JSON
/// sends), so the embedded default sink carries the metrics the OTLP sink
/// does, and any collector can ingest them later.
#[derive(Debug)]
pub(crate) struct FileMetricExporter {
    file: JsonLines,
}

impl FileMetricExporter {
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        Ok(FileMetricExporter {
            file: JsonLines::open(path, "the metrics file")?,
        })
    }
}

impl PushMetricExporter for FileMetricExporter {
    fn export(
        &self,
        metrics: &ResourceMetrics,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Written now: the line is small, and the future holds no borrow.
        std::future::ready(
            self.file
                .write_line(&ExportMetricsServiceRequest::from(metrics)),
        )
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.file.flush()
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.file.flush()
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// How many spans ended, were exported, or failed to export.
#[derive(Debug, Default)]
pub(crate) struct SpanCounters {
    pub(crate) ended: AtomicU64,
    pub(crate) exported: AtomicU64,
    pub(crate) failed: AtomicU64,
}

/// Counts what its exporter delivered; a failed batch counts as failed.
#[derive(Debug)]
pub(crate) struct CountingExporter<E> {
    pub(crate) inner: E,
    pub(crate) counters: Arc<SpanCounters>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = batch.len() as u64;
        let result = self.inner.export(batch).await;
        let counter = if result.is_ok() {
            &self.counters.exported
        } else {
            &self.counters.failed
        };
        counter.fetch_add(count, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts every span that ends before handing it to the batch processor,
/// which drops spans silently when its queue is full: ended minus exported
/// is what was lost.
#[derive(Debug)]
pub(crate) struct CountingProcessor<P> {
    pub(crate) inner: P,
    pub(crate) counters: Arc<SpanCounters>,
    /// `export.attribute_value_length_limit` (0 = none).
    pub(crate) value_limit: usize,
}

/// Cuts string attribute values longer than `limit` bytes (0 = no limit) on
/// a character boundary, with a marker saying how much was cut.
pub(crate) fn limit_attribute_values(span: &mut SpanData, limit: usize) {
    if limit == 0 {
        return;
    }
    for kv in &mut span.attributes {
        if let opentelemetry::Value::String(text) = &kv.value {
            let text = text.as_str();
            if text.len() > limit {
                let mut end = limit;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let cut = format!("{}…[truncated {} bytes]", &text[..end], text.len() - end);
                kv.value = opentelemetry::Value::String(cut.into());
            }
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountingProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        self.counters.ended.fetch_add(1, Ordering::Relaxed);
        limit_attribute_values(&mut span, self.value_limit);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A query's spans are kept until its root ends; traces with no root (spans
/// outside queries) are forgotten past this many.
const MAX_PENDING_TRACES: usize = 256;

/// Prints one line per finished root query span on stderr: trace id,
/// duration, rows and the operators that did the most work.
#[derive(Debug, Default)]
pub(crate) struct ConsoleSummary {
    /// Per trace: (operator name, time) of operator spans seen so far.
    pending: Mutex<HashMap<TraceId, Vec<(String, Duration)>>>,
}

/// The time an operator span is ranked by: its own time
/// (`dftrace.operator.self_time_ns`, on deferred spans), else its wall time
/// (live spans, whose metrics are text), which includes its children.
fn operator_time(span: &SpanData) -> Duration {
    let self_time = span.attributes.iter().find_map(|kv| match kv.value {
        Value::I64(ns) if kv.key.as_str() == keys::SELF_TIME_NS => u64::try_from(ns).ok(),
        _ => None,
    });
    self_time.map_or_else(
        || {
            span.end_time
                .duration_since(span.start_time)
                .unwrap_or_default()
        },
        Duration::from_nanos,
    )
}

impl ConsoleSummary {
    /// The line for a root span and its operators.
    pub(crate) fn line(root: &SpanData, mut operators: Vec<(String, Duration)>) -> String {
        let duration = root
            .end_time
            .duration_since(root.start_time)
            .unwrap_or_default();
        let rows = root
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == keys::QUERY_ROWS)
            .map(|kv| kv.value.as_str().into_owned())
            .unwrap_or_else(|| "?".to_owned());
        let status = match &root.status {
            opentelemetry::trace::Status::Error { description } => {
                format!(", error: {description}")
            }
            _ => String::new(),
        };
        operators.sort_by_key(|(_, took)| std::cmp::Reverse(*took));
        let slowest: Vec<String> = operators
            .iter()
            .take(3)
            .map(|(name, took)| format!("{name} {:.1} ms", took.as_secs_f64() * 1e3))
            .collect();
        let slowest = if slowest.is_empty() {
            "-".to_owned()
        } else {
            slowest.join(", ")
        };
        format!(
            "dftrace: trace {} {:.1} ms, {rows} rows{status}; slowest: {slowest}{}",
            root.span_context.trace_id(),
            duration.as_secs_f64() * 1e3,
            memory_note(root),
        )
    }
}

/// `; memory: ...` for a query that spilled or held more than half the
/// pool's limit (the root's `dftrace-memory` and summary figures); empty
/// otherwise, so an ordinary query's line stays short.
fn memory_note(root: &SpanData) -> String {
    let int = |key: &str| {
        root.attributes.iter().find_map(|kv| match kv.value {
            Value::I64(value) if kv.key.as_str() == key => Some(value),
            _ => None,
        })
    };
    let fraction = root.attributes.iter().find_map(|kv| match kv.value {
        Value::F64(value) if kv.key.as_str() == keys::MEMORY_PEAK_FRACTION => Some(value),
        _ => None,
    });
    let spilled = int(keys::SUMMARY_SPILLED_BYTES).filter(|bytes| *bytes > 0);
    let high = fraction.filter(|fraction| *fraction > 0.5);
    if spilled.is_none() && high.is_none() {
        return String::new();
    }
    let mib = |bytes: i64| bytes as f64 / (1024.0 * 1024.0);
    let mut parts = Vec::new();
    if let Some(peak) = int(keys::MEMORY_PEAK) {
        match fraction {
            Some(fraction) => parts.push(format!(
                "peak {:.1} MiB ({:.0} % of the limit)",
                mib(peak),
                fraction * 100.0
            )),
            None => parts.push(format!("peak {:.1} MiB", mib(peak))),
        }
    }
    if let Some(spilled) = spilled {
        parts.push(format!("spilled {:.1} MiB", mib(spilled)));
    }
    format!("; memory: {}", parts.join(", "))
}

impl SpanProcessor for ConsoleSummary {
    fn on_start(&self, _span: &mut Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        let trace_id = span.span_context.trace_id();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if span.name == keys::QUERY_SPAN_NAME {
            let operators = pending.remove(&trace_id).unwrap_or_default();
            drop(pending);
            eprintln!("{}", Self::line(&span, operators));
            return;
        }
        let is_operator = span.attributes.iter().any(|kv| {
            kv.key.as_str() == keys::TARGET && kv.value == Value::from(keys::EXEC_TARGET)
        });
        if !is_operator {
            return;
        }
        if pending.len() >= MAX_PENDING_TRACES && !pending.contains_key(&trace_id) {
            pending.clear();
        }
        let took = operator_time(&span);
        pending
            .entry(trace_id)
            .or_default()
            .push((span.name.to_string(), took));
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::limit_attribute_values;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    use std::time::SystemTime;

    fn span(attributes: Vec<KeyValue>) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "s".into(),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("t").build(),
        }
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary_with_a_marker() {
        let long = "é".repeat(100); // 200 bytes
        let mut data = span(vec![
            KeyValue::new("plan", long),
            KeyValue::new("short", "ok"),
            KeyValue::new("rows", 7_i64),
        ]);
        limit_attribute_values(&mut data, 11);
        let values: Vec<String> = data
            .attributes
            .iter()
            .map(|kv| kv.value.as_str().into_owned())
            .collect();
        assert_eq!(
            values[0],
            format!("{}…[truncated 190 bytes]", "é".repeat(5))
        );
        assert_eq!(values[1], "ok");
        assert_eq!(values[2], "7");

        let mut unlimited = span(vec![KeyValue::new("plan", "x".repeat(50_000))]);
        limit_attribute_values(&mut unlimited, 0);
        assert_eq!(unlimited.attributes[0].value.as_str().len(), 50_000);
    }

    #[test]
    fn the_line_speaks_of_memory_only_when_a_query_spilled_or_neared_the_limit() {
        use dftrace_registry::keys;
        let quiet = span(vec![
            KeyValue::new(keys::MEMORY_PEAK, 1_048_576_i64),
            KeyValue::new(keys::MEMORY_PEAK_FRACTION, 0.25),
            KeyValue::new(keys::SUMMARY_SPILLED_BYTES, 0_i64),
        ]);
        assert_eq!(super::memory_note(&quiet), "");
        let high = span(vec![
            KeyValue::new(keys::MEMORY_PEAK, 3_145_728_i64),
            KeyValue::new(keys::MEMORY_PEAK_FRACTION, 0.75),
        ]);
        assert_eq!(
            super::memory_note(&high),
            "; memory: peak 3.0 MiB (75 % of the limit)"
        );
        let spilled = span(vec![
            KeyValue::new(keys::MEMORY_PEAK, 1_048_576_i64),
            KeyValue::new(keys::SUMMARY_SPILLED_BYTES, 2_097_152_i64),
        ]);
        assert_eq!(
            super::memory_note(&spilled),
            "; memory: peak 1.0 MiB, spilled 2.0 MiB"
        );
    }
}
