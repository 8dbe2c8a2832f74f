//! A query whose trace is not sampled (a `traceparent` with flags `00` under
//! the default parent-based sampler) pays for no operator instrumentation:
//! the exec rule stands aside, so not even a `tracing` span is created for
//! its operators — while a sampled query in the same session gets them all.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_preview_redaction as _;
use dftrace_registry::{DftraceConfig, Preset};
use dftrace_rules::{EXEC_TARGET, QueryOptions, run_sql};
use dftrace_tests::dftrace_context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Counts every operator span created, recorded or not.
struct OperatorSpans(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for OperatorSpans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        if attrs.metadata().target() == EXEC_TARGET {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_query_runs_its_plan_unwrapped() {
    let created = Arc::new(AtomicUsize::new(0));
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(dftrace_bootstrap::otel_layer(provider.tracer("test")))
        .with(OperatorSpans(Arc::clone(&created)));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let config = DftraceConfig::builder()
        .preset(Preset::Maximal)
        .build()
        .unwrap();
    let ctx = dftrace_context(&config);
    let sql =
        "SELECT v % 3 AS k, count(*) FROM unnest(range(0, 100)) AS t(v) GROUP BY k ORDER BY k";

    let unsampled =
        QueryOptions::new().traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    let quiet = run_sql(&ctx, sql, &unsampled).await.unwrap();
    assert_eq!(
        created.load(Ordering::Relaxed),
        0,
        "no operator span created"
    );

    let sampled =
        QueryOptions::new().traceparent("00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01");
    let traced = run_sql(&ctx, sql, &sampled).await.unwrap();
    assert!(
        created.load(Ordering::Relaxed) > 3,
        "operator spans when sampled"
    );
    assert_eq!(
        datafusion::arrow::util::pretty::pretty_format_batches(&quiet.batches)
            .unwrap()
            .to_string(),
        datafusion::arrow::util::pretty::pretty_format_batches(&traced.batches)
            .unwrap()
            .to_string(),
        "same rows either way"
    );
    let exported = exporter.get_finished_spans().unwrap();
    assert!(
        exported
            .iter()
            .all(|s| s.span_context.trace_id().to_string() != "4bf92f3577b34da6a3ce929d0e0e4736"),
        "nothing of the unsampled trace is exported"
    );
}
