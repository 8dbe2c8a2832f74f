//! docs/metrics.md is a contract: a workload with every component on (the
//! metrics summary, the history's operator metrics, a host function that
//! succeeds and one that fails, the caches, the memory pool with a limit
//! and a refusal, a failing statement) exports exactly the instruments its
//! table lists, each with the kind and unit it says, through the host's
//! meter provider.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use dftrace_caches as _;
use dftrace_history as _;
use dftrace_memory as _;
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
use dftrace_tests::functions::{add_scalar_functions, double, explode};
use dftrace_tests::tpch::{Table, write_tables};
use dftrace_tests::workspace_root;
use dftrace_udf as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use std::collections::BTreeMap;
use std::sync::Arc;

/// (kind, unit) by instrument name, as docs/metrics.md's table says.
fn documented() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("docs/metrics.md")).unwrap();
    let table = text
        .split("<!-- BEGIN INSTRUMENTS -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- END INSTRUMENTS -->").next())
        .expect("docs/metrics.md has its instrument table between the markers");
    table
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |cell: &str| cell.trim_matches('`').to_owned();
            let unit = if cells[3] == "—" {
                String::new()
            } else {
                unquote(cells[3])
            };
            (unquote(cells[1]), (cells[2].to_owned(), unit))
        })
        .collect()
}

fn session(pool: Arc<dyn MemoryPool>) -> SessionContext {
    let config = DftraceConfig::builder()
        .preset(Preset::MaximalNoData)
        .set("history.enabled", true)
        .set("history.operator_metrics", true)
        .set("memory.enabled", true)
        .build()
        .unwrap();
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(pool)
        .build_arc()
        .unwrap();
    let mut builder = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(1))
        .with_runtime_env(runtime)
        .with_default_features();
    add_scalar_functions(&mut builder, [double(), explode()]);
    let state = builder
        .with_dftrace(&config)
        .and_then(|builder| builder.build_dftrace())
        .unwrap();
    SessionContext::new_with_state(state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_instrument_is_exported_as_documented() {
    // The host's meter provider, before any query ends.
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    // The host's subscriber: per-query figures live in the root span.
    let _capture = dftrace_tests::capture::span_capture();

    let dir = std::env::temp_dir().join(format!("dftrace-metrics-ref-{}", std::process::id()));
    let creates = write_tables(&dir, 0.01, &[Table::Orders]);
    let roomy = session(Arc::new(GreedyMemoryPool::new(1 << 30)));
    let tight = session(Arc::new(GreedyMemoryPool::new(64 * 1024)));
    for ctx in [&roomy, &tight] {
        for create in &creates {
            ctx.sql(create).await.unwrap().collect().await.unwrap();
        }
    }
    let ok = [
        // Twice: the second scan finds the footer the first one cached.
        "SELECT o_orderpriority, count(*) FROM orders GROUP BY 1 ORDER BY 1",
        "SELECT o_orderpriority, count(*) FROM orders GROUP BY 1 ORDER BY 1",
        "SELECT sum(double(o_orderkey)) FROM orders",
    ];
    for sql in ok {
        roomy.sql(sql).await.unwrap().collect().await.unwrap();
    }
    let failing = [
        (&roomy, "SELECT explode(o_orderkey) FROM orders"),
        (&roomy, "SELECT * FROM no_such_table"),
        (
            &tight,
            "SELECT count(*) FROM orders a JOIN orders b ON a.o_comment = b.o_comment",
        ),
    ];
    for (ctx, sql) in failing {
        let failed = match ctx.sql(sql).await {
            Ok(df) => df.collect().await.is_err(),
            Err(_) => true,
        };
        assert!(failed, "`{sql}` fails as planned");
    }
    // The ends are told off the queries' path.
    let flushed = tokio::task::spawn_blocking(|| {
        dftrace_registry::flush_pending_work(std::time::Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(flushed);
    provider.force_flush().unwrap();

    let mut exported: BTreeMap<String, (String, String)> = BTreeMap::new();
    for resource in exporter.get_finished_metrics().unwrap() {
        for scope in resource.scope_metrics() {
            for metric in scope.metrics() {
                let kind = match metric.data() {
                    AggregatedMetrics::F64(MetricData::Histogram(_))
                    | AggregatedMetrics::U64(MetricData::Histogram(_)) => "histogram",
                    AggregatedMetrics::U64(MetricData::Sum(_))
                    | AggregatedMetrics::F64(MetricData::Sum(_)) => "counter",
                    AggregatedMetrics::U64(MetricData::Gauge(_))
                    | AggregatedMetrics::F64(MetricData::Gauge(_))
                    | AggregatedMetrics::I64(MetricData::Gauge(_)) => "gauge",
                    other => panic!("{}: {other:?}", metric.name()),
                };
                exported.insert(
                    metric.name().to_owned(),
                    (kind.to_owned(), metric.unit().to_owned()),
                );
            }
        }
    }
    // The sessions (and their pools, which the gauges read) lived until now.
    drop((roomy, tight));
    let documented = documented();
    assert!(documented.len() >= 19, "the table is read: {documented:?}");
    assert_eq!(
        exported, documented,
        "docs/metrics.md lists exactly what is exported (name, kind, unit)"
    );
    let _ = std::fs::remove_dir_all(dir);
}
