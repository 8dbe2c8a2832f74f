//! dftrace-object-store-registry end to end: storage spans under their query
//! for a real S3 endpoint (moto), `file://` and `memory://`; errors pass
//! through unchanged; stores are wrapped exactly once.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use datafusion::prelude::SessionContext;
use dftrace_object_store_registry::{ObjectStoreConfig, instrument_registry, query_storage_totals};
use dftrace_registry::{DftraceConfig, RegistryStateBuilderExt};
use dftrace_rules::{QueryOptions, QuerySpan, run_sql};
use dftrace_tests::capture::{
    assert_error_status, assert_under_root, attribute_string, span_capture, span_named,
};
use dftrace_tests::moto::MotoServer;
use dftrace_tests::tpch::Table;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::SpanData;
use std::collections::BTreeSet;
use std::sync::Arc;
use tracing::Instrument;
use url::Url;

use dftrace_tests::{TestResult, assert_contains_all, error_text};

fn context(
    config: DftraceConfig,
) -> Result<SessionContext, Box<dyn std::error::Error + Send + Sync>> {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    Ok(SessionContext::new_with_state(state))
}

/// Storage spans of a trace (their names start with the scheme prefix).
fn storage_spans<'a>(spans: &'a [SpanData], prefix: &str) -> Vec<&'a SpanData> {
    spans
        .iter()
        .filter(|s| s.name.starts_with(&format!("{prefix}.")))
        .collect()
}

/// Runs `sql` under a root query span; returns the trace's spans and the
/// query's storage totals (read while the root span is still open).
async fn traced(
    ctx: &SessionContext,
    sql: &str,
) -> Result<
    (Vec<SpanData>, dftrace_object_store_registry::StorageTotals),
    Box<dyn std::error::Error + Send + Sync>,
> {
    span_capture();
    let query = QuerySpan::start(&ctx.copied_config(), Some(sql), &QueryOptions::new())?;
    let batches = async { ctx.sql(sql).await?.collect().await }
        .instrument(query.span().clone())
        .await?;
    query.record_success(batches.iter().map(|b| b.num_rows()).sum(), None);
    let totals = query_storage_totals(query.span()).unwrap_or_default();
    let (trace_id, ended) = (query.trace_id(), query.ended());
    drop(query);
    Ok((span_capture().ended_trace(ended, &trace_id).await, totals))
}

/// DataFusion's default object store registry, instrumented under `config`.
fn instrumented_registry(config: &ObjectStoreConfig) -> Arc<dyn ObjectStoreRegistry> {
    instrument_registry(Arc::new(DefaultObjectStoreRegistry::new()), config)
}

/// An instrumented registry (default config) with a fresh in-memory store
/// registered at `url`.
struct MemoryStore {
    registry: Arc<dyn ObjectStoreRegistry>,
    url: Url,
    /// The store as registered, not instrumented.
    raw: Arc<dyn ObjectStore>,
}

impl MemoryStore {
    fn registered(url: &str) -> Result<MemoryStore, url::ParseError> {
        let url = Url::parse(url)?;
        let registry = instrumented_registry(&ObjectStoreConfig::default());
        let raw: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        registry.register_store(&url, Arc::clone(&raw));
        Ok(MemoryStore { registry, url, raw })
    }
}

/// A root query span with no SQL, for store requests made outside a query.
fn request_span() -> Result<QuerySpan, dftrace_rules::RulesError> {
    QuerySpan::start(
        &datafusion::prelude::SessionConfig::new(),
        None,
        &QueryOptions::new(),
    )
}

/// A fresh temporary folder `name` whose `nation/` holds the TPC-H
/// `nation` table as one parquet file.
fn nation_dir(name: &str) -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dftrace-os-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("nation"))?;
    std::fs::write(
        dir.join("nation/part-0.parquet"),
        Table::Nation.parquet(0.01),
    )?;
    Ok(dir)
}

fn names(spans: &[&SpanData]) -> BTreeSet<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_requests_are_spans_under_their_query() -> TestResult {
    let moto = MotoServer::start();
    moto.create_bucket("tpch");
    let mut upload = object_store::aws::AmazonS3Builder::new().with_bucket_name("tpch");
    for (key, value) in moto.s3_options() {
        upload = upload.with_config(key.parse()?, value);
    }
    let upload = upload.build()?;
    upload
        .put(
            &Path::from("lineitem/part-0.parquet"),
            Table::Lineitem.parquet(0.01).into(),
        )
        .await?;

    let mut config = DftraceConfig::builder()
        .set("object_store.auto_build", true)
        .set("rules.rule_mode", "disabled");
    for (key, value) in moto.s3_options() {
        config = config.set(format!("object_store.options.s3.{key}"), value);
    }
    let ctx = context(config.build()?)?;

    let (create, _) = traced(
        &ctx,
        "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION 's3://tpch/lineitem/'",
    )
    .await?;
    let create_storage = storage_spans(&create, "s3");
    assert!(
        names(&create_storage)
            .iter()
            .any(|n| n.starts_with("s3.list")),
        "{:?}",
        names(&create_storage)
    );
    assert_under_root(&create, &create_storage);

    let sql = "SELECT l_returnflag, count(*), sum(l_quantity) FROM lineitem GROUP BY l_returnflag";
    let (select, totals) = traced(&ctx, sql).await?;
    let storage = storage_spans(&select, "s3");
    let operations = names(&storage);
    assert!(
        operations.contains("s3.get_ranges") || operations.contains("s3.get_opts"),
        "reads appear: {operations:?}"
    );
    assert_under_root(&select, &storage);
    for span in &storage {
        let location = attribute_string(span, "object_store.location").unwrap_or_default();
        if !span.name.starts_with("s3.list") {
            assert!(
                location.contains("lineitem/part-0.parquet"),
                "{}: {location}",
                span.name
            );
        }
    }
    assert!(
        storage.iter().any(
            |s| attribute_string(s, "object_store.result.content_length").is_some()
                || attribute_string(s, "object_store.result.range").is_some()
        ),
        "sizes are recorded"
    );
    assert!(totals.bytes_read > 0 && totals.requests > 0, "{totals:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_memory_requests_are_spans_under_their_query() -> TestResult {
    let dir = nation_dir("test")?;

    let ctx = context(
        DftraceConfig::builder()
            .set("rules.rule_mode", "disabled")
            .build()?,
    )?;
    let memory = Arc::new(InMemory::new());
    memory
        .put(
            &Path::from("orders/part-0.parquet"),
            Table::Orders.parquet(0.01).into(),
        )
        .await?;
    // Registered after the session was built: the host's late registration is wrapped too.
    ctx.register_object_store(&Url::parse("memory://")?, memory);

    let location = format!("file://{}/nation/", dir.display());
    traced(
        &ctx,
        &format!("CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION '{location}'"),
    )
    .await?;
    traced(
        &ctx,
        "CREATE EXTERNAL TABLE orders STORED AS PARQUET LOCATION 'memory:///orders/'",
    )
    .await?;

    for (sql, prefix) in [
        ("SELECT n_name FROM nation WHERE n_regionkey = 1", "file"),
        (
            "SELECT o_orderstatus, count(*) FROM orders GROUP BY o_orderstatus",
            "memory",
        ),
    ] {
        let (spans, totals) = traced(&ctx, sql).await?;
        let storage = storage_spans(&spans, prefix);
        assert!(
            !storage.is_empty(),
            "{prefix}: no storage spans in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        assert_under_root(&spans, &storage);
        assert!(totals.bytes_read > 0, "{prefix}: {totals:?}");
        // One wrapper per store: no storage span has a storage span parent.
        let ids: std::collections::HashSet<SpanId> =
            storage.iter().map(|s| s.span_context.span_id()).collect();
        assert!(
            storage.iter().all(|s| !ids.contains(&s.parent_span_id)),
            "{prefix}: doubled spans"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_the_same_not_found_and_its_span_an_error() -> TestResult {
    span_capture();
    let MemoryStore { registry, url, raw } = MemoryStore::registered("memory://")?;
    let wrapped = registry.get_store(&url)?;

    let missing = Path::from("no/such/object");
    let plain_error = raw.get(&missing).await.expect_err("missing");
    let query = request_span()?;
    let traced_error = wrapped
        .get(&missing)
        .instrument(query.span().clone())
        .await
        .expect_err("missing");
    assert!(
        matches!(traced_error, object_store::Error::NotFound { .. }),
        "{traced_error:?}"
    );
    assert_eq!(traced_error.to_string(), plain_error.to_string());
    let (trace_id, ended) = (query.trace_id(), query.ended());
    drop(query);

    let spans = span_capture().ended_trace(ended, &trace_id).await;
    assert_error_status(span_named(&spans, "memory.get_opts"), "no/such/object");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_twice_never_double_wraps() -> TestResult {
    span_capture();
    let MemoryStore { registry, url, raw } = MemoryStore::registered("memory://twice")?;
    raw.put(&Path::from("a"), "x".into()).await?;
    // The same store registered a second time.
    registry.register_store(&url, Arc::clone(&raw));
    let first = registry.get_store(&url)?;
    // A host re-registering the store it got back gets the same wrapper.
    registry.register_store(&url, Arc::clone(&first));
    let second = registry.get_store(&url)?;
    assert!(Arc::ptr_eq(&first, &second));

    let query = request_span()?;
    second
        .head(&Path::from("a"))
        .instrument(query.span().clone())
        .await?;
    let (trace_id, ended) = (query.trace_id(), query.ended());
    drop(query);
    let spans = span_capture().ended_trace(ended, &trace_id).await;
    assert_eq!(
        storage_spans(&spans, "memory").len(),
        1,
        "one span per request"
    );
    Ok(())
}

#[test]
fn unsupported_and_disabled_schemes_fail_fast() -> TestResult {
    let registry = instrumented_registry(&ObjectStoreConfig::default());
    let error = error_text(registry.get_store(&Url::parse("ftp://files.example/data.parquet")?));
    insta::assert_snapshot!(error, @"External error: object store scheme `ftp` (in `ftp://files.example/data.parquet`) is not supported; enabled schemes: file, memory, s3, s3a, gs, gcs, az, abfs, abfss, azure, http, https (configure them in object_store.schemes; supported: file, memory, s3, s3a, gs, gcs, az, abfs, abfss, azure, http, https)");

    let file_only = ObjectStoreConfig {
        schemes: vec!["file".into()],
        ..ObjectStoreConfig::default()
    };
    let registry = instrumented_registry(&file_only);
    let error = error_text(registry.get_store(&Url::parse("memory://")?));
    assert_contains_all(
        &error,
        &["scheme `memory`", "not enabled; enabled schemes: file"],
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sql_over_file_parquet_returns_the_same_rows() -> TestResult {
    let dir = nation_dir("rows")?;
    let create = format!(
        "CREATE EXTERNAL TABLE nation STORED AS PARQUET LOCATION 'file://{}/nation/'",
        dir.display()
    );
    let sql = "SELECT n_name FROM nation ORDER BY n_name";
    let plain = SessionContext::new();
    plain.sql(&create).await?;
    let expected = plain.sql(sql).await?.collect().await?;
    let ctx = context(DftraceConfig::builder().build()?)?;
    ctx.sql(&create).await?;
    let traced = run_sql(&ctx, sql, &QueryOptions::new()).await?;
    assert_eq!(
        datafusion::arrow::util::pretty::pretty_format_batches(&traced.batches)?.to_string(),
        datafusion::arrow::util::pretty::pretty_format_batches(&expected)?.to_string()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
