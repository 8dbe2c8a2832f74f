//! TPC-H under dftrace: all 22 queries return the same rows with and
//! without each preset (and with live operator spans), and 32 concurrent
//! traced queries keep their spans apart — each trace has one root, and
//! every span of it descends from that root — with no deadlock and no
//! panic, with deferred and with live operator spans.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_preview_redaction as _;
use dftrace_registry::{DftraceConfig, Preset, QUERY_SPAN_NAME};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::span_capture;
use dftrace_tests::dftrace_context;
use dftrace_tests::rows::canonical_rows;
use dftrace_tests::tpch::{QUERIES, Table};
use opentelemetry::trace::SpanId;
use std::collections::HashMap;
use std::path::Path;

const SCALE: f64 = 0.01;

async fn register(ctx: &SessionContext, dir: &Path) {
    for table in Table::ALL {
        ctx.register_parquet(
            table.name(),
            dir.join(format!("{}.parquet", table.name()))
                .display()
                .to_string(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
}

async fn context(preset: Option<Preset>, operator_spans: &str, dir: &Path) -> SessionContext {
    let ctx = match preset {
        None => SessionContext::new(),
        Some(preset) => {
            let config = DftraceConfig::builder()
                .preset(preset)
                .set("rules.operator_spans", operator_spans)
                // Live spans record plan text dftrace cannot mask.
                .set("rules.record_literals", operator_spans == "live")
                .build()
                .unwrap();
            dftrace_context(&config)
        }
    };
    register(&ctx, dir).await;
    ctx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_results_are_identical_under_every_preset_and_concurrent_traces_stay_apart() {
    let capture = span_capture();
    let dir = std::env::temp_dir().join(format!("dftrace-tpch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for table in Table::ALL {
        table
            .write_parquet(SCALE, &dir.join(format!("{}.parquet", table.name())))
            .unwrap();
    }

    let baseline = context(None, "deferred", &dir).await;
    let mut expected = Vec::new();
    for sql in QUERIES {
        let batches = baseline.sql(sql).await.unwrap().collect().await.unwrap();
        expected.push(canonical_rows(&batches).unwrap());
    }
    assert!(
        expected.iter().filter(|rows| !rows.is_empty()).count() >= 20,
        "the queries return rows at scale {SCALE}"
    );
    let configurations = Preset::ALL
        .map(|preset| (preset, "deferred"))
        .into_iter()
        .chain([(Preset::Maximal, "live")]);
    for (preset, operator_spans) in configurations {
        let ctx = context(Some(preset), operator_spans, &dir).await;
        for (i, sql) in QUERIES.iter().enumerate() {
            let query = run_sql(&ctx, sql, &QueryOptions::new()).await.unwrap();
            assert_eq!(
                canonical_rows(&query.batches).unwrap(),
                expected[i],
                "Q{} under {preset}, {operator_spans} operator spans",
                i + 1
            );
        }
    }

    // 32 queries at once, all traced with every span kind: twice with
    // deferred operator spans, once with live ones.
    for operator_spans in ["deferred", "deferred", "live"] {
        let ctx = context(Some(Preset::Maximal), operator_spans, &dir).await;
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let q = i % QUERIES.len();
                    (q, run_sql(&ctx, QUERIES[q], &QueryOptions::new()).await)
                })
            })
            .collect();
        for task in tasks {
            let (q, result) = task.await.expect("no panic");
            let query = result.unwrap();
            assert_eq!(
                canonical_rows(&query.batches).unwrap(),
                expected[q],
                "Q{} ({operator_spans})",
                q + 1
            );
            // The executed plan holds the operator spans (and so the root)
            // open: drop it before reading the finished trace.
            let (trace_id, ended) = (query.trace_id.clone(), query.ended());
            drop(query);
            let spans = capture.ended_trace(ended, &trace_id).await;
            let roots: Vec<_> = spans.iter().filter(|s| s.name == QUERY_SPAN_NAME).collect();
            assert_eq!(
                roots.len(),
                1,
                "Q{}: one root per trace; {} spans: {:?}",
                q + 1,
                spans.len(),
                spans.iter().map(|s| s.name.to_string()).collect::<Vec<_>>()
            );
            let root = roots[0].span_context.span_id();
            let parents: HashMap<SpanId, SpanId> = spans
                .iter()
                .map(|s| (s.span_context.span_id(), s.parent_span_id))
                .collect();
            for span in &spans {
                let mut current = span.span_context.span_id();
                let mut hops = 0;
                while current != root {
                    current = *parents.get(&current).unwrap_or_else(|| {
                        panic!("Q{}: span `{}` is outside its query", q + 1, span.name)
                    });
                    hops += 1;
                    assert!(hops < 1000, "a parent cycle");
                }
            }
            assert!(
                spans.iter().any(|s| s.name.ends_with("Exec")),
                "Q{}: operator spans",
                q + 1
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
