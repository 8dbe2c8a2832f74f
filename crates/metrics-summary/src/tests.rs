use super::*;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use std::sync::Arc;
use std::time::Duration;

fn sample() -> QueryMetricsSummary {
    QueryMetricsSummary {
        schema_version: SCHEMA_VERSION,
        output_rows: Some(4),
        output_batches: Some(1),
        output_bytes: Some(512),
        elapsed_compute_ns: Some(123_456),
        spill_count: Some(0),
        spilled_bytes: Some(0),
        spilled_rows: Some(0),
        filter_selectivity: Some(0.25),
        bytes_scanned: Some(4096),
        files_opened: Some(2),
        operator_count: 2,
        storage_bytes_read: Some(5000),
        storage_bytes_written: None,
        operators: vec![
            OperatorSummary {
                name: "FilterExec".into(),
                depth: 0,
                partitions: 1,
                output_rows: Some(4),
                elapsed_compute_ns: Some(100),
            },
            OperatorSummary {
                name: "DataSourceExec".into(),
                depth: 1,
                partitions: 1,
                output_rows: Some(16),
                elapsed_compute_ns: None,
            },
        ],
        functions: vec![FunctionSummary {
            name: "score".into(),
            kind: "scalar".into(),
            calls: 3,
            rows: 16,
            time_ns: 9_000,
            errors: 0,
        }],
        caches: vec![CacheSummary {
            cache: "file_metadata".into(),
            hits: 2,
            misses: 1,
        }],
    }
}

/// The JSON layout is a contract: this snapshot changes only on purpose (and
/// then SCHEMA_VERSION does too).
#[test]
fn summary_json_layout_is_stable_and_round_trips() {
    let summary = sample();
    let json = serde_json::to_string_pretty(&summary).unwrap();
    insta::assert_snapshot!("summary_layout_v2", json);
    let back: QueryMetricsSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(back, summary);
    // Absent figures stay absent.
    assert!(!json.contains("storage_bytes_written"));
}

#[test]
fn attributes_are_typed() {
    let attributes = attributes(&sample());
    let get = |key: &str| {
        attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(
        get("dftrace.metrics.output_rows"),
        Some(opentelemetry::Value::I64(4))
    );
    assert_eq!(
        get("dftrace.metrics.filter_selectivity"),
        Some(opentelemetry::Value::F64(0.25))
    );
    assert_eq!(get("dftrace.metrics.storage_bytes_written"), None);
}

#[test]
fn instruments_export_with_names_units_and_values() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let instruments = QueryInstruments::new(&provider.meter("dftrace"));
    instruments.record(
        Duration::from_millis(250),
        QueryOutcome::Ok,
        Some(&sample()),
    );
    instruments.record(Duration::from_millis(750), QueryOutcome::Error, None);
    provider.force_flush().unwrap();

    let exported = exporter.get_finished_metrics().unwrap();
    let metrics: Vec<_> = exported
        .iter()
        .flat_map(|resource| resource.scope_metrics())
        .flat_map(|scope| scope.metrics())
        .collect();
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let sum = |name: &str| match find(name).data() {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => {
            sum.data_points().map(|p| p.value()).sum::<u64>()
        }
        other => panic!("{name}: unexpected data {other:?}"),
    };
    assert_eq!(find("dftrace.query.duration").unit(), "s");
    // Read when the meter collects.
    assert_eq!(find("dftrace.queries.in_flight").unit(), "{query}");
    assert!(
        matches!(
            find("dftrace.queries.in_flight").data(),
            AggregatedMetrics::U64(MetricData::Gauge(_))
        ),
        "an observable gauge"
    );
    match find("dftrace.query.duration").data() {
        AggregatedMetrics::F64(MetricData::Histogram(histogram)) => {
            let points: Vec<_> = histogram.data_points().collect();
            assert_eq!(points.len(), 2, "one point per outcome");
            let total: f64 = points.iter().map(|p| p.sum()).sum();
            assert!((total - 1.0).abs() < 1e-9, "{total}");
            for point in points {
                let keys: Vec<_> = point.attributes().map(|kv| kv.key.to_string()).collect();
                assert_eq!(
                    keys,
                    ["dftrace.query.outcome"],
                    "low-cardinality attributes only"
                );
            }
        }
        other => panic!("duration: {other:?}"),
    }
    assert_eq!(
        (find("dftrace.query.rows").unit(), sum("dftrace.query.rows")),
        ("{row}", 4)
    );
    assert_eq!(
        (
            find("dftrace.query.bytes_scanned").unit(),
            sum("dftrace.query.bytes_scanned")
        ),
        ("By", 4096)
    );
    assert_eq!(sum("dftrace.storage.bytes_read"), 5000);
    assert_eq!(
        (
            find("dftrace.query.errors").unit(),
            sum("dftrace.query.errors")
        ),
        ("{error}", 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sort_under_a_tiny_memory_limit_reports_its_spills() {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(8 * 1024 * 1024, 1.0)
        .build_arc()
        .unwrap();
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(1024)
        .with_sort_spill_reservation_bytes(2 * 1024 * 1024);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    let df = ctx
        .sql("SELECT value AS v, value * 7 % 1000 AS w FROM generate_series(0, 999999) ORDER BY w, v DESC")
        .await
        .unwrap();
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.unwrap();
    let batches = datafusion::physical_plan::collect(Arc::clone(&plan), task)
        .await
        .unwrap();
    assert_eq!(
        batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        1_000_000
    );

    let summary = summarize(&plan);
    assert!(summary.spill_count.unwrap_or(0) > 0, "{summary:#?}");
    assert!(summary.spilled_bytes.unwrap_or(0) > 0, "{summary:#?}");
    assert!(summary.spilled_rows.unwrap_or(0) > 0, "{summary:#?}");
    assert_eq!(summary.output_rows, Some(1_000_000));
    assert_eq!(
        summary
            .operators
            .iter()
            .filter(|o| o.name == "SortExec")
            .count(),
        1
    );
}
