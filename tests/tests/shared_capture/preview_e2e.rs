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
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::record_batch::RecordBatch;
use dftrace_registry::{DftraceConfig, Preset, linked_plugins};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::capture::{operator_previews, span_capture};
use dftrace_tests::dftrace_context;
use dftrace_tests::rows::{batch_of, ints, register_batches, texts};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximal_previews_show_the_mask_never_the_password()
-> Result<(), Box<dyn std::error::Error>> {
    let names: Vec<_> = linked_plugins().iter().map(|p| p.name()).collect();
    let position = |name: &str| names.iter().position(|n| *n == name);
    assert!(
        position("preview") < position("rules") && position("preview").is_some(),
        "sorted by stage, services before instrumentation: {names:?}"
    );

    let config = DftraceConfig::builder().preset(Preset::Maximal).build()?;
    let ctx = dftrace_context(&config);
    let accounts = batch_of([
        ("id", ints(0..20)),
        ("login", texts((0..20).map(|i| format!("user{i}")))),
        (
            "password",
            texts((0..20).map(|i| format!("pw-{i}-hunter2"))),
        ),
    ])?;
    register_batches(&ctx, "accounts", vec![accounts])?;

    span_capture();
    let sql = "SELECT id, login, password FROM accounts WHERE id % 2 = 0";
    let query = run_sql(&ctx, sql, &QueryOptions::new()).await?;
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
    let (trace_id, ended) = (query.trace_id.clone(), query.ended());
    drop(query);

    let spans = span_capture().ended_trace(ended, &trace_id).await;
    let previews = operator_previews(&spans);
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

/// Exotic column types with secret names, through a whole query under
/// `maximal`: dictionaries, large and view strings, fixed and large
/// binaries, maps and lists of structs. The query is untouched and no
/// secret value reaches any span attribute, in any form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotic_types_never_leak_through_previews() -> Result<(), Box<dyn std::error::Error>> {
    use datafusion::arrow::array::{
        ArrayRef, DictionaryArray, FixedSizeBinaryArray, LargeBinaryArray, LargeStringArray,
        ListArray, MapBuilder, StringBuilder, StringViewArray, StructArray,
    };
    use datafusion::arrow::datatypes::Int32Type;

    let config = DftraceConfig::builder().preset(Preset::Maximal).build()?;
    let ctx = dftrace_context(&config);

    let rows = 4;
    let secret = |kind: &str, i: usize| format!("topsecret-{kind}-{i}");
    let mut map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for i in 0..rows {
        map.keys().append_value("api_key");
        map.values().append_value(secret("map", i));
        map.keys().append_value("colour");
        map.values().append_value("blue");
        map.append(true)?;
    }
    let credentials = StructArray::from(vec![(
        Arc::new(Field::new("token", DataType::Utf8, false)),
        Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| secret("struct", i)),
        )) as ArrayRef,
    )]);
    let list = ListArray::try_new(
        Arc::new(Field::new(
            "item",
            datafusion::arrow::array::Array::data_type(&credentials).clone(),
            true,
        )),
        datafusion::arrow::buffer::OffsetBuffer::from_lengths(vec![1; rows]),
        Arc::new(credentials),
        None,
    )?;
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
        ),
        (
            "password_dict",
            Arc::new(
                (0..rows)
                    .map(|i| secret("dict", i))
                    .map(Some)
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|s| s.as_deref())
                    .collect::<DictionaryArray<Int32Type>>(),
            ) as ArrayRef,
        ),
        (
            "secret_large",
            Arc::new(LargeStringArray::from_iter_values(
                (0..rows).map(|i| secret("large", i)),
            )) as ArrayRef,
        ),
        (
            "session_token",
            Arc::new(StringViewArray::from_iter_values(
                (0..rows).map(|i| secret("view", i)),
            )) as ArrayRef,
        ),
        (
            "private_key",
            Arc::new(FixedSizeBinaryArray::try_from_iter(
                (0..rows).map(|i| format!("topsecret-fixed{i}")),
            )?) as ArrayRef,
        ),
        (
            "api_key_blob",
            Arc::new(LargeBinaryArray::from_iter_values(
                (0..rows).map(|i| secret("blob", i).into_bytes()),
            )) as ArrayRef,
        ),
        ("settings", Arc::new(map.finish()) as ArrayRef),
        ("logins", Arc::new(list) as ArrayRef),
    ])?;
    register_batches(&ctx, "vault", vec![batch])?;

    span_capture();
    let query = run_sql(
        &ctx,
        "SELECT * FROM vault WHERE id < 3",
        &QueryOptions::new(),
    )
    .await?;
    let shown = datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?.to_string();
    assert!(shown.contains("topsecret-dict-0"), "results untouched");
    let (trace_id, ended) = (query.trace_id.clone(), query.ended());
    drop(query);

    let spans = span_capture().ended_trace(ended, &trace_id).await;
    let previews = operator_previews(&spans);
    assert!(!previews.is_empty(), "previews were recorded");
    assert!(previews.iter().any(|p| p.contains("***")), "{previews:?}");
    // "topsecret" in text, and as the hex a binary column would show.
    let hex: String = "topsecret".bytes().map(|b| format!("{b:02x}")).collect();
    for span in &spans {
        for kv in &span.attributes {
            let value = kv.value.as_str();
            assert!(
                !value.contains("topsecret") && !value.contains(&hex),
                "`{}` on `{}` leaks: {value}",
                kv.key,
                span.name
            );
        }
    }
    Ok(())
}
