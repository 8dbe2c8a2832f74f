//! `dftrace-preview-redaction`: bounded row previews for `datafusion-tracing`
//! operator spans that never show what they must hide.
//!
//! A [`Redactor`] built from a [`PreviewConfig`] masks columns by name
//! (`deny-list` or `allow-list` of case-insensitive globs, nested paths such
//! as `user.email`), by type (strings and binaries become the mask token,
//! other values null, down through structs, lists, maps and dictionaries),
//! and optionally by content (emails, bearer tokens and JWTs, AWS access
//! keys, Luhn-valid card numbers). It formats with `datafusion-tracing`'s
//! compact formatter and caps the bytes of each preview. Any failure gives an
//! error marker, never the raw batch, and never fails the query.
//!
//! ```
//! use datafusion::arrow::array::{Int32Array, StringArray};
//! use datafusion::arrow::datatypes::{DataType, Field, Schema};
//! use datafusion::arrow::record_batch::RecordBatch;
//! use dftrace_preview_redaction::{Policy, PreviewConfig, Redactor};
//! use std::sync::Arc;
//!
//! let schema = Schema::new(vec![
//!     Field::new("id", DataType::Int32, false),
//!     Field::new("password", DataType::Utf8, false),
//! ]);
//! let batch = RecordBatch::try_new(
//!     Arc::new(schema),
//!     vec![Arc::new(Int32Array::from(vec![1])), Arc::new(StringArray::from(vec!["hunter2"]))],
//! )?;
//!
//! // The default deny list masks `password`.
//! let deny = Redactor::new(&PreviewConfig::default())?;
//! let preview = deny.preview(&batch);
//! assert!(preview.contains("***") && !preview.contains("hunter2"));
//!
//! // An allow list shows only what it names.
//! let allow = Redactor::new(&PreviewConfig {
//!     policy: Policy::AllowList,
//!     allow: vec!["id".into()],
//!     ..PreviewConfig::default()
//! })?;
//! assert!(!allow.preview(&batch).contains("hunter2"));
//!
//! // `none` shows everything: an explicit choice in config.
//! let none = Redactor::new(&PreviewConfig { policy: Policy::None, ..PreviewConfig::default() })?;
//! assert!(none.preview(&batch).contains("hunter2"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With the default `registry` feature the crate registers the `preview`
//! plugin: the rules plugin then formats every operator preview through it.
//!
//! # Feature flags
//!
//! - `registry` (default): register the `preview` plugin with
//!   `dftrace-registry`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod detect;
mod mask;
mod policy;

pub use config::{DEFAULT_DENY, DEFAULT_MASK, Detectors, NameMatching, Policy, PreviewConfig};

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use dftrace_registry::{ColumnSources, PreviewFn, PreviewFormatter};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// What a preview shows when redaction or formatting fails.
pub const ERROR_MARKER: &str = "[preview unavailable: redaction failed]";

/// The smallest accepted `max_bytes`: room for the truncation marker.
pub const MIN_MAX_BYTES: usize = 128;

/// A config the redactor cannot run with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreviewError {
    /// A bound is out of range.
    #[error("invalid value {value} for preview.{field}: expected {expected}")]
    Bound {
        /// The field.
        field: &'static str,
        /// Its value.
        value: usize,
        /// The accepted range.
        expected: String,
    },
    /// The mask token is empty.
    #[error("invalid value \"\" for preview.mask: expected a non-empty token")]
    EmptyMask,
    /// A detector pattern failed to compile (a bug, reported rather than
    /// panicking).
    #[error("preview detector failed to compile: {0}")]
    Detector(#[from] regex::Error),
}

/// The compiled redaction policy plus bounds.
#[derive(Debug)]
pub struct Redactor {
    masker: mask::Masker,
    max_width: usize,
    max_row_height: usize,
    min_compacted_col_width: usize,
    max_bytes: usize,
}

impl Redactor {
    /// Compiles `config`; fails on out-of-range bounds.
    pub fn new(config: &PreviewConfig) -> Result<Self, PreviewError> {
        if config.max_bytes < MIN_MAX_BYTES {
            return Err(PreviewError::Bound {
                field: "max_bytes",
                value: config.max_bytes,
                expected: format!("at least {MIN_MAX_BYTES}"),
            });
        }
        if config.mask.is_empty() {
            return Err(PreviewError::EmptyMask);
        }
        Ok(Redactor {
            masker: mask::Masker {
                policy: policy::ColumnPolicy::new(config),
                detectors: detect::ValueDetectors::new(&config.detectors)?,
                mask: config.mask.clone(),
            },
            max_width: config.max_width,
            max_row_height: config.max_row_height,
            min_compacted_col_width: config.min_compacted_col_width,
            max_bytes: config.max_bytes,
        })
    }

    /// The batch with masked values replaced; names and types are kept and
    /// every field becomes nullable.
    pub fn redact(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        self.masker.redact_batch(batch, None)
    }

    /// Like [`Redactor::redact`], also masking whole each column whose
    /// `sources` (one per column) include a denied field, a literal of the
    /// query, or a derivation dftrace does not follow ([`ColumnSources`]).
    pub fn redact_with_sources(
        &self,
        batch: &RecordBatch,
        sources: &[ColumnSources],
    ) -> Result<RecordBatch, ArrowError> {
        self.masker.redact_batch(batch, Some(sources))
    }

    /// The bounded, redacted preview of `batch`, masking by column names.
    /// Never fails and never shows the unredacted batch: any error or panic
    /// gives [`ERROR_MARKER`].
    pub fn preview(&self, batch: &RecordBatch) -> String {
        self.bounded(batch, None)
    }

    /// Like [`Redactor::preview`], masking by column names and by where
    /// each column comes from (`sources`, one per column).
    pub fn preview_with_sources(&self, batch: &RecordBatch, sources: &[ColumnSources]) -> String {
        self.bounded(batch, Some(sources))
    }

    fn bounded(&self, batch: &RecordBatch, sources: Option<&[ColumnSources]>) -> String {
        let formatted = catch_unwind(AssertUnwindSafe(|| {
            let redacted = self.masker.redact_batch(batch, sources)?;
            datafusion_tracing::pretty_format_compact_batch(
                &redacted,
                self.max_width,
                self.max_row_height,
                self.min_compacted_col_width,
            )
            .map(|table| table.to_string())
        }));
        match formatted {
            Ok(Ok(text)) => cap_bytes(text, self.max_bytes),
            Ok(Err(_)) | Err(_) => ERROR_MARKER.to_owned(),
        }
    }
}

/// `text` cut to at most `max_bytes` bytes on a character boundary, with a
/// visible marker when cut.
fn cap_bytes(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let marker = format!(
        "\n… [preview truncated to {max_bytes} of {} bytes]",
        text.len()
    );
    let mut keep = max_bytes.saturating_sub(marker.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    text.truncate(keep);
    text.push_str(&marker);
    text
}

/// A `datafusion-tracing` preview function that redacts and bounds with
/// `config` (the standalone entry point; the registry plugin uses it too).
pub fn preview_fn(config: &PreviewConfig) -> Result<Arc<PreviewFn>, PreviewError> {
    let redactor = Redactor::new(config)?;
    Ok(Arc::new(move |batch: &RecordBatch| {
        Ok(redactor.preview(batch))
    }))
}

/// Both formatters the rules plugin uses, redacting and bounding with
/// `config`: by column names (live operator spans) and by column sources
/// (operator spans built from the executed plan).
pub fn preview_formatter(config: &PreviewConfig) -> Result<PreviewFormatter, PreviewError> {
    let redactor = Arc::new(Redactor::new(config)?);
    let by_name = Arc::clone(&redactor);
    Ok(PreviewFormatter {
        by_name: Arc::new(move |batch: &RecordBatch| Ok(by_name.preview(batch))),
        by_sources: Arc::new(move |batch: &RecordBatch, sources: &[ColumnSources]| {
            Ok(redactor.preview_with_sources(batch, sources))
        }),
    })
}

#[cfg(feature = "registry")]
mod plugin {
    use crate::{PreviewConfig, preview_formatter};
    use datafusion::execution::SessionStateBuilder;
    use dftrace_registry::{Plugin, PluginContext, Stage};
    use std::sync::Arc;

    fn on_builder(
        builder: SessionStateBuilder,
        context: &mut PluginContext<'_>,
    ) -> datafusion::error::Result<SessionStateBuilder> {
        let config: PreviewConfig = context.section()?;
        let formatter = preview_formatter(&config)
            .map_err(|error| datafusion::error::DataFusionError::External(Box::new(error)))?;
        context.services().insert(Arc::new(formatter));
        Ok(builder)
    }

    dftrace_registry::inventory::submit! {
        Plugin::new::<PreviewConfig>(Stage::Services).on_builder(on_builder)
    }
}

#[cfg(test)]
mod tests;
