//! A row-preview formatter that fails — returns an error, or panics — never
//! fails the query and never leaks what it was formatting: the operator's
//! `datafusion.preview` says the preview is unavailable, and the rows are
//! right. (This binary links a deliberately faulty formatter instead of
//! dftrace-preview-redaction.)

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use dftrace_registry::{
    DftraceConfig, Plugin, PluginContext, Preset, PreviewFormatter, Section, Stage,
};
use dftrace_rules::{PREVIEW_FAILED, QueryOptions, run_sql};
use dftrace_tests::capture::{operator_previews, span_capture};
use dftrace_tests::dftrace_context;
use dftrace_tests::rows::{batch_of, ints, register_batches, texts};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const SECRET: &str = "s3cr3t-value";

#[derive(Debug, Serialize, Deserialize)]
struct FaultyPreview {}

impl Section for FaultyPreview {
    const NAME: &'static str = "faulty_preview";
    fn for_preset(_: Preset) -> Self {
        FaultyPreview {}
    }
}

/// Errors (quoting the data, as a careless formatter might) — or panics when
/// a column is named `boom`.
fn faulty(batch: &RecordBatch) -> Result<String, ArrowError> {
    if batch.schema().fields().iter().any(|f| f.name() == "boom") {
        panic!("formatter bug");
    }
    Err(ArrowError::ComputeError(format!("cannot format {SECRET}")))
}

fn install(
    builder: SessionStateBuilder,
    context: &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionStateBuilder> {
    context.services().insert(Arc::new(PreviewFormatter {
        by_name: Arc::new(faulty),
        by_sources: Arc::new(|batch, _| faulty(batch)),
    }));
    Ok(builder)
}

dftrace_registry::inventory::submit! {
    Plugin::new::<FaultyPreview>(Stage::Services).on_builder(install)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_panicking_formatters_leave_queries_and_secrets_alone() {
    let capture = span_capture();
    let config = DftraceConfig::builder()
        .preset(Preset::Maximal)
        .build()
        .unwrap();
    let ctx = dftrace_context(&config);
    let batch = batch_of([("id", ints([1, 2, 3])), ("note", texts([SECRET; 3]))]).unwrap();
    register_batches(&ctx, "t", vec![batch]).unwrap();

    for sql in [
        "SELECT id, note FROM t WHERE id > 1 ORDER BY id",
        "SELECT id AS boom, note FROM t WHERE id > 1 ORDER BY id",
    ] {
        let query = run_sql(&ctx, sql, &QueryOptions::new()).await.unwrap();
        let rows: usize = query.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2, "{sql}: the rows are right");
        let (trace_id, ended) = (query.trace_id.clone(), query.ended());
        drop(query);
        let spans = capture.ended_trace(ended, &trace_id).await;
        let previews = operator_previews(&spans);
        assert!(!previews.is_empty(), "{sql}: operators recorded a preview");
        assert!(
            previews.iter().all(|p| p == PREVIEW_FAILED),
            "{sql}: {previews:?}"
        );
        for span in &spans {
            for kv in &span.attributes {
                assert!(
                    !kv.value.as_str().contains(SECRET),
                    "{sql}: `{}` on `{}` leaks the value",
                    kv.key,
                    span.name
                );
            }
        }
    }
}
