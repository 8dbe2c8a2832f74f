//! Operator spans built from the executed plan (`rules.operator_spans =
//! "deferred"`, the default): one span per operator of the plan that ran,
//! carrying every metric the node reports as a typed value (host operators'
//! own metrics too), equal to what EXPLAIN ANALYZE shows for the same
//! execution; and one root per statement whatever API the host runs it
//! through. Failing and early-stopping queries are checked for the live
//! mode too.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::display::human_readable::human_readable_count;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder, TaskContext};
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::metrics::{
    ExecutionPlanMetricsSet, MetricBuilder, MetricType, MetricValue, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use datafusion::prelude::SessionContext;
// Linked so their plugins register: storage spans, the metrics summary.
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_registry::keys;
use dftrace_registry::keys::EXEC_TARGET;
use dftrace_registry::{DftraceConfig, Preset, QUERY_SPAN_NAME, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::{
    SpanCapture, TRACE_DEADLINE, assert_all_under_root, attribute, has_target, query_root as root,
    span_capture,
};
use dftrace_tests::optimizer::HostRule;
use dftrace_tests::rows::{batch_of, explain_metric, ints, register_batches, texts};
use dftrace_tests::tpch::{QUERIES, Table, write_tables};
use dftrace_tests::wait::wait_for;
use futures::StreamExt;
use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;
use std::sync::Arc;

use dftrace_tests::{TestResult, assert_contains_all, error_text};

/// The operator spans of a trace, by their position in the plan.
fn operators(spans: &[SpanData]) -> Vec<&SpanData> {
    let mut operators: Vec<&SpanData> = spans
        .iter()
        .filter(|span| has_target(span, EXEC_TARGET))
        .collect();
    operators.sort_by_key(|span| int(span, keys::OPERATOR_INDEX));
    operators
}

fn int(span: &SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::I64(value)) => *value,
        other => panic!("`{}`: {key} is {other:?}, not an Int", span.name),
    }
}

/// The plan's nodes in pre-order (wrappers are transparent).
fn pre_order(plan: &Arc<dyn ExecutionPlan>) -> Vec<Arc<dyn ExecutionPlan>> {
    let mut nodes = vec![Arc::clone(plan)];
    for child in plan.children() {
        nodes.extend(pre_order(child));
    }
    nodes
}

/// What a deferred span must say for each metric of `metrics`, summed by
/// name as EXPLAIN ANALYZE sums them: `(key, value)`.
fn expected_figures(metrics: &MetricsSet) -> Vec<(String, i64)> {
    let mut figures = Vec::new();
    for metric in metrics.aggregate_by_name().iter() {
        let value = metric.value();
        let key = format!("{}{}", keys::METRICS_PREFIX, value.name());
        match value {
            MetricValue::ElapsedCompute(time) | MetricValue::Time { time, .. } => {
                figures.push((format!("{key}_ns"), time.value() as i64));
            }
            MetricValue::PruningMetrics {
                pruning_metrics, ..
            } => {
                figures.push((format!("{key}.pruned"), pruning_metrics.pruned() as i64));
                figures.push((format!("{key}.matched"), pruning_metrics.matched() as i64));
            }
            MetricValue::Ratio { ratio_metrics, .. } => {
                figures.push((format!("{key}.part"), ratio_metrics.part() as i64));
                figures.push((format!("{key}.total"), ratio_metrics.total() as i64));
            }
            MetricValue::StartTimestamp(_)
            | MetricValue::EndTimestamp(_)
            | MetricValue::Custom { .. } => {}
            _ => figures.push((key, value.as_usize() as i64)),
        }
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_operator_spans_are_the_executed_plan_with_typed_figures() -> TestResult {
    let capture = span_capture();
    let dir = std::env::temp_dir().join(format!("dftrace-operator-tpch-{}", std::process::id()));
    let creates = write_tables(&dir, 0.01, &Table::ALL);
    // `metrics-only` wraps only the plan's top: the spans below come from
    // the plan's metrics alone, and must say the same.
    for mode in ["deferred", "metrics-only"] {
        let config = DftraceConfig::builder()
            .preset(Preset::MaximalNoData)
            .set("rules.operator_spans", mode)
            .build()?;
        let ctx = dftrace_tests::dftrace_context(&config);
        for create in &creates {
            ctx.sql(create).await?.collect().await?;
        }
        tpch_operator_spans(capture, &ctx, mode).await?;
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

async fn tpch_operator_spans(
    capture: &'static SpanCapture,
    ctx: &SessionContext,
    mode: &str,
) -> TestResult {
    // Q1 (aggregate), Q3 (joins, top-k), Q5 and Q9 (many joins), Q18 (a
    // semi join over an aggregate).
    for q in [1, 3, 5, 9, 18] {
        let query = run_sql(ctx, QUERIES[q - 1], &QueryOptions::new()).await?;
        let nodes = pre_order(&query.plan);
        let explain = DisplayableExecutionPlan::with_metrics(query.plan.as_ref())
            .indent(true)
            .to_string();
        let lines: Vec<&str> = explain.lines().collect();
        let (trace_id, ended) = (query.trace_id.clone(), query.ended());
        drop(query);
        let spans = capture.ended_trace(ended, &trace_id).await;
        assert_all_under_root(&spans);
        let root = root(&spans);
        let operators = operators(&spans);

        assert_eq!(
            operators
                .iter()
                .map(|s| s.name.to_string())
                .collect::<Vec<_>>(),
            nodes
                .iter()
                .map(|n| n.name().to_owned())
                .collect::<Vec<_>>(),
            "Q{q} ({mode}): one span per operator of the executed plan, in plan order"
        );
        // Each operator's own interval, not its parent's: the spans below
        // the top do not all share the root's start.
        assert!(
            operators[1..]
                .iter()
                .any(|span| span.start_time != operators[0].start_time),
            "Q{q} ({mode}): the operators' own intervals"
        );
        assert_eq!(lines.len(), nodes.len(), "Q{q}: one EXPLAIN line per node");
        for ((span, node), line) in operators.iter().zip(&nodes).zip(&lines) {
            let name = &span.name;
            for kv in &span.attributes {
                if kv.key.as_str().starts_with(keys::METRICS_PREFIX) {
                    assert!(
                        !matches!(kv.value, Value::String(_)),
                        "Q{q} {name}: {} is a string: {:?}",
                        kv.key,
                        kv.value
                    );
                }
            }
            let metrics = node.metrics().unwrap_or_default();
            for (key, value) in expected_figures(&metrics) {
                if key.ends_with("_ns") {
                    // A task may still add a few nanoseconds to a timer after
                    // the query returned (the span was built then).
                    assert!(int(span, &key) <= value, "Q{q} {name}: {key}");
                } else {
                    assert_eq!(int(span, &key), value, "Q{q} {name}: {key}");
                }
            }
            if let Some(rows) = metrics.output_rows() {
                assert_eq!(
                    explain_metric(line, "output_rows"),
                    Some(human_readable_count(rows).as_str()),
                    "Q{q} {name}: EXPLAIN ANALYZE's output_rows: {line}"
                );
            }
            if metrics.elapsed_compute().is_some() {
                assert_eq!(
                    int(span, keys::SELF_TIME_NS),
                    int(span, "datafusion.metrics.elapsed_compute_ns"),
                    "Q{q} {name}: self time is elapsed_compute"
                );
            }
            assert!(span.start_time <= span.end_time, "Q{q} {name}");
            assert!(
                root.start_time <= span.start_time && span.end_time <= root.end_time,
                "Q{q} {name} ({mode}): within the query's root"
            );
            if name == "DataSourceExec" {
                // Parquet footers give exact row counts.
                assert!(int(span, keys::ESTIMATED_ROWS) > 0, "Q{q}: estimated rows");
            }
            let partitions = int(span, keys::OPERATOR_PARTITIONS);
            assert!(partitions >= 1, "Q{q} {name}");
            // The spread over partitions, for operators whose partitions
            // report rows separately; one partition's figure is the total.
            let reporting: std::collections::BTreeSet<usize> = metrics
                .iter()
                .filter(|m| matches!(m.value(), MetricValue::OutputRows(_)))
                .filter_map(|m| m.partition())
                .collect();
            if reporting.len() >= 2 {
                let (min, max) = (int(span, keys::ROWS_MIN), int(span, keys::ROWS_MAX));
                assert!(min <= int(span, keys::ROWS_MEDIAN) && int(span, keys::ROWS_MEDIAN) <= max);
            } else {
                assert!(
                    attribute(span, keys::ROWS_MIN).is_none(),
                    "Q{q} {name}: no spread for one partition"
                );
            }
        }
    }
    Ok(())
}

/// A host's own operator: passes rows through and counts them in a metric
/// DataFusion has never heard of.
#[derive(Debug)]
struct ProbeExec {
    input: Arc<dyn ExecutionPlan>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for ProbeExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProbeExec")
    }
}

impl ExecutionPlan for ProbeExec {
    fn name(&self) -> &str {
        "ProbeExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ProbeExec {
            input: Arc::clone(&children[0]),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> datafusion::error::Result<SendableRecordBatchStream> {
        let counter = MetricBuilder::new(&self.metrics).counter("probe_custom_counter", partition);
        // A summary-level metric is kept at every `rules.metrics_level`.
        let batches = MetricBuilder::new(&self.metrics)
            .with_type(MetricType::Summary)
            .counter("probe_summary_batches", partition);
        let schema: SchemaRef = self.input.schema();
        let stream = self.input.execute(partition, context)?.map(move |batch| {
            if let Ok(batch) = &batch {
                counter.add(batch.num_rows());
                batches.add(1);
            }
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The host's rule that puts a probe on top of every plan.
fn probe_rule() -> Arc<HostRule> {
    HostRule::new("ProbeRule", |plan| {
        Arc::new(ProbeExec {
            input: plan,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    })
}

/// Table `t`: 100 rows in two partitions; `name` is text, `n<i>`.
fn table_t(ctx: &SessionContext) -> datafusion::error::Result<()> {
    let part = |ids: std::ops::Range<i64>| {
        batch_of([
            ("id", ints(ids.clone())),
            ("name", texts(ids.map(|i| format!("n{i}")))),
        ])
    };
    register_batches(ctx, "t", vec![part(0..50)?, part(50..100)?])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_operator_s_own_metric_is_on_its_span_as_an_int() -> TestResult {
    let capture = span_capture();
    for preset in [Preset::MaximalNoData, Preset::ProductionLean] {
        probe_case(capture, preset).await?;
    }
    Ok(())
}

/// `production-lean` keeps summary-level metrics only
/// (`rules.metrics_level`): a host's metric reaches its spans when the host
/// registers it as `MetricType::Summary`.
async fn probe_case(capture: &'static SpanCapture, preset: Preset) -> TestResult {
    let config = DftraceConfig::builder().preset(preset).build()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        // After dftrace: its rule still runs last and wraps the probe too.
        .with_physical_optimizer_rule(probe_rule())
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    table_t(&ctx)?;
    let query = run_sql(
        &ctx,
        "SELECT id FROM t WHERE id % 4 = 0",
        &QueryOptions::new(),
    )
    .await?;
    let rows: usize = query.batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 25);
    let (trace_id, ended) = (query.trace_id.clone(), query.ended());
    drop(query);
    let spans = capture.ended_trace(ended, &trace_id).await;
    let probes: Vec<&SpanData> = operators(&spans)
        .into_iter()
        .filter(|span| span.name == "ProbeExec")
        .collect();
    assert_eq!(
        probes.len(),
        1,
        "{preset}: one span for the host's operator"
    );
    assert!(
        int(probes[0], "datafusion.metrics.probe_summary_batches") >= 1,
        "{preset}: its summary metric, typed"
    );
    let custom = attribute(probes[0], "datafusion.metrics.probe_custom_counter");
    if preset == Preset::ProductionLean {
        assert_eq!(custom, None, "{preset}: dev-level metrics are left out");
    } else {
        assert_eq!(
            custom,
            Some(&Value::I64(25)),
            "{preset}: its own metric, typed"
        );
    }
    Ok(())
}

/// Waits for the root span tagged `case` (a custom field) to arrive, and
/// returns every span of its trace.
async fn auto_trace(capture: &'static SpanCapture, case: &str, statement: &str) -> Vec<SpanData> {
    let case = case.to_owned();
    let statement = statement.to_owned();
    tokio::task::spawn_blocking(move || {
        let find = || {
            capture
                .trace_spans_named(QUERY_SPAN_NAME)
                .into_iter()
                .find(|span| {
                    attribute(span, "test.case").map(|v| v.as_str().into_owned())
                        == Some(case.clone())
                })
        };
        wait_for(
            &format!("the root span of `{statement}`"),
            TRACE_DEADLINE,
            || find().is_some(),
            || "no root with that case".to_owned(),
        );
        let root = find().unwrap();
        capture.trace(&root.span_context.trace_id().to_string())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_never_calls_run_sql_still_gets_one_trace_per_statement() -> TestResult {
    let capture = span_capture();
    let dir = std::env::temp_dir().join(format!("dftrace-operator-auto-{}", std::process::id()));
    let creates = write_tables(&dir, 0.01, &[Table::Orders]);
    let run_id = uuid_like();
    let session = |case: &str| -> Result<SessionContext, Box<dyn std::error::Error + Send + Sync>> {
        let config = DftraceConfig::builder()
            .preset(Preset::ProductionLean)
            .set(
                "rules.custom_fields",
                serde_json::json!({ "test.case": format!("{run_id}-{case}") }),
            )
            .build()?;
        Ok(dftrace_tests::dftrace_context(&config))
    };
    let sql = "SELECT o_orderpriority, count(*) FROM orders WHERE o_totalprice > 1000 GROUP BY 1";

    // CREATE EXTERNAL TABLE through `ctx.sql`: listing and schema inference.
    let create_ctx = session("create")?;
    create_ctx.sql(&creates[0]).await?.collect().await?;
    let spans = auto_trace(capture, &format!("{run_id}-create"), &creates[0]).await;
    assert_all_under_root(&spans);
    assert!(
        spans.iter().any(|s| s.name.starts_with("file.")),
        "the table's storage requests are in its trace: {:?}",
        spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
    );

    let expected = {
        let plain = SessionContext::new();
        plain.sql(&creates[0]).await?;
        dftrace_tests::rows::canonical_rows(&plain.sql(sql).await?.collect().await?)?
    };
    let orders = dir.join("orders").display().to_string();
    for api in ["collect", "execute_stream", "physical_plan::collect"] {
        let ctx = session(api)?;
        // Not through a table factory: the query's root is this case's only one.
        ctx.register_parquet("orders", &orders, Default::default())
            .await?;
        let df = ctx.sql(sql).await?;
        let batches = match api {
            "collect" => df.collect().await?,
            "execute_stream" => {
                let mut stream = df.execute_stream().await?;
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    batches.push(batch?);
                }
                batches
            }
            _ => {
                let task = Arc::new(df.task_ctx());
                let plan = df.create_physical_plan().await?;
                datafusion::physical_plan::collect(plan, task).await?
            }
        };
        assert_eq!(
            dftrace_tests::rows::canonical_rows(&batches)?,
            expected,
            "{api}"
        );
        let spans = auto_trace(capture, &format!("{run_id}-{api}"), sql).await;
        assert_all_under_root(&spans);
        let root = root(&spans);
        assert_eq!(
            attribute(root, keys::QUERY_AUTO),
            Some(&Value::Bool(true)),
            "{api}"
        );
        assert_eq!(
            attribute(root, keys::QUERY_ROWS),
            Some(&Value::I64(expected.len() as i64)),
            "{api}: the root's outcome"
        );
        assert!(
            attribute(root, "dftrace.metrics.operator_count").is_some(),
            "{api}: the metrics summary is on the root"
        );
        let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
        assert!(
            operators(&spans).iter().any(|s| s.name == "AggregateExec"),
            "{api}: operator spans under the root: {names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("file.")),
            "{api}: storage spans: {names:?}"
        );
        assert!(
            names.iter().any(|n| n == "optimize_physical_plan"),
            "{api}: physical planning under the root: {names:?}"
        );
        // The root opens before the analyzer: its phase and the logical
        // optimizer's are in the statement's trace too.
        for phase in ["analyze_logical_plan", "optimize_logical_plan"] {
            assert!(
                names.iter().any(|n| n == phase),
                "{api}: {phase} under the root: {names:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// A value no other test run uses.
fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_operator_is_marked_and_an_early_stop_keeps_every_span_in_both_modes()
-> TestResult {
    let capture = span_capture();
    for mode in ["deferred", "live"] {
        let config = DftraceConfig::builder()
            .preset(Preset::MaximalNoData)
            .set("rules.operator_spans", mode)
            // Live spans record plan text dftrace cannot mask.
            .set("rules.record_literals", mode == "live")
            .build()?;
        let ctx = dftrace_tests::dftrace_context(&config);
        table_t(&ctx)?;

        // The cast fails on the first row while the projection runs.
        let sql = "SELECT CAST(name AS INT) FROM t";
        let options = QueryOptions::new().run_id(format!("failing-{mode}"));
        let query = dftrace_rules::QuerySpan::start(&ctx.copied_config(), Some(sql), &options)?;
        let outcome = run_sql_in(&ctx, sql, &query).await;
        assert!(outcome.is_err(), "{mode}: the cast fails");
        let (trace_id, ended) = (query.trace_id(), query.ended());
        drop(query);
        let spans = capture.ended_trace(ended, &trace_id).await;
        assert_all_under_root(&spans);
        assert!(
            matches!(root(&spans).status, Status::Error { .. }),
            "{mode}: the root has ERROR"
        );
        // Live spans are per partition group: each failing partition's span
        // is marked, and only those of the operator where it started.
        let failed: std::collections::BTreeSet<String> = spans
            .iter()
            .filter(|s| has_target(s, EXEC_TARGET) && matches!(s.status, Status::Error { .. }))
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(
            failed.into_iter().collect::<Vec<_>>(),
            ["ProjectionExec"],
            "{mode}: where the error started"
        );

        // A LIMIT stops the scan early; the trace still completes.
        let query = run_sql(&ctx, "SELECT * FROM t LIMIT 3", &QueryOptions::new()).await?;
        let rows: usize = query.batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 3, "{mode}");
        let (trace_id, ended) = (query.trace_id.clone(), query.ended());
        drop(query);
        let spans = capture.ended_trace(ended, &trace_id).await;
        assert_all_under_root(&spans);
        assert!(
            spans
                .iter()
                .any(|s| has_target(s, EXEC_TARGET) && s.name == "DataSourceExec"),
            "{mode}: the scan's span"
        );
    }
    Ok(())
}

/// Plans and runs `sql` inside `query`'s span, recording the outcome, as a
/// host that drives its own execution does.
async fn run_sql_in(
    ctx: &SessionContext,
    sql: &str,
    query: &dftrace_rules::QuerySpan,
) -> datafusion::error::Result<Vec<RecordBatch>> {
    use tracing::Instrument;
    let result = async { ctx.sql(sql).await?.collect().await }
        .instrument(query.span().clone())
        .await;
    match &result {
        Ok(batches) => query.record_success(batches.iter().map(RecordBatch::num_rows).sum(), None),
        Err(error) => query.record_error(error),
    }
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_slow_or_failed_queries_get_operator_spans_when_asked() -> TestResult {
    let capture = span_capture();
    for (when, slow_ms, expect_spans) in [
        ("failed", 0, false),
        ("slow", 0, true),
        ("slow", 3_600_000, false),
    ] {
        let config = DftraceConfig::builder()
            .set("rules.operator_spans_when", when)
            .set("rules.slow_query_ms", slow_ms)
            .build()?;
        let ctx = dftrace_tests::dftrace_context(&config);
        table_t(&ctx)?;
        let query = run_sql(&ctx, "SELECT count(*) FROM t", &QueryOptions::new()).await?;
        let (trace_id, ended) = (query.trace_id.clone(), query.ended());
        drop(query);
        let spans = capture.ended_trace(ended, &trace_id).await;
        assert_eq!(
            !operators(&spans).is_empty(),
            expect_spans,
            "operator_spans_when = {when}, slow_query_ms = {slow_ms}"
        );
        // The root and its summary are there either way.
        assert!(attribute(root(&spans), "dftrace.metrics.operator_count").is_some());
    }
    let live = DftraceConfig::builder()
        .set("rules.operator_spans", "live")
        .set("rules.operator_spans_when", "slow")
        .set("rules.record_literals", true)
        .build()?;
    let built = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&live);
    // Live spans cannot wait for the outcome.
    assert_contains_all(&error_text(built), &["operator_spans_when", "deferred"]);
    Ok(())
}
