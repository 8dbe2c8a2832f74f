//! A host that owns its telemetry, as most services do: its own `tracing`
//! subscriber with a `fmt` log layer, its own OpenTelemetry
//! `SdkTracerProvider` (an in-memory exporter and a sampler of its own),
//! dftrace added through the facade (`dftrace::init_for_host`,
//! `Dftrace::layer`, `build_with_dftrace`), statements run with
//! `ctx.sql(..).collect()`, streams, the DataFrame API, parameters. What it
//! exports and logs is searched for every secret the statements carry; each
//! entry point must give one trace per statement, under the host's request
//! span, with the sampler asked once.
//!
//! One global subscriber per test binary (operators run on the runtime's
//! worker threads); the tests take turns (`serial()`), since the sampler's
//! count and the log buffer are shared.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionContext, col, lit};
use dftrace::SessionStateBuilderExt;
use dftrace_tests::wait::poll_until;
use dftrace_tests::{assert_contains_all, error_text, secrets, serial};
use futures::StreamExt;
use opentelemetry::trace::{Link, SpanKind, TraceId, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, Sampler, SamplingResult, SdkTracerProvider, ShouldSample,
    SimpleSpanProcessor, SpanData,
};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing::Instrument;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;

/// The host's root sampler: samples everything and counts its decisions
/// (a parent-based sampler asks it only for spans without a parent).
#[derive(Debug, Clone, Default)]
struct CountingSampler(Arc<AtomicUsize>);

impl ShouldSample for CountingSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        self.0.fetch_add(1, Ordering::SeqCst);
        Sampler::AlwaysOn.should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// The host's log output, kept to be searched.
#[derive(Debug, Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Host {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
    roots_sampled: Arc<AtomicUsize>,
    log: LogBuffer,
}

impl Host {
    /// Forgets what earlier tests exported and logged.
    fn reset(&self) {
        let _ = self.provider.force_flush();
        self.exporter.reset();
        self.log.0.lock().unwrap().clear();
    }
}

static HOST: OnceLock<Host> = OnceLock::new();

/// The host's telemetry, installed once: what a service's `main` does.
fn host() -> &'static Host {
    HOST.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let sampler = CountingSampler::default();
        let roots_sampled = Arc::clone(&sampler.0);
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(sampler)))
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .build();
        let log = LogBuffer::default();
        let writer = log.clone();
        // The layer needs only the configuration's export section.
        let dftrace = dftrace::init_for_host(dftrace::config_builder().build().unwrap()).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_span_events(FmtSpan::CLOSE)
                    .with_writer(move || writer.clone()),
            )
            .with(dftrace.layer(provider.tracer("orders-service")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        Host {
            exporter,
            provider,
            roots_sampled,
            log,
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A session as the host builds it, under `config`.
fn session(config: dftrace::DftraceConfig) -> SessionContext {
    let dftrace = dftrace::init_for_host(config).unwrap();
    let state = SessionStateBuilder::new()
        .with_default_features()
        .build_with_dftrace(&dftrace)
        .unwrap();
    SessionContext::new_with_state(state)
}

fn preset_config(preset: dftrace::Preset) -> dftrace::DftraceConfig {
    dftrace::DftraceConfig::builder()
        .preset(preset)
        .build()
        .unwrap()
}

/// Every text a span carries: its name, attribute keys and values, status,
/// events and their attributes.
fn span_text(span: &SpanData, out: &mut String) {
    out.push_str(&span.name);
    out.push('\n');
    for kv in &span.attributes {
        out.push_str(kv.key.as_str());
        out.push('=');
        out.push_str(&kv.value.as_str());
        out.push('\n');
    }
    if let opentelemetry::trace::Status::Error { description } = &span.status {
        out.push_str(description);
        out.push('\n');
    }
    for event in span.events.iter() {
        out.push_str(&event.name);
        out.push('\n');
        for kv in &event.attributes {
            out.push_str(&kv.value.as_str());
            out.push('\n');
        }
    }
}

/// Everything the host exported and logged so far.
fn exported_and_logged(host: &Host) -> String {
    let _ = host.provider.force_flush();
    let mut text = String::new();
    for span in host.exporter.get_finished_spans().unwrap() {
        span_text(&span, &mut text);
    }
    text.push_str(&String::from_utf8_lossy(&host.log.0.lock().unwrap()));
    text
}

/// The host's finished spans once `ready` holds for them (a condition on
/// what arrived, e.g. a number of root query spans: a root closes after
/// every span under it).
fn spans_when(host: &Host, what: &str, ready: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let arrived = poll_until(Duration::from_secs(60), || {
        let _ = host.provider.force_flush();
        ready(&host.exporter.get_finished_spans().unwrap())
    });
    assert!(arrived, "{what} did not arrive within 60 s");
    host.exporter.get_finished_spans().unwrap()
}

fn roots(spans: &[SpanData]) -> usize {
    spans
        .iter()
        .filter(|span| span.name == dftrace_registry::QUERY_SPAN_NAME)
        .count()
}

#[test]
fn no_literal_or_data_value_reaches_the_hosts_exporter_or_log() {
    let _serial = serial();
    let host = host();
    host.reset();
    let dir = std::env::temp_dir().join(format!("dftrace-host-secrets-{}", std::process::id()));
    let runtime = runtime();
    let mut statements = 0;
    // Every preset, and `maximal` with operator spans from the plan's
    // metrics alone (nothing between operators; descriptions taken before
    // the run all the same).
    let metrics_only = dftrace::DftraceConfig::builder()
        .preset(dftrace::Preset::Maximal)
        .set("rules.operator_spans", "metrics-only")
        .build()
        .unwrap();
    let configs = dftrace::Preset::ALL
        .into_iter()
        .map(preset_config)
        .chain([metrics_only]);
    for config in configs {
        let ctx = session(config);
        runtime.block_on(async {
            secrets::register(&ctx, &dir).await.unwrap();
            statements += secrets::run(&ctx).await.unwrap();
        });
    }
    // Each statement's root closes after every span under it.
    spans_when(host, "a root per statement", |spans| {
        roots(spans) >= statements
    });
    let text = exported_and_logged(host);
    let mut leaked = secrets::found_in(&text, secrets::LITERALS);
    leaked.extend(secrets::found_in(&text, secrets::DATA));
    assert!(
        leaked.is_empty(),
        "values reached the host's exporter or log: {leaked:?}\n{}",
        excerpt(&text, leaked.first().copied().unwrap_or_default())
    );
    // The search would have found them: the statements did carry them to
    // the plans, and the dynamic filters did hold values of the data.
    runtime.block_on(async {
        let ctx = session(preset_config(dftrace::Preset::Maximal));
        secrets::register(&ctx, &dir).await.unwrap();
        for sql in secrets::DYNAMIC_FILTER_QUERIES {
            let df = ctx.sql(sql).await.unwrap();
            let task = Arc::new(df.task_ctx());
            let plan = df.create_physical_plan().await.unwrap();
            datafusion::physical_plan::collect(Arc::clone(&plan), task)
                .await
                .unwrap();
            let after = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(true)
                .to_string();
            assert!(
                !secrets::found_in(&after, secrets::DATA).is_empty(),
                "after running `{sql}` its dynamic filters should show values of the data:\n{after}"
            );
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A few lines around the first place `value` stands in `text`.
fn excerpt(text: &str, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    text.lines()
        .filter(|line| line.contains(value))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn literals_are_exported_when_the_host_asks() {
    let _serial = serial();
    let host = host();
    host.reset();
    let config = dftrace::DftraceConfig::builder()
        .preset(dftrace::Preset::Maximal)
        .set("rules.record_literals", true)
        .build()
        .unwrap();
    let ctx = session(config);
    let runtime = runtime();
    let dir = std::env::temp_dir().join(format!("dftrace-host-kept-{}", std::process::id()));
    runtime.block_on(async {
        secrets::register(&ctx, &dir).await.unwrap();
        ctx.sql("SELECT id FROM people WHERE name = 'QzEquals' AND score > 61234 + 12278")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
    });
    spans_when(host, "the root", |spans| roots(spans) >= 1);
    let text = exported_and_logged(host);
    for kept in ["QzEquals", "61234", "73512"] {
        assert!(
            secrets::holds(&text, kept),
            "with rules.record_literals the literal `{kept}` is exported"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The spans of one trace, by span id.
fn by_id(spans: &[SpanData]) -> HashMap<[u8; 8], &SpanData> {
    spans
        .iter()
        .map(|span| (span.span_context.span_id().to_bytes(), span))
        .collect()
}

/// Checks that the request's trace holds exactly one root query span, a
/// child of the request span, and that every other span descends from it.
fn one_trace_under(request: &SpanData, spans: &[SpanData], what: &str) {
    let trace = request.span_context.trace_id();
    let mine: Vec<SpanData> = spans
        .iter()
        .filter(|span| span.span_context.trace_id() == trace)
        .cloned()
        .collect();
    let roots: Vec<&SpanData> = mine
        .iter()
        .filter(|span| span.name == dftrace_registry::QUERY_SPAN_NAME)
        .collect();
    assert_eq!(roots.len(), 1, "{what}: one root query span in the trace");
    let root = roots[0];
    assert_eq!(
        root.parent_span_id,
        request.span_context.span_id(),
        "{what}: the root's parent is the host's request span"
    );
    let ids = by_id(&mine);
    let root_id = root.span_context.span_id();
    for span in &mine {
        if span.span_context.span_id() == request.span_context.span_id()
            || span.span_context.span_id() == root_id
        {
            continue;
        }
        let mut parent = span.parent_span_id;
        let mut hops = 0;
        while parent != root_id {
            let next = ids.get(&parent.to_bytes()).unwrap_or_else(|| {
                let tree: Vec<String> = mine
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} <- {}",
                            s.name,
                            s.span_context.span_id(),
                            s.parent_span_id
                        )
                    })
                    .collect();
                panic!(
                    "{what}: span `{}` is not under the root:\n{}",
                    span.name,
                    tree.join("\n")
                )
            });
            parent = next.parent_span_id;
            hops += 1;
            assert!(hops < 1000, "{what}: a parent cycle");
        }
    }
    let names: Vec<&str> = mine.iter().map(|span| span.name.as_ref()).collect();
    for phase in ["analyze_logical_plan", "optimize_logical_plan"] {
        assert!(
            names.contains(&phase),
            "{what}: the {phase} span is in the statement's trace: {names:?}"
        );
    }
}

/// One way a host runs a statement on a session.
type EntryPoint = Box<dyn Fn(SessionContext) -> futures::future::BoxFuture<'static, ()>>;

/// The entry point `ctx.sql(sql)` then `collect()`.
fn collected(sql: &str) -> EntryPoint {
    let sql = sql.to_owned();
    Box::new(move |ctx| {
        let sql = sql.clone();
        Box::pin(async move {
            ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        })
    })
}

#[test]
fn every_entry_point_is_one_trace_under_the_hosts_request_span() {
    let _serial = serial();
    let host = host();
    host.reset();
    let ctx = session(preset_config(dftrace::Preset::Maximal));
    let dir = std::env::temp_dir().join(format!("dftrace-host-entry-{}", std::process::id()));
    let runtime = runtime();
    runtime.block_on(async { secrets::register(&ctx, &dir).await.unwrap() });
    let query = "SELECT city, count(*) AS n FROM people WHERE score > 4 GROUP BY city";
    let entries: Vec<(&str, EntryPoint)> = vec![
        ("ctx.sql().collect()", collected(query)),
        (
            "execute_stream",
            Box::new(move |ctx| {
                Box::pin(async move {
                    let mut stream = ctx
                        .sql(query)
                        .await
                        .unwrap()
                        .execute_stream()
                        .await
                        .unwrap();
                    while let Some(batch) = stream.next().await {
                        batch.unwrap();
                    }
                })
            }),
        ),
        (
            "create_physical_plan then collect",
            Box::new(move |ctx| {
                Box::pin(async move {
                    let df = ctx.sql(query).await.unwrap();
                    let task = Arc::new(df.task_ctx());
                    let plan = df.create_physical_plan().await.unwrap();
                    datafusion::physical_plan::collect(plan, task)
                        .await
                        .unwrap();
                })
            }),
        ),
        (
            "the DataFrame API",
            Box::new(|ctx| {
                Box::pin(async move {
                    ctx.table("people")
                        .await
                        .unwrap()
                        .filter(col("score").gt(lit(4_i64)))
                        .unwrap()
                        .aggregate(
                            vec![col("city")],
                            vec![datafusion::functions_aggregate::count::count(lit(1))],
                        )
                        .unwrap()
                        .collect()
                        .await
                        .unwrap();
                })
            }),
        ),
        (
            "EXPLAIN ANALYZE",
            collected(&format!("EXPLAIN ANALYZE {query}")),
        ),
        (
            "INSERT INTO",
            collected("INSERT INTO ledger SELECT id, name FROM people WHERE score > 4"),
        ),
        (
            "CREATE TABLE AS",
            collected("CREATE OR REPLACE TABLE copy AS SELECT id FROM people WHERE score > 4"),
        ),
        (
            "a parquet join",
            collected(secrets::DYNAMIC_FILTER_QUERIES[0]),
        ),
    ];
    for (what, run) in &entries {
        host.exporter.reset();
        let request = tracing::info_span!("request", route = "/report");
        let before = host.roots_sampled.load(Ordering::SeqCst);
        runtime.block_on(run(ctx.clone()).instrument(request.clone()));
        drop(request);
        let spans = spans_when(host, "the root and the request span", |spans| {
            roots(spans) >= 1 && spans.iter().any(|span| span.name == "request")
        });
        assert_eq!(
            host.roots_sampled.load(Ordering::SeqCst) - before,
            1,
            "{what}: the sampler decides once, for the host's request span"
        );
        let request = spans
            .iter()
            .find(|span| span.name == "request")
            .unwrap_or_else(|| panic!("{what}: the request span was exported"));
        one_trace_under(request, &spans, what);
    }
    // Without a request span each statement is a trace of its own, and the
    // sampler decides once per statement, at its root.
    host.exporter.reset();
    let before = host.roots_sampled.load(Ordering::SeqCst);
    let statements = 5;
    runtime.block_on(async {
        for _ in 0..statements {
            ctx.sql(query).await.unwrap().collect().await.unwrap();
        }
    });
    let spans = spans_when(host, "a root per statement", |spans| {
        roots(spans) >= statements
    });
    assert_eq!(
        host.roots_sampled.load(Ordering::SeqCst) - before,
        statements,
        "one sampling decision per statement"
    );
    let traces: std::collections::HashSet<TraceId> = spans
        .iter()
        .map(|span| span.span_context.trace_id())
        .collect();
    assert_eq!(traces.len(), statements, "one trace per statement");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host that keeps the executed plan (to show its metrics, as EXPLAIN
/// ANALYZE does; datafusion-python's DataFrame keeps it too) gets the root
/// when the query ends, not when it lets the plan go.
#[test]
fn the_root_ends_with_the_query_while_the_host_keeps_the_plan() {
    let _serial = serial();
    let host = host();
    host.reset();
    let runtime = runtime();
    // With the planner instrumentation the root opens before planning;
    // with dftrace's exec rule alone, at the plan's first execute.
    let exec_rule_only = {
        let rule = dftrace_rules::exec_rule(&dftrace_rules::RulesConfig::default(), None).unwrap();
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_physical_optimizer_rule(rule)
            .build();
        SessionContext::new_with_state(state)
    };
    for (what, ctx) in [
        (
            "opened before planning",
            session(preset_config(dftrace::Preset::Maximal)),
        ),
        ("opened at the first execute", exec_rule_only),
    ] {
        host.exporter.reset();
        let kept = runtime.block_on(async {
            let df = ctx.sql("SELECT 1 AS one UNION ALL SELECT 2").await.unwrap();
            let task = Arc::new(df.task_ctx());
            let plan = df.create_physical_plan().await.unwrap();
            let rows = datafusion::physical_plan::collect(Arc::clone(&plan), task)
                .await
                .unwrap();
            assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
            plan
        });
        spans_when(
            host,
            &format!("the root ({what}) of a kept plan"),
            |spans| roots(spans) == 1,
        );
        drop(kept);
    }
}

#[test]
fn a_subscriber_that_drops_dftraces_spans_is_an_error_at_session_build() {
    let _serial = serial();
    host();
    let dftrace = dftrace::init_for_host(preset_config(dftrace::Preset::ProductionLean)).unwrap();
    let provider = SdkTracerProvider::builder().build();
    // RUST_LOG naming only the host's own targets.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("orders_service=info"))
        .with(dftrace.layer(provider.tracer("orders-service")));
    let error = tracing::subscriber::with_default(subscriber, || {
        error_text(
            SessionStateBuilder::new()
                .with_default_features()
                .build_with_dftrace(&dftrace),
        )
    });
    // The error says what is wrong and what to add.
    assert_contains_all(&error, &["drops dftrace's spans", "dftrace=trace"]);
    // With dftrace's targets let through, the session builds.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "orders_service=info,dftrace=trace",
        ))
        .with(dftrace.layer(provider.tracer("orders-service")));
    tracing::subscriber::with_default(subscriber, || {
        SessionStateBuilder::new()
            .with_default_features()
            .build_with_dftrace(&dftrace)
            .unwrap();
    });
}
