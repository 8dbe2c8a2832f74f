//! dftrace-preview-redaction on its own: the same batch previewed under the
//! default deny list, an allow list, and with value detectors on.
//!
//! `cargo run -p dftrace-examples --example preview_redaction`

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::record_batch::RecordBatch;
use dftrace_preview_redaction::{Policy, PreviewConfig, Redactor};
use std::sync::Arc;

fn customers() -> Result<RecordBatch, Box<dyn std::error::Error>> {
    let contact = StructArray::from(vec![
        (
            Arc::new(Field::new("city", DataType::Utf8, false)),
            Arc::new(StringArray::from(vec!["Lyon", "Porto"])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("email", DataType::Utf8, false)),
            Arc::new(StringArray::from(vec![
                "ana@example.com",
                "rui@example.org",
            ])) as ArrayRef,
        ),
    ]);
    Ok(RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        (
            "password",
            Arc::new(StringArray::from(vec!["hunter2", "correct-horse"])) as ArrayRef,
        ),
        (
            "note",
            Arc::new(StringArray::from(vec!["card 4111 1111 1111 1111", "ok"])) as ArrayRef,
        ),
        ("contact", Arc::new(contact) as ArrayRef),
    ])?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let batch = customers()?;

    // Default: deny-list; `password` matches the default deny patterns.
    let deny = Redactor::new(&PreviewConfig::default())?.preview(&batch);
    println!("deny-list (default):\n{deny}\n");
    assert!(!deny.contains("hunter2") && deny.contains("***"));

    // Allow-list: only `id` and the nested `contact.city` are shown.
    let allow = PreviewConfig {
        policy: Policy::AllowList,
        allow: vec!["id".into(), "contact.city".into()],
        ..PreviewConfig::default()
    };
    let allowed = Redactor::new(&allow)?.preview(&batch);
    println!("allow-list [id, contact.city]:\n{allowed}\n");
    assert!(allowed.contains("Lyon") && !allowed.contains("ana@example.com"));

    // Detectors mask values by content, whatever the column is called.
    let mut detect = PreviewConfig::default();
    detect.detectors.email = true;
    detect.detectors.card_number = true;
    let detected = Redactor::new(&detect)?.preview(&batch);
    println!("deny-list + email and card detectors:\n{detected}");
    assert!(!detected.contains("4111") && !detected.contains("rui@example.org"));
    Ok(())
}
