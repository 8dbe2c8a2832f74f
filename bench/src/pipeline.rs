//! The one telemetry pipeline every configuration shares: the global
//! subscriber with dftrace-bootstrap's filter and OpenTelemetry layer, and the
//! batch span processor at the bootstrap's default settings, exporting to an
//! exporter that counts and discards.

use dftrace_bootstrap::ExportConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Span counts so far.
#[derive(Debug, Default)]
pub struct Counters {
    ended: AtomicU64,
    exported: AtomicU64,
    attribute_bytes: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounts {
    /// Spans that ended (sampled spans only: unsampled ones never reach a
    /// processor).
    pub ended: u64,
    /// Spans the exporter received.
    pub exported: u64,
    /// Bytes of attribute keys and values the exporter received.
    pub attribute_bytes: u64,
}

impl SpanCounts {
    /// Counts between `earlier` and `self`.
    pub fn since(self, earlier: SpanCounts) -> SpanCounts {
        SpanCounts {
            ended: self.ended - earlier.ended,
            exported: self.exported - earlier.exported,
            attribute_bytes: self.attribute_bytes - earlier.attribute_bytes,
        }
    }

    /// Spans that ended but never reached the exporter.
    pub fn dropped(self) -> u64 {
        self.ended.saturating_sub(self.exported)
    }
}

/// The bytes of an attribute value: a string's length, eight for a number,
/// one for a boolean.
fn value_bytes(value: &opentelemetry::Value) -> usize {
    use opentelemetry::{Array, Value};
    match value {
        Value::String(text) => text.as_str().len(),
        Value::Bool(_) => 1,
        Value::I64(_) | Value::F64(_) => 8,
        Value::Array(Array::String(items)) => items.iter().map(|s| s.as_str().len()).sum(),
        Value::Array(Array::Bool(items)) => items.len(),
        Value::Array(Array::I64(items)) => 8 * items.len(),
        Value::Array(Array::F64(items)) => 8 * items.len(),
        _ => 0,
    }
}

#[derive(Debug)]
struct DiscardingExporter(Arc<Counters>);

impl SpanExporter for DiscardingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // Sized as an OTLP exporter encodes them, without formatting
        // numbers into strings (which no real exporter does).
        let bytes: usize = batch
            .iter()
            .flat_map(|span| span.attributes.iter())
            .map(|kv| kv.key.as_str().len() + value_bytes(&kv.value))
            .sum();
        self.0
            .attribute_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.0
            .exported
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[derive(Debug)]
struct CountingProcessor {
    inner: BatchSpanProcessor,
    counters: Arc<Counters>,
}

impl SpanProcessor for CountingProcessor {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.counters.ended.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
}

/// The installed pipeline.
#[derive(Debug)]
pub struct Pipeline {
    provider: SdkTracerProvider,
    counters: Arc<Counters>,
}

impl Pipeline {
    /// Installs the global subscriber (once per process).
    pub fn install() -> Result<Pipeline, String> {
        let export = ExportConfig::default();
        let counters = Arc::new(Counters::default());
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(export.batch.max_queue_size)
            .with_max_export_batch_size(export.batch.max_export_batch_size)
            .with_scheduled_delay(Duration::from_millis(export.batch.schedule_delay_ms))
            .build();
        let processor = BatchSpanProcessor::builder(DiscardingExporter(Arc::clone(&counters)))
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(CountingProcessor {
                inner: processor,
                counters: Arc::clone(&counters),
            })
            .build();
        // Deferred operator spans go through the global provider, as
        // dftrace-bootstrap installs it.
        opentelemetry::global::set_tracer_provider(provider.clone());
        let filter = dftrace_bootstrap::filter_layer(&export.filter)
            .map_err(|e| format!("filter `{}`: {e}", export.filter))?;
        tracing_subscriber::registry()
            .with(filter)
            .with(dftrace_bootstrap::otel_layer(
                provider.tracer("dftrace-bench"),
                &export,
            ))
            .try_init()
            .map_err(|e| format!("cannot install the subscriber: {e}"))?;
        Ok(Pipeline { provider, counters })
    }

    /// Exports everything pending, then reads the counters.
    pub fn flushed_counts(&self) -> SpanCounts {
        // The spans dftrace builds after a query returned are built first.
        let _ = dftrace_registry::flush_pending_work(Duration::from_secs(60));
        let _ = self.provider.force_flush();
        SpanCounts {
            ended: self.counters.ended.load(Ordering::Relaxed),
            exported: self.counters.exported.load(Ordering::Relaxed),
            attribute_bytes: self.counters.attribute_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Peak resident set size of this process, in bytes (0 when unknown).
pub fn peak_rss_bytes() -> u64 {
    dftrace_tests::proc_kib("/proc/self/status", "VmHWM").map_or(0, |kib| kib * 1024)
}
