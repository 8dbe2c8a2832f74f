//! Previews end to end: with dftrace-preview-redaction linked (by reference
//! only, as a host would do), the `maximal` preset's operator previews go
//! through the redacting formatter.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

// Link-time registration: this reference is all that makes the `preview`
// plugin register itself.
use dftrace_preview_redaction as _;

use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace_registry::{DftraceConfig, Preset, SessionStateBuilderExt, linked_plugins};
use dftrace_rules::{EXEC_TARGET, QueryOptions, run_sql};
use dftrace_tests::capture::{attribute_string, has_target, span_capture};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_previews_show_the_mask_never_the_password()
-> Result<(), Box<dyn std::error::Error>> {
    let names: Vec<_> = linked_plugins().iter().map(|p| p.name()).collect();
    assert_eq!(
        names,
        ["preview", "rules"],
        "sorted by stage: services before instrumentation"
    );

    let config = DftraceConfig::builder().preset(Preset::Maximal).build()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let ctx = SessionContext::new_with_state(state);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("login", DataType::Utf8, false),
        Field::new("password", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..20)),
            Arc::new(StringArray::from_iter_values(
                (0..20).map(|i| format!("user{i}")),
            )),
            Arc::new(StringArray::from_iter_values(
                (0..20).map(|i| format!("pw-{i}-hunter2")),
            )),
        ],
    )?;
    ctx.register_table(
        "accounts",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]])?),
    )?;

    span_capture();
    let query = run_sql(
        &ctx,
        "SELECT id, login, password FROM accounts WHERE id % 2 = 0",
        &QueryOptions::new(),
    )
    .await?;
    assert_eq!(
        query
            .batches
            .iter()
            .map(RecordBatch::num_rows)
            .sum::<usize>(),
        10
    );
    assert!(
        datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?
            .to_string()
            .contains("pw-0-hunter2"),
        "query results are untouched by redaction"
    );
    let trace_id = query.trace_id.clone();
    drop(query);

    let spans = span_capture().settled_trace(&trace_id);
    let previews: Vec<String> = spans
        .iter()
        .filter(|s| has_target(s, EXEC_TARGET))
        .filter_map(|s| attribute_string(s, "datafusion.preview"))
        .collect();
    assert!(
        !previews.is_empty(),
        "maximal records previews on operator spans"
    );
    for preview in &previews {
        assert!(preview.contains("***"), "{preview}");
        assert!(!preview.contains("hunter2"), "password leaked: {preview}");
        assert!(
            preview.contains("user0") || preview.contains("user"),
            "{preview}"
        );
        assert!(
            preview.lines().filter(|l| l.contains("user")).count() <= 5,
            "at most 5 rows: {preview}"
        );
    }
    Ok(())
}
