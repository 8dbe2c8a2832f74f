//! dftrace-rules end to end: planner, operator and root query spans through a
//! real OpenTelemetry pipeline (in-memory exporter).

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::tree_node::TreeNode;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::prelude::SessionContext;
use dftrace_registry::QUERY_SPAN_NAME;
use dftrace_registry::keys::{EXEC_TARGET, PLANNER_TARGET};
use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::{
    assert_all_under_root, assert_error_status, attribute, attribute_string, has_target,
    query_root as root, span_capture,
};
use opentelemetry::Value;
use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;
use std::collections::BTreeSet;
use std::sync::Arc;

use dftrace_tests::optimizer::{HostRule, rule_names};
use dftrace_tests::rows::{batch_of, floats, ints, register_batches, register_join_partner, texts};
use dftrace_tests::{TestResult, assert_contains_all, error_text};

const PHASES: [&str; 3] = [
    "analyze_logical_plan",
    "optimize_logical_plan",
    "optimize_physical_plan",
];

/// Table `t(id, name, v)`: 120 rows in two partitions; and its join
/// partner `u`.
fn tables(ctx: &SessionContext) -> datafusion::error::Result<()> {
    let part = |ids: std::ops::Range<i64>| {
        batch_of([
            ("id", ints(ids.clone())),
            ("name", texts(ids.clone().map(|i| format!("n{}", i % 7)))),
            ("v", floats(ids.map(|i| i as f64 * 1.5))),
        ])
    };
    register_batches(ctx, "t", vec![part(0..60)?, part(60..120)?])?;
    register_join_partner(ctx, (0..120).step_by(3), (0..40).map(|i| format!("w{i}")))
}

fn traced_context(
    config: &DftraceConfig,
) -> Result<SessionContext, Box<dyn std::error::Error + Send + Sync>> {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(config)?
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    tables(&ctx)?;
    Ok(ctx)
}

/// Runs `sql` traced and returns the spans of its trace, once every span of
/// the query has ended (the executed plan holds the operator spans).
async fn run(
    ctx: &SessionContext,
    sql: &str,
    options: &QueryOptions,
) -> datafusion::error::Result<(Vec<RecordBatch>, Vec<SpanData>)> {
    span_capture();
    let query = run_sql(ctx, sql, options).await?;
    let (trace_id, ended) = (query.trace_id.clone(), query.ended());
    let batches = query.batches;
    drop(query.plan);
    Ok((batches, span_capture().ended_trace(ended, &trace_id).await))
}

fn operator_names(spans: &[SpanData]) -> Vec<String> {
    let mut names: Vec<String> = spans
        .iter()
        .filter(|s| has_target(s, EXEC_TARGET))
        .map(|s| s.name.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_spans_follow_rule_mode_and_plan_diff() -> TestResult {
    let sql = "SELECT name, count(*) AS c FROM t WHERE id > 3 GROUP BY name ORDER BY name";
    let mut rule_spans = std::collections::BTreeMap::new();
    for (mode, diff) in [
        ("disabled", false),
        ("phase-only", false),
        ("changed", true),
        ("full", false),
        ("full", true),
    ] {
        let config = DftraceConfig::builder()
            .preset(Preset::MaximalNoData)
            .set("rules.rule_mode", mode)
            .set("rules.plan_diff", diff)
            .build()?;
        let (_, spans) = run(&traced_context(&config)?, sql, &QueryOptions::new()).await?;
        assert_all_under_root(&spans);
        let planner: Vec<&SpanData> = spans
            .iter()
            .filter(|s| has_target(s, PLANNER_TARGET))
            .collect();
        let phases: BTreeSet<&str> = planner
            .iter()
            .map(|s| s.name.as_ref())
            .filter(|n| PHASES.contains(n))
            .collect();
        let rules: Vec<&str> = planner
            .iter()
            .map(|s| s.name.as_ref())
            .filter(|n| !PHASES.contains(n) && *n != "create_physical_plan")
            .collect();
        let diffs = spans
            .iter()
            .filter(|s| attribute(s, "datafusion.plan_diff").is_some())
            .count();
        match mode {
            "disabled" => assert!(planner.is_empty(), "{mode}: {planner:?}"),
            "phase-only" => {
                assert_eq!(phases, BTreeSet::from(PHASES), "{mode}");
                assert!(rules.is_empty(), "{mode}: rule spans {rules:?}");
            }
            "changed" => {
                assert_eq!(phases, BTreeSet::from(PHASES), "{mode}");
                assert!(!rules.is_empty(), "{mode}: the rules that changed the plan");
                for span in planner
                    .iter()
                    .filter(|s| !PHASES.contains(&s.name.as_ref()))
                {
                    if span.name == "create_physical_plan" {
                        continue;
                    }
                    assert_eq!(
                        attribute(span, "dftrace.planner.changed"),
                        Some(&Value::Bool(true)),
                        "{mode}: `{}` changed the plan",
                        span.name
                    );
                    assert!(
                        attribute(span, "datafusion.plan_diff").is_some(),
                        "{mode}: `{}` carries its diff",
                        span.name
                    );
                }
                // The others are counted on their phase.
                let counted: i64 = planner
                    .iter()
                    .filter_map(|s| match attribute(s, "dftrace.planner.rules") {
                        Some(Value::I64(n)) => Some(*n),
                        _ => None,
                    })
                    .sum();
                assert!(
                    counted > rules.len() as i64,
                    "{mode}: {counted} rules counted, {} with a span",
                    rules.len()
                );
                rule_spans.insert(mode, rules.len());
            }
            _ => {
                assert_eq!(phases, BTreeSet::from(PHASES), "{mode}");
                assert!(rules.len() > 10, "{mode}: rule spans {rules:?}");
                assert!(
                    rules.contains(&"type_coercion"),
                    "{mode}: analyzer rule spans: {rules:?}"
                );
                rule_spans.insert(mode, rules.len());
            }
        }
        assert_eq!(
            diffs > 0,
            diff,
            "{mode} plan_diff={diff}: {diffs} spans with a plan diff"
        );
    }
    assert!(
        rule_spans["changed"] < rule_spans["full"],
        "changed keeps fewer rule spans than full: {rule_spans:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_spans_are_named_by_operator_with_metrics_and_custom_fields() -> TestResult {
    let config = DftraceConfig::builder()
        .preset(Preset::ProductionLean)
        .toml_str("[rules.custom_fields]\nenv = \"test\"\n\"service.version\" = \"1.2.3\"\n")
        .build()?;
    let ctx = traced_context(&config)?;
    let cases = [
        ("SELECT * FROM t WHERE v > 10", "FilterExec"),
        (
            "SELECT t.id, u.w FROM t JOIN u ON t.id = u.id",
            "HashJoinExec",
        ),
        ("SELECT name, sum(v) FROM t GROUP BY name", "AggregateExec"),
        ("SELECT * FROM t ORDER BY v DESC", "SortExec"),
        (
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
            "RecursiveQueryExec",
        ),
    ];
    for (sql, expected) in cases {
        let (_, spans) = run(&ctx, sql, &QueryOptions::new()).await?;
        assert_all_under_root(&spans);
        let names = operator_names(&spans);
        assert!(names.iter().any(|n| n == expected), "{sql}: {names:?}");
        if expected != "RecursiveQueryExec" {
            assert!(
                names.iter().any(|n| n == "DataSourceExec"),
                "{sql}: scan span missing: {names:?}"
            );
        }
        for span in spans.iter().filter(|s| has_target(s, EXEC_TARGET)) {
            assert_eq!(
                attribute_string(span, "env").as_deref(),
                Some("test"),
                "{}",
                span.name
            );
            assert_eq!(
                attribute_string(span, "service.version").as_deref(),
                Some("1.2.3")
            );
        }
        let with_rows = spans
            .iter()
            .filter(|s| {
                has_target(s, EXEC_TARGET)
                    && attribute(s, "datafusion.metrics.output_rows").is_some()
            })
            .count();
        assert!(
            with_rows > 0,
            "{sql}: no operator span carries datafusion.metrics.output_rows"
        );
    }

    let no_metrics = DftraceConfig::builder()
        .set("rules.record_metrics", false)
        .build()?;
    let (_, spans) = run(
        &traced_context(&no_metrics)?,
        cases[0].0,
        &QueryOptions::new(),
    )
    .await?;
    assert!(!operator_names(&spans).is_empty());
    assert!(spans.iter().all(|s| {
        !s.attributes
            .iter()
            .any(|kv| kv.key.as_str().starts_with("datafusion.metrics."))
    }));
    Ok(())
}

/// Every node of the plan, as (is wrapped once, is wrapped twice, name).
/// The wrapper types are private; their `Debug` output names them
/// (`datafusion-tracing`'s live `InstrumentedExec` around dftrace's own).
fn wrapping(plan: &Arc<dyn ExecutionPlan>) -> datafusion::error::Result<Vec<(bool, bool, String)>> {
    let mut nodes = Vec::new();
    plan.apply(|node| {
        let debug = format!("{node:?}");
        let inner = debug
            .strip_prefix("InstrumentedExec { inner: ")
            .unwrap_or(&debug);
        let once = inner.starts_with("DftraceExec(operator, ");
        let twice = inner
            .strip_prefix("DftraceExec(operator, ")
            .is_some_and(|rest| {
                rest.starts_with("DftraceExec(") || rest.starts_with("InstrumentedExec")
            });
        nodes.push((once, twice, node.name().to_owned()));
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    Ok(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rule_after_the_extension_leaves_no_hole_and_no_double_wrap() -> TestResult {
    for mode in ["deferred", "live"] {
        host_rule_case(mode).await?;
    }
    Ok(())
}

async fn host_rule_case(mode: &str) -> TestResult {
    let config = DftraceConfig::builder()
        .set("rules.rule_mode", "disabled")
        .set("rules.operator_spans", mode)
        // Live spans record plan text dftrace cannot mask.
        .set("rules.record_literals", mode == "live")
        .build()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        // A host rule that puts a new node on top of the plan.
        .with_physical_optimizer_rule(HostRule::new("HostRule", |plan| {
            Arc::new(CoalescePartitionsExec::new(plan))
        }))
        .build_dftrace()?;
    let names = rule_names(&state);
    // Last but for the rule that closes the physical optimizer's phase.
    assert_eq!(names.iter().rev().nth(1), Some(&"Instrument"), "{names:?}");
    assert_eq!(names.last(), Some(&"dftrace_physical_end"), "{names:?}");
    let ctx = SessionContext::new_with_state(state);
    tables(&ctx)?;

    let sql = "SELECT t.name, count(*) FROM t JOIN u ON t.id = u.id WHERE t.v > 3 GROUP BY t.name";
    span_capture();
    let query = run_sql(&ctx, sql, &QueryOptions::new()).await?;
    let nodes = wrapping(&query.plan)?;
    let (trace_id, ended) = (query.trace_id.clone(), query.ended());
    drop(query);
    let spans = span_capture().ended_trace(ended, &trace_id).await;
    let operators = operator_names(&spans);
    for (once, twice, name) in &nodes {
        assert!(once, "{mode}: hole: `{name}` is not instrumented");
        assert!(!twice, "{mode}: `{name}` is wrapped twice");
        assert!(
            operators.contains(name),
            "{mode}: `{name}` produced no span: {operators:?}"
        );
    }
    assert!(
        nodes
            .iter()
            .any(|(_, _, name)| name == "CoalescePartitionsExec"),
        "the host rule ran"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_never_cross() -> TestResult {
    let config = DftraceConfig::builder()
        .preset(Preset::MaximalNoData)
        .build()?;
    let ctx = Arc::new(traced_context(&config)?);
    span_capture();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let ctx = Arc::clone(&ctx);
            tokio::spawn(async move {
                let sql = format!("SELECT t.name, sum(u.id) FROM t JOIN u ON t.id = u.id WHERE t.id > {i} GROUP BY t.name");
                let query = run_sql(&ctx, &sql, &QueryOptions::new().run_id(format!("run-{i}"))).await?;
                let (trace_id, ended) = (query.trace_id.clone(), query.ended());
                drop(query);
                Ok::<_, datafusion::error::DataFusionError>((i, trace_id, ended))
            })
        })
        .collect();
    let mut traces = BTreeSet::new();
    for task in tasks {
        let (i, trace_id, ended) = task.await??;
        let spans = span_capture().ended_trace(ended, &trace_id).await;
        assert_eq!(
            attribute_string(root(&spans), "dftrace.run_id"),
            Some(format!("run-{i}"))
        );
        assert!(
            operator_names(&spans).len() >= 4,
            "query {i}: {:?}",
            operator_names(&spans)
        );
        assert_all_under_root(&spans);
        traces.insert(trace_id);
    }
    assert_eq!(traces.len(), 16, "each query has its own trace");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_becomes_the_root_parent_and_bad_ones_are_errors() -> TestResult {
    let ctx = traced_context(&DftraceConfig::builder().build()?)?;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, spans) = run(
        &ctx,
        "SELECT count(*) FROM t",
        &QueryOptions::new().traceparent(traceparent),
    )
    .await?;
    let root = root(&spans);
    assert_eq!(
        root.span_context.trace_id().to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(root.parent_span_id.to_string(), "00f067aa0ba902b7");
    assert!(root.parent_span_is_remote);

    let bad_parent = QueryOptions::new().traceparent("00-abc-01");
    let error = error_text(run_sql(&ctx, "SELECT 1", &bad_parent).await);
    assert_contains_all(&error, &["invalid traceparent `00-abc-01`"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_span_carries_identity_outcome_and_no_literals() -> TestResult {
    let ctx = traced_context(&DftraceConfig::builder().build()?)?;
    let sql = "SELECT name FROM t WHERE name <> 'canary-literal' AND id < 93";
    let options = QueryOptions::new().attribute("tenant", "acme");
    let (batches, spans) = run(&ctx, sql, &options).await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let root_span = root(&spans);
    assert_eq!(
        attribute(root_span, "dftrace.rows"),
        Some(&opentelemetry::Value::I64(rows as i64))
    );
    assert_eq!(
        attribute_string(root_span, "tenant").as_deref(),
        Some("acme")
    );
    assert_eq!(
        attribute_string(root_span, "dftrace.sql.fingerprint"),
        Some(dftrace_rules::sql_fingerprint(sql))
    );
    assert!(attribute_string(root_span, "dftrace.run_id").is_some_and(|id| id.len() == 36));
    assert_eq!(root_span.status, Status::Ok);
    // The root span's identity attributes never carry the SQL or its literals.
    assert!(attribute(root_span, "db.query.text").is_none());
    for kv in &root_span.attributes {
        let opentelemetry::Value::String(value) = &kv.value else {
            continue;
        };
        let value = value.as_str();
        assert!(
            !value.contains("canary-literal") && value != "93",
            "literal leaked: {}={value}",
            kv.key
        );
    }

    let opted_in = traced_context(
        &DftraceConfig::builder()
            .set("rules.record_sql", true)
            .build()?,
    )?;
    let (_, spans) = run(&opted_in, sql, &QueryOptions::new()).await?;
    assert_eq!(
        attribute_string(root(&spans), "db.query.text").as_deref(),
        Some(sql)
    );

    span_capture();
    let failing = run_sql(
        &ctx,
        "SELECT missing_column FROM t",
        &QueryOptions::new().run_id("failing"),
    )
    .await;
    assert!(failing.is_err());
    // The root may close after `run_sql` returns (a query's end is told off
    // its path): wait for it.
    let failing_root = || {
        span_capture()
            .trace_spans_named(QUERY_SPAN_NAME)
            .into_iter()
            .find(|s| attribute_string(s, "dftrace.run_id").as_deref() == Some("failing"))
    };
    let arrived = tokio::task::spawn_blocking(move || {
        dftrace_tests::wait::poll_until(dftrace_tests::capture::TRACE_DEADLINE, || {
            failing_root().is_some()
        })
    })
    .await?;
    assert!(arrived, "the failing query's root span is exported");
    let failed_root = failing_root().expect("the failing query's root span is exported");
    assert_error_status(&failed_root, "missing_column");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_identical_with_and_without_instrumentation() -> TestResult {
    let plain = SessionContext::new();
    tables(&plain)?;
    let traced = traced_context(
        &DftraceConfig::builder()
            .preset(Preset::MaximalNoData)
            .build()?,
    )?;
    for sql in [
        "SELECT * FROM t WHERE v > 10 ORDER BY id",
        "SELECT t.id, u.w FROM t JOIN u ON t.id = u.id ORDER BY t.id",
        "SELECT name, sum(v), count(*) FROM t GROUP BY name ORDER BY name",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r ORDER BY n",
    ] {
        let expected = pretty_format_batches(&plain.sql(sql).await?.collect().await?)?.to_string();
        let (batches, _) = run(&traced, sql, &QueryOptions::new()).await?;
        assert_eq!(
            pretty_format_batches(&batches)?.to_string(),
            expected,
            "{sql}"
        );
    }
    Ok(())
}
