//! The preview formatters the exec rule hands its operators: Arrow's plain
//! table for hosts that allowed unredacted previews, and a guard that turns
//! a formatter's failure or panic into [`PREVIEW_FAILED`].

use datafusion::arrow::record_batch::RecordBatch;
use dftrace_registry::{ColumnSources, PreviewFormatter};
use std::sync::Arc;

/// What a preview shows when its formatter fails or panics. The failure's
/// own message is left out: it could quote the values being formatted.
pub const PREVIEW_FAILED: &str = "<preview unavailable: the formatter failed>";

/// Arrow's plain table, for hosts that allowed unredacted previews.
pub(crate) fn plain_table() -> PreviewFormatter {
    let plain = |batch: &RecordBatch| {
        datafusion::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(batch))
            .map(|table| table.to_string())
    };
    PreviewFormatter {
        by_name: Arc::new(plain),
        by_sources: Arc::new(move |batch: &RecordBatch, _: &[ColumnSources]| plain(batch)),
    }
}

/// `preview` such that a failure or a panic becomes [`PREVIEW_FAILED`]
/// instead of a missing attribute or a panicked query.
pub(crate) fn guarded(preview: PreviewFormatter) -> PreviewFormatter {
    let PreviewFormatter {
        by_name,
        by_sources,
    } = preview;
    let failed = |text: std::thread::Result<datafusion::arrow::error::Result<String>>| match text {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(_)) | Err(_) => Ok(PREVIEW_FAILED.to_owned()),
    };
    PreviewFormatter {
        by_name: Arc::new(move |batch| {
            failed(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || by_name(batch),
            )))
        }),
        by_sources: Arc::new(move |batch, sources| {
            failed(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                || by_sources(batch, sources),
            )))
        }),
    }
}
