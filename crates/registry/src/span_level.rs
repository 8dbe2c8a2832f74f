//! The level of the spans dftrace creates.

use serde::{Deserialize, Serialize};

/// A span level for spans dftrace creates, shared by the sections that
/// choose one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanLevel {
    /// `TRACE`
    Trace,
    /// `DEBUG`
    Debug,
    /// `INFO`
    #[default]
    Info,
    /// `WARN`
    Warn,
    /// `ERROR`
    Error,
}
