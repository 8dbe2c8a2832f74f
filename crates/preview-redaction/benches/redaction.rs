//! The cost of the redacting formatter against plain
//! `datafusion_tracing::pretty_format_compact_batch` on the same batch: the
//! price of redaction per operator preview.
//!
//! Run: `cargo bench -p dftrace-preview-redaction --bench redaction`
//!
//! Both formatters run on the same 5-row batch (what `maximal` keeps per
//! operator) in interleaved rounds inside one process; the report is the
//! median per-round ratio with the spread of the middle half.

// A benchmark binary: a failed setup should stop it loudly.
#![allow(clippy::expect_used)]

use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::record_batch::RecordBatch;
use dftrace_preview_redaction::{PreviewConfig, Redactor};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const ROUNDS: usize = 41;
const CALLS_PER_ROUND: usize = 400;

fn sample_batch() -> RecordBatch {
    let rows = 5;
    let address = StructArray::from(vec![
        (
            Arc::new(Field::new("city", DataType::Utf8, false)),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("city-{i}")),
            )) as ArrayRef,
        ),
        (
            Arc::new(Field::new("email", DataType::Utf8, false)),
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("u{i}@example.com")),
            )) as ArrayRef,
        ),
    ]);
    RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("name-{i}")),
            )) as ArrayRef,
        ),
        (
            "password",
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|i| format!("pw-{i}")),
            )) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values(
                (0..rows).map(|i| i as f64 * 1.25),
            )) as ArrayRef,
        ),
        ("address", Arc::new(address) as ArrayRef),
    ])
    .expect("a valid batch")
}

fn time(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        f();
    }
    start.elapsed().as_secs_f64() / CALLS_PER_ROUND as f64
}

fn main() {
    let batch = sample_batch();
    let config = PreviewConfig::default();
    let redactor = Redactor::new(&config).expect("default config is valid");
    let plain = || {
        let table = datafusion_tracing::pretty_format_compact_batch(
            black_box(&batch),
            config.max_width,
            config.max_row_height,
            config.min_compacted_col_width,
        )
        .expect("formats");
        black_box(table.to_string());
    };
    let redacting = || {
        black_box(redactor.preview(black_box(&batch)));
    };
    // Warm up both.
    time(plain);
    time(redacting);

    let mut ratios = Vec::with_capacity(ROUNDS);
    let mut plain_times = Vec::with_capacity(ROUNDS);
    let mut redacting_times = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // Alternate which goes first so drift does not favour one side.
        let (p, r) = if round % 2 == 0 {
            let p = time(plain);
            (p, time(redacting))
        } else {
            let r = time(redacting);
            (time(plain), r)
        };
        plain_times.push(p);
        redacting_times.push(r);
        ratios.push(r / p);
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let ratios = sorted(ratios);
    let (plain_times, redacting_times) = (sorted(plain_times), sorted(redacting_times));
    let median = |v: &[f64]| v[v.len() / 2];
    println!(
        "redacting formatter vs pretty_format_compact_batch, 5-row batch, {ROUNDS} rounds x {CALLS_PER_ROUND} calls"
    );
    println!(
        "  plain:     median {:.1} us per preview",
        median(&plain_times) * 1e6
    );
    println!(
        "  redacting: median {:.1} us per preview",
        median(&redacting_times) * 1e6
    );
    println!(
        "  ratio:     median {:.3} (middle half {:.3}-{:.3})",
        median(&ratios),
        ratios[ROUNDS / 4],
        ratios[ROUNDS * 3 / 4]
    );
}
