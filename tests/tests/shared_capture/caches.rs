//! dftrace-caches end to end: a parquet table scanned twice; the second
//! query finds the file metadata the first one put in DataFusion's cache,
//! and the counts agree with the cache's own.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_caches::{ATTRIBUTE_PREFIX, FILE_METADATA};
// Linked for its plugin: the metrics summary's totals are checked.
use dftrace_metrics_summary as _;
use dftrace_registry::{DftraceConfig, QUERY_SPAN_NAME};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::{attribute, span_capture};
use dftrace_tests::dftrace_context;
use dftrace_tests::rows::canonical_rows;
use dftrace_tests::tpch::{Table, write_tables};
use opentelemetry::Value;

fn int(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Value::I64(v)) => *v,
        other => panic!("{key} on the root: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_scan_hits_the_metadata_the_first_one_cached() {
    let dir = std::env::temp_dir().join(format!("dftrace-caches-{}", std::process::id()));
    let creates = write_tables(&dir, 0.01, &[Table::Lineitem]);
    let capture = span_capture();
    let ctx = dftrace_context(&DftraceConfig::builder().build().unwrap());
    let plain = datafusion::prelude::SessionContext::new();
    let sql = "SELECT l_returnflag, count(*) FROM lineitem GROUP BY l_returnflag";
    for create in &creates {
        plain.sql(create).await.unwrap().collect().await.unwrap();
    }
    let expected = canonical_rows(&plain.sql(sql).await.unwrap().collect().await.unwrap());

    // The CREATE (which reads the footers to infer the schema), then the
    // same scan twice: (hits, misses, entries held, bytes held) of each.
    let key = |what: &str| format!("{ATTRIBUTE_PREFIX}{FILE_METADATA}.{what}");
    let mut seen = Vec::new();
    for statement in [creates[0].as_str(), sql, sql] {
        let query = run_sql(&ctx, statement, &QueryOptions::new())
            .await
            .unwrap();
        if statement == sql {
            assert_eq!(
                canonical_rows(&query.batches),
                expected,
                "results unchanged"
            );
        }
        let spans = capture.ended_trace(query.ended(), &query.trace_id).await;
        let root = spans.iter().find(|s| s.name == QUERY_SPAN_NAME).unwrap();
        if statement == sql {
            // The metrics summary's totals are the sums over every cache.
            for what in ["hits", "misses"] {
                let suffix = format!(".{what}");
                let per_cache: i64 = root
                    .attributes
                    .iter()
                    .filter(|kv| {
                        kv.key.as_str().starts_with(ATTRIBUTE_PREFIX)
                            && kv.key.as_str().ends_with(&suffix)
                    })
                    .map(|kv| int(root, kv.key.as_str()))
                    .sum();
                assert_eq!(
                    int(root, &format!("dftrace.metrics.cache_{what}")),
                    per_cache,
                    "{what}"
                );
            }
        }
        seen.push((
            int(root, &key("hits")),
            int(root, &key("misses")),
            int(root, &key("entries")),
            int(root, &key("bytes")),
        ));
    }
    let (create_hits, create_misses, create_entries, _) = seen[0];
    assert!(
        create_misses > 0,
        "the CREATE reads the footers first: {seen:?}"
    );
    assert!(create_entries > 0, "and caches them: {seen:?}");
    for (hits, misses, ..) in &seen[1..] {
        assert!(*hits > 0, "each scan finds them: {seen:?}");
        assert_eq!(*misses, 0, "{seen:?}");
    }

    // The cache's own count of hits per entry agrees with the three
    // statements' (nothing else ran on this session).
    let cache = ctx.runtime_env().cache_manager.get_file_metadata_cache();
    let entries = cache.list_entries();
    let cache_hits: usize = entries.values().map(|entry| entry.hits).sum();
    let counted: i64 = create_hits + seen[1].0 + seen[2].0;
    assert_eq!(cache_hits as i64, counted, "{seen:?}");
    assert_eq!(entries.len() as i64, seen[2].2);
    let bytes: usize = entries.values().map(|entry| entry.size_bytes).sum();
    assert_eq!(bytes as i64, seen[2].3);
    std::fs::remove_dir_all(&dir).unwrap();
}
