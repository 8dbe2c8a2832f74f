//! Errors of the rules crate.

/// A problem setting up instrumentation or a traced query.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// Previews were asked for without a redacting formatter.
    #[error(
        "rules.preview_limit is {limit}, but no preview formatter is available: enable the \
         `dftrace` crate's `preview` feature (or depend on dftrace-preview-redaction and \
         reference it: `use dftrace_preview_redaction as _;`), pass a preview function in code, or set rules.allow_unredacted_preview = true; \
         set rules.preview_limit = 0 to turn previews off"
    )]
    UnredactedPreview {
        /// The configured preview limit.
        limit: usize,
    },

    /// Live operator spans exist while the query runs, so they cannot be
    /// chosen by the query's outcome.
    #[error(
        "rules.operator_spans_when is `{when:?}`, but rules.operator_spans is `live`: live \
         spans open while the query runs, before its duration and outcome are known; set \
         rules.operator_spans = \"deferred\" or rules.operator_spans_when = \"always\""
    )]
    LiveSpansAlways {
        /// The configured choice.
        when: crate::config::OperatorSpansWhen,
    },

    /// Live operator spans are `datafusion-tracing`'s: it records each
    /// operator's description, literal values and all, before dftrace can
    /// mask it.
    #[error(
        "rules.operator_spans is `live`, whose operator spans (datafusion-tracing's) record \
         each operator's description with the query's literal values, which dftrace cannot \
         mask before they reach the subscriber; set rules.record_literals = true to accept \
         that, or rules.operator_spans = \"deferred\" (the default, masked)"
    )]
    LiveSpansRecordLiterals,

    /// The installed `tracing` subscriber's filter drops dftrace's spans.
    #[error(
        "the installed tracing subscriber drops dftrace's spans (target `dftrace::query` at \
         {level:?}), so no query would be traced: add `dftrace=trace` to its filter (e.g. \
         RUST_LOG=\"my_service=info,dftrace=trace\"), or put the filter on your log layer \
         only (`fmt::layer().with_filter(EnvFilter::from_default_env())`); see \
         docs/troubleshooting.md, \"No spans appear\""
    )]
    SpansFilteredOut {
        /// The level of dftrace's spans (`rules.span_level`).
        level: dftrace_registry::SpanLevel,
    },

    /// A `traceparent` string that is not a valid W3C trace context.
    #[error(
        "invalid traceparent `{value}`: {reason}; expected the W3C form \
         `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` with non-zero ids"
    )]
    InvalidTraceparent {
        /// The string given.
        value: String,
        /// What was wrong with it.
        reason: &'static str,
    },
}

impl From<RulesError> for datafusion::error::DataFusionError {
    fn from(error: RulesError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}
