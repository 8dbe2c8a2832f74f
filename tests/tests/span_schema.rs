//! The span schema is a contract: a representative workload under every
//! preset must produce exactly the spans and attribute keys/types listed in
//! `docs/span-schema.json`, and `docs/span-schema.md` must be its rendering.
//!
//! `cargo xtask schema --update` runs this test with `DFTRACE_UPDATE_DOCS=1`
//! to accept deliberate changes (new entries are marked TODO until
//! documented, which fails the test again).

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::prelude::SessionContext;
use dftrace_caches as _;
use dftrace_memory as _;
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_preview_redaction as _;
use dftrace_registry::{DftraceConfig, Preset, QUERY_SPAN_NAME};
use dftrace_rules::{QueryOptions, QuerySpan, run_sql};
use dftrace_tests::capture::span_capture_filtered;
use dftrace_tests::dftrace_context;
use dftrace_tests::functions::{map_values, unary_function};
use dftrace_tests::moto::MotoServer;
use dftrace_tests::rows::{batch_of, floats, ints, register_batches, register_join_partner, texts};
use dftrace_tests::span_schema::{Observation, SpanSchema, render_markdown};
use dftrace_tests::tpch::Table;
use dftrace_tests::workspace_root;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use opentelemetry_sdk::trace::SpanData;
use tracing::Instrument;

use dftrace_tests::TestResult;

/// The workload: every operator family hosts alert on, local and remote
/// storage, and a failure.
const QUERIES: &[(&str, &str)] = &[
    ("scan", "SELECT * FROM t"),
    ("filter", "SELECT id, name FROM t WHERE v > 40"),
    ("hash join", "SELECT t.id, u.w FROM t JOIN u ON t.id = u.id"),
    (
        "aggregate",
        "SELECT name, count(*), sum(v) FROM t GROUP BY name",
    ),
    ("sort", "SELECT * FROM t ORDER BY v DESC"),
    ("limit", "SELECT id FROM t LIMIT 3"),
    ("top-k", "SELECT id FROM t ORDER BY v LIMIT 3"),
    ("union", "SELECT id FROM t UNION ALL SELECT id FROM u"),
    (
        "recursive CTE",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) \
         SELECT sum(n) FROM r",
    ),
    (
        "file:// parquet",
        "SELECT o_orderpriority, count(*) FROM orders WHERE o_totalprice > 1000 GROUP BY 1",
    ),
    (
        "s3:// create",
        "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION 's3://tpch/lineitem/'",
    ),
    (
        "s3:// parquet",
        "SELECT l_returnflag, sum(l_quantity) FROM lineitem GROUP BY l_returnflag",
    ),
    // `double` is registered after the session is built, and so wrapped by
    // hand (`dftrace_udf::observe_scalar`).
    ("host function", "SELECT id, double(v) FROM t WHERE v > 40"),
    ("failure", "SELECT * FROM no_such_table"),
];

/// The query the workload stops reading after its first batch.
const CANCELLED: &str = "SELECT * FROM t";

/// A configuration: its name in the schema's `runs`, a preset, and
/// settings on top.
type Run = (&'static str, Preset, Vec<(&'static str, serde_json::Value)>);

/// The configurations, named as in the schema's `runs`.
fn runs() -> Vec<Run> {
    vec![
        ("production-lean", Preset::ProductionLean, vec![]),
        ("maximal-no-data", Preset::MaximalNoData, vec![]),
        ("maximal", Preset::Maximal, vec![]),
        (
            "maximal+record_sql",
            Preset::Maximal,
            vec![("rules.record_sql", true.into())],
        ),
        (
            // Under a pool with a limit (see `produce_spans`).
            "maximal+memory",
            Preset::Maximal,
            vec![("memory.enabled", true.into())],
        ),
        (
            "live",
            Preset::Maximal,
            vec![
                ("rules.operator_spans", "live".into()),
                // Live spans record plan text dftrace cannot mask.
                ("rules.record_literals", true.into()),
            ],
        ),
    ]
}

/// Table `t(id, name, password, v)`: 100 rows in two partitions; its join
/// partner `u`; and the host function `double`.
fn memory_tables(ctx: &SessionContext) -> datafusion::error::Result<()> {
    let part = |ids: std::ops::Range<i64>| {
        batch_of([
            ("id", ints(ids.clone())),
            ("name", texts(ids.clone().map(|i| format!("n{}", i % 5)))),
            ("password", texts(ids.clone().map(|i| format!("hunter{i}")))),
            ("v", floats(ids.map(|i| i as f64))),
        ])
    };
    register_batches(ctx, "t", vec![part(0..50)?, part(50..100)?])?;
    register_join_partner(ctx, (0..100).step_by(4), (0..25).map(|i| format!("w{i}")))?;
    // `double(v)` over the DOUBLE column.
    let double = unary_function("double", DataType::Float64, |args| {
        map_values::<Float64Type>(args, |v| v * 2.0)
    });
    ctx.register_udf(dftrace_udf::observe_scalar(&double));
    Ok(())
}

/// Runs the workload under every configuration; returns each run's spans.
async fn produce_spans() -> Vec<(String, Vec<SpanData>)> {
    // What a host exports with the bootstrap's default filter.
    let capture = span_capture_filtered("info");
    let moto = MotoServer::start();
    moto.create_bucket("tpch");
    let mut upload = object_store::aws::AmazonS3Builder::new().with_bucket_name("tpch");
    for (key, value) in moto.s3_options() {
        upload = upload.with_config(key.parse().unwrap(), value);
    }
    upload
        .build()
        .unwrap()
        .put(
            &Path::from("lineitem/part-0.parquet"),
            Table::Lineitem.parquet(0.01).into(),
        )
        .await
        .unwrap();
    let local = std::env::temp_dir().join(format!("dftrace-schema-{}", std::process::id()));
    let orders = dftrace_tests::tpch::write_tables(&local, 0.01, &[Table::Orders]);

    let mut produced = Vec::new();
    for (run_index, (run, preset, settings)) in runs().into_iter().enumerate() {
        let mut config = DftraceConfig::builder()
            .preset(preset)
            .set("object_store.auto_build", true);
        for (key, value) in moto.s3_options() {
            config = config.set(format!("object_store.options.s3.{key}"), value);
        }
        for (path, value) in settings {
            config = config.set(path, value);
        }
        let config = config.build().unwrap();
        let ctx = if run == "maximal+memory" {
            // A limit, so the root's limit and fraction show.
            use dftrace_registry::RegistryStateBuilderExt;
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_limit(1 << 30, 1.0)
                .build_arc()
                .unwrap();
            let state = datafusion::execution::SessionStateBuilder::new()
                .with_default_features()
                .with_runtime_env(runtime)
                .with_dftrace(&config)
                .and_then(|builder| builder.build_dftrace())
                .unwrap();
            SessionContext::new_with_state(state)
        } else {
            dftrace_context(&config)
        };
        memory_tables(&ctx).unwrap();
        for statement in &orders {
            ctx.sql(statement).await.unwrap().collect().await.unwrap();
        }

        let mut spans = Vec::new();
        for (query_index, (label, sql)) in QUERIES.iter().enumerate() {
            let trace_id = format!(
                "{:016x}{:016x}",
                0xd57a_ce00_u64 + run_index as u64,
                query_index + 1
            );
            let options =
                QueryOptions::new().traceparent(format!("00-{trace_id}-00f067aa0ba902b7-01"));
            let trace = match run_sql(&ctx, sql, &options).await {
                Ok(query) => {
                    assert_ne!(*label, "failure", "{run}: `{label}` succeeded");
                    let ended = query.ended();
                    drop(query);
                    capture.ended_trace(ended, &trace_id).await
                }
                Err(error) => {
                    assert_eq!(*label, "failure", "{run}: `{label}` failed: {error}");
                    capture.trace_with_root(&trace_id).await
                }
            };
            let roots = trace.iter().filter(|s| s.name == QUERY_SPAN_NAME).count();
            assert_eq!(roots, 1, "{run}: `{label}` has one root query span");
            spans.extend(trace);
        }
        // A query the host stops reading: its root ends as cancelled.
        let trace_id = format!(
            "{:016x}{:016x}",
            0xd57a_ce00_u64 + run_index as u64,
            QUERIES.len() + 1
        );
        let options = QueryOptions::new().traceparent(format!("00-{trace_id}-00f067aa0ba902b7-01"));
        let query = QuerySpan::start(ctx.state().config(), Some(CANCELLED), &options).unwrap();
        let ended = query.ended();
        async {
            let mut stream = ctx
                .sql(CANCELLED)
                .await
                .unwrap()
                .execute_stream()
                .await
                .unwrap();
            stream.next().await.unwrap().unwrap();
        }
        .instrument(query.span().clone())
        .await;
        drop(query);
        spans.extend(capture.ended_trace(ended, &trace_id).await);
        produced.push((run.to_owned(), spans));
    }
    let _ = std::fs::remove_dir_all(local);
    produced
}

fn observe(schema: &SpanSchema, produced: &[(String, Vec<SpanData>)]) -> Observation {
    let mut observation = Observation::default();
    for (run, spans) in produced {
        observation.record(schema, run, spans);
    }
    observation
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_match_the_documented_schema() -> TestResult {
    let json_path = workspace_root().join("docs/span-schema.json");
    let md_path = workspace_root().join("docs/span-schema.md");
    let mut schema = SpanSchema::from_json(&std::fs::read_to_string(&json_path)?)?;
    let run_names: Vec<String> = runs().iter().map(|(name, ..)| (*name).to_owned()).collect();
    assert_eq!(
        schema.runs, run_names,
        "the schema's runs are this test's runs"
    );

    let produced = produce_spans().await;
    let observation = observe(&schema, &produced);

    if std::env::var_os("DFTRACE_UPDATE_DOCS").is_some() {
        // Twice: the second pass sets `required_in` of entries the first added.
        schema = observation.update(&schema);
        schema = observe(&schema, &produced).update(&schema);
        std::fs::write(&json_path, schema.to_json())?;
        std::fs::write(&md_path, render_markdown(&schema))?;
        println!("updated {} and {}", json_path.display(), md_path.display());
    }

    let drift = observe(&schema, &produced).diff(&schema);
    assert!(
        drift.is_empty(),
        "span schema drift against docs/span-schema.json:\n{}\n\nIf the change is deliberate, run \
         `cargo xtask schema --update`, document the new entries and bump `version` when a key was \
         renamed or removed.",
        drift.join("\n")
    );
    let undocumented = schema.undocumented();
    assert!(
        undocumented.is_empty(),
        "document these in docs/span-schema.json (then `cargo xtask schema --update`):\n{}",
        undocumented.join("\n")
    );
    assert!(
        std::fs::read_to_string(&md_path).unwrap_or_default() == render_markdown(&schema),
        "docs/span-schema.md is not the rendering of docs/span-schema.json: run `cargo xtask \
         schema --update`"
    );

    // The check can fail: rename one documented key and the same spans drift.
    let mut renamed = schema.clone();
    let query = renamed
        .kinds
        .iter_mut()
        .find(|kind| kind.kind == "query")
        .expect("a query kind");
    let run_id = query
        .attributes
        .iter_mut()
        .find(|spec| spec.key == "dftrace.run_id")
        .expect("dftrace.run_id is documented");
    run_id.key = "dftrace.run_identifier".to_owned();
    let drift = observe(&renamed, &produced).diff(&renamed);
    assert!(
        drift
            .iter()
            .any(|line| line.starts_with("+ attribute `dftrace.run_id` (string) on `query` spans")),
        "{drift:#?}"
    );
    assert!(
        drift
            .iter()
            .any(|line| line.starts_with("- attribute `dftrace.run_identifier` is required")),
        "{drift:#?}"
    );
    Ok(())
}
