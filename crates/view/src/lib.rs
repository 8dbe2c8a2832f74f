//! `dftrace-view`: pictures of one query from a trace file — a flame graph
//! (SVG, drawn by `inferno`; by wall time, or by each operator's own time),
//! a Chrome trace-event timeline (Perfetto or `chrome://tracing` open it) and
//! a self-contained HTML page with the flame graph and a table of the
//! query's operators. `cargo xtask view` runs its binary. A host's
//! production binary never needs it: it reads files the sinks wrote.
//!
//! The input is what the file sink writes: one OTLP `ExportTraceServiceRequest`
//! per line, in the OTLP JSON encoding. Files written by a collector's file
//! exporter in the same encoding read the same way.
//!
//! ```no_run
//! let files = dftrace_view::render_trace_file(
//!     "dftrace-traces/trace-1795258618557-27729.jsonl".as_ref(),
//!     None, // the last query in the file
//!     "target/view".as_ref(),
//! )?;
//! println!("open {}", files.html.display());
//! # Ok::<(), dftrace_view::ViewError>(())
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod chrome;
mod flame;
mod html;
mod trace;

pub use flame::FlameWidth;
pub use trace::{Trace, TraceSpan, read_line, read_trace_file};

use std::path::{Path, PathBuf};

/// Why a trace could not be read or drawn.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The file could not be read.
    #[error("cannot read the trace file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an OTLP-JSON `ExportTraceServiceRequest`.
    #[error(
        "{path}:{line}: not an OTLP-JSON trace export request ({source}); \
         expected one `{{\"resourceSpans\": [...]}}` object per line, as dftrace's file sink writes"
    )]
    Parse {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// The decoding error.
        source: serde_json::Error,
    },
    /// The file holds no spans.
    #[error("{path} holds no spans")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The requested trace id is not in the file.
    #[error("trace {wanted} is not in {path}; it holds: {available}")]
    UnknownTrace {
        /// The file.
        path: PathBuf,
        /// The id asked for.
        wanted: String,
        /// The ids it does hold, comma-separated.
        available: String,
    },
    /// Writing an output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The files [`render_trace_file`] wrote.
#[derive(Debug, Clone)]
pub struct ViewFiles {
    /// The trace they show.
    pub trace_id: String,
    /// The flame graph by wall time, `<trace id>.svg`.
    pub svg: PathBuf,
    /// The flame graph by operator self time, `<trace id>.self-time.svg`.
    pub self_time_svg: PathBuf,
    /// The Chrome trace-event JSON, `<trace id>.trace.json`.
    pub chrome_trace: PathBuf,
    /// The HTML page, `<trace id>.html`.
    pub html: PathBuf,
}

impl Trace {
    /// The flame graph as an SVG document: spans nested as they were (a query's
    /// operators as in its plan), each frame as wide as `width` says, in µs.
    pub fn flame_graph_svg(&self, width: FlameWidth) -> String {
        flame::render(self, width)
    }

    /// The trace as Chrome trace-event JSON: one process per service instance,
    /// one track per thread the spans name (more tracks where spans on one
    /// thread overlap without nesting, as concurrent operators do).
    pub fn chrome_trace_json(&self) -> String {
        chrome::render(self)
    }

    /// A self-contained HTML page: a summary, the flame graph (by wall time,
    /// switchable to operator self time) and a table of operators (self
    /// time, rows, estimated rows, spread over partitions, wall time). No
    /// external assets.
    pub fn html_page(&self) -> String {
        html::render(
            self,
            &self.flame_graph_svg(FlameWidth::Wall),
            &self.flame_graph_svg(FlameWidth::SelfTime),
        )
    }
}

/// Reads `file`, picks the trace `trace_id` (by default the one whose root
/// started last: the last query) and writes its SVG flame graph, Chrome trace
/// and HTML page into `out_dir` (created if missing).
pub fn render_trace_file(
    file: &Path,
    trace_id: Option<&str>,
    out_dir: &Path,
) -> Result<ViewFiles, ViewError> {
    let trace = read_trace_file(file, trace_id)?;
    let write = |name: String, contents: String| -> Result<PathBuf, ViewError> {
        let path = out_dir.join(name);
        std::fs::create_dir_all(out_dir)
            .and_then(|()| std::fs::write(&path, contents))
            .map_err(|source| ViewError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    };
    let svg = trace.flame_graph_svg(FlameWidth::Wall);
    let self_time_svg = trace.flame_graph_svg(FlameWidth::SelfTime);
    let html = html::render(&trace, &svg, &self_time_svg);
    Ok(ViewFiles {
        svg: write(format!("{}.svg", trace.trace_id), svg)?,
        self_time_svg: write(format!("{}.self-time.svg", trace.trace_id), self_time_svg)?,
        chrome_trace: write(
            format!("{}.trace.json", trace.trace_id),
            trace.chrome_trace_json(),
        )?,
        html: write(format!("{}.html", trace.trace_id), html)?,
        trace_id: trace.trace_id,
    })
}

#[cfg(test)]
mod tests;
