//! A query whose trace is not sampled (a `traceparent` with flags `00` under
//! the default parent-based sampler) pays for no operator or planner
//! instrumentation: the exec rule stands aside, and the bootstrap's layers
//! disable every span opened inside the unsampled root, so not even a
//! `tracing` span is created for its operators, phases or rules (and no plan
//! diff is formatted) — while a sampled query in the same session gets them
//! all.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_preview_redaction as _;
use dftrace_registry::keys::{EXEC_TARGET, PLANNER_TARGET, QUERY_TARGET};
use dftrace_registry::{DftraceConfig, Preset};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::dftrace_context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Counts every span created below the root query span, recorded or not:
/// operator spans, planner spans, and the rest.
#[derive(Default, Clone)]
struct SpansCreated {
    operator: Arc<AtomicUsize>,
    planner: Arc<AtomicUsize>,
    other: Arc<AtomicUsize>,
}

impl SpansCreated {
    fn counts(&self) -> [usize; 3] {
        [&self.operator, &self.planner, &self.other].map(|c| c.load(Ordering::Relaxed))
    }
}

impl<S: tracing::Subscriber> Layer<S> for SpansCreated {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        let counter = match attrs.metadata().target() {
            EXEC_TARGET => &self.operator,
            PLANNER_TARGET => &self.planner,
            QUERY_TARGET => return,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_query_runs_its_plan_unwrapped() {
    let created = SpansCreated::default();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_simple_exporter(exporter.clone())
        .build();
    // Deferred operator spans are built through the global provider.
    opentelemetry::global::set_tracer_provider(provider.clone());
    let subscriber = tracing_subscriber::registry()
        .with(dftrace_bootstrap::otel_layer(
            provider.tracer("test"),
            &dftrace_bootstrap::ExportConfig::default(),
        ))
        .with(created.clone());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    for (mode, digit) in [("deferred", '6'), ("live", '7')] {
        let config = DftraceConfig::builder()
            .preset(Preset::Maximal)
            .set("rules.operator_spans", mode)
            // Live spans record plan text dftrace cannot mask.
            .set("rules.record_literals", mode == "live")
            .build()
            .unwrap();
        let ctx = dftrace_context(&config);
        let sql =
            "SELECT v % 3 AS k, count(*) FROM unnest(range(0, 100)) AS t(v) GROUP BY k ORDER BY k";
        let unsampled_trace = format!("4bf92f3577b34da6a3ce929d0e0e473{digit}");
        let sampled_trace = format!("5bf92f3577b34da6a3ce929d0e0e473{digit}");

        let before = created.counts();
        let unsampled =
            QueryOptions::new().traceparent(format!("00-{unsampled_trace}-00f067aa0ba902b7-00"));
        let quiet = run_sql(&ctx, sql, &unsampled).await.unwrap();
        assert_eq!(
            created.counts(),
            before,
            "{mode}: no operator, planner or other span created below the root"
        );

        let sampled =
            QueryOptions::new().traceparent(format!("00-{sampled_trace}-00f067aa0ba902b7-01"));
        let traced = run_sql(&ctx, sql, &sampled).await.unwrap();
        let planner = created.counts()[1] - before[1];
        assert!(planner > 3, "{mode}: planner spans when sampled: {planner}");
        assert_eq!(
            datafusion::arrow::util::pretty::pretty_format_batches(&quiet.batches)
                .unwrap()
                .to_string(),
            datafusion::arrow::util::pretty::pretty_format_batches(&traced.batches)
                .unwrap()
                .to_string(),
            "{mode}: same rows either way"
        );
        // Deferred operator spans are built when the query ends, as
        // OpenTelemetry spans (no `tracing` span per operator); live ones
        // close with the plan.
        let ended = traced.ended();
        drop(traced);
        tokio::task::spawn_blocking(move || {
            ended.wait_timeout(dftrace_tests::capture::TRACE_DEADLINE)
        })
        .await
        .unwrap();
        let exported = exporter.get_finished_spans().unwrap();
        let operators = exported
            .iter()
            .filter(|s| {
                s.span_context.trace_id().to_string() == sampled_trace
                    && s.attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == "target" && kv.value.as_str() == EXEC_TARGET)
            })
            .count();
        assert!(
            operators > 3,
            "{mode}: operator spans when sampled: {operators}"
        );
        assert!(
            exported
                .iter()
                .all(|s| s.span_context.trace_id().to_string() != unsampled_trace),
            "{mode}: nothing of the unsampled trace is exported"
        );
    }
}
