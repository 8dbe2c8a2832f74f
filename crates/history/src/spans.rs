//! `dftrace.spans`: OTLP-JSON-lines trace files (what dftrace-bootstrap's
//! file sink writes) as a table, one row per span, read as a stream.

use crate::tables::int_map_type;
use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Builder, MapBuilder, StringBuilder, TimestampNanosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use dftrace_registry::saturating_i64;
use dftrace_view::TraceSpan;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// Spans per batch.
const BATCH_ROWS: usize = 4096;

static SPANS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let timestamp = DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    let text_map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
        .finish()
        .data_type()
        .clone();
    Arc::new(Schema::new(vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("start", timestamp.clone(), false),
        Field::new("end", timestamp, false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("status_message", DataType::Utf8, true),
        Field::new("attributes", text_map, false),
        Field::new("int_attributes", int_map_type(), false),
        Field::new("file", DataType::Utf8, false),
        Field::new("line", DataType::Int64, false),
    ]))
});

/// `dftrace.spans` over the trace files at a path: a directory (its
/// `*.jsonl` files), a file, or a glob. The files are listed at each scan,
/// so files written since are read too.
#[derive(Debug, Clone)]
pub struct SpansTable {
    path: String,
    skipped: Arc<Mutex<Vec<SkippedLine>>>,
}

/// A line of a trace file that is not an OTLP-JSON export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// The file.
    pub file: PathBuf,
    /// The line number, from 1.
    pub line: usize,
    /// What the JSON parser said.
    pub error: String,
}

/// Skipped lines remembered per table, the latest last.
const SKIPPED_KEPT: usize = 100;

impl SpansTable {
    /// The table over `path`.
    pub fn new(path: impl Into<String>) -> Self {
        SpansTable {
            path: path.into(),
            skipped: Arc::default(),
        }
    }

    /// The lines the scans so far skipped (the last 100), each also
    /// reported as a `WARN` event of target `dftrace::history`.
    pub fn skipped_lines(&self) -> Vec<SkippedLine> {
        self.skipped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The files the path names now, sorted. A directory or glob that does
    /// not exist yet names none.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let path = Path::new(&self.path);
        let pattern = if path.is_dir() {
            format!("{}/*.jsonl", self.path.trim_end_matches('/'))
        } else {
            self.path.clone()
        };
        let entries = glob::glob(&pattern).map_err(|error| {
            DataFusionError::Plan(format!(
                "dftrace.spans: `{}` is not a file, directory or glob: {error}",
                self.path
            ))
        })?;
        let mut files: Vec<PathBuf> = entries.filter_map(|entry| entry.ok()).collect();
        files.sort();
        Ok(files)
    }
}

#[async_trait]
impl TableProvider for SpansTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&SPANS_SCHEMA)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions: Vec<Arc<dyn PartitionStream>> = self
            .files()?
            .into_iter()
            .map(|file| {
                Arc::new(TraceFile {
                    file,
                    skipped: Arc::clone(&self.skipped),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&SPANS_SCHEMA),
            partitions,
            projection,
            [],
            false,
            limit,
        )?))
    }
}

/// One trace file: one partition of the scan.
#[derive(Debug)]
struct TraceFile {
    file: PathBuf,
    skipped: Arc<Mutex<Vec<SkippedLine>>>,
}

impl PartitionStream for TraceFile {
    fn schema(&self) -> &SchemaRef {
        &SPANS_SCHEMA
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStream::builder(Arc::clone(&SPANS_SCHEMA), 2);
        let tx = builder.tx();
        let file = self.file.clone();
        let skipped = Arc::clone(&self.skipped);
        builder.spawn_blocking(move || {
            read_file(
                &file,
                |batch| {
                    // A closed channel: the scan was dropped (a LIMIT was met).
                    tx.blocking_send(Ok(batch)).is_ok()
                },
                |line| {
                    let mut skipped = skipped.lock().unwrap_or_else(PoisonError::into_inner);
                    if skipped.len() == SKIPPED_KEPT {
                        skipped.remove(0);
                    }
                    skipped.push(line);
                },
            )
        });
        builder.build()
    }
}

/// Reads `file` line by line, handing `send` a batch every [`BATCH_ROWS`]
/// spans (and one at the end) until it returns `false`. A malformed line is
/// reported (a warning naming the file and the line) and skipped.
fn read_file(
    file: &Path,
    mut send: impl FnMut(RecordBatch) -> bool,
    mut skip: impl FnMut(SkippedLine),
) -> Result<()> {
    let reader = std::fs::File::open(file)
        .map(std::io::BufReader::new)
        .map_err(|error| {
            DataFusionError::Execution(format!(
                "dftrace.spans: cannot open {}: {error}",
                file.display()
            ))
        })?;
    let name = file.display().to_string();
    let mut rows = SpanRows::default();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|error| {
            DataFusionError::Execution(format!(
                "dftrace.spans: cannot read {name} at line {number}: {error}"
            ))
        })?;
        match dftrace_view::read_line(&line) {
            Ok(spans) => {
                for (trace_id, span) in spans {
                    rows.push(&trace_id, &span, &name, number)?;
                }
            }
            Err(error) => {
                tracing::warn!(
                    target: "dftrace::history",
                    file = %name,
                    line = number,
                    %error,
                    "dftrace.spans: skipped a line that is not an OTLP-JSON export request"
                );
                skip(SkippedLine {
                    file: file.to_path_buf(),
                    line: number,
                    error: error.to_string(),
                });
            }
        }
        if rows.len >= BATCH_ROWS && !send(rows.finish()?) {
            return Ok(());
        }
    }
    if rows.len > 0 {
        send(rows.finish()?);
    }
    Ok(())
}

/// The columns of the spans read so far.
#[derive(Default)]
struct SpanRows {
    len: usize,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    parent: StringBuilder,
    name: StringBuilder,
    service: StringBuilder,
    start: TimestampNanosecondBuilder,
    end: TimestampNanosecondBuilder,
    duration: Int64Builder,
    status: StringBuilder,
    message: StringBuilder,
    attributes: Option<MapBuilder<StringBuilder, StringBuilder>>,
    int_attributes: Option<MapBuilder<StringBuilder, Int64Builder>>,
    file: StringBuilder,
    line: Int64Builder,
}

impl SpanRows {
    fn push(&mut self, trace_id: &str, span: &TraceSpan, file: &str, line: usize) -> Result<()> {
        self.len += 1;
        self.trace_id.append_value(trace_id);
        self.span_id.append_value(&span.span_id);
        self.parent.append_option(span.parent_span_id.as_deref());
        self.name.append_value(&span.name);
        self.service.append_value(&span.service);
        self.start.append_value(saturating_i64(span.start_unix_ns));
        self.end.append_value(saturating_i64(span.end_unix_ns));
        self.duration
            .append_value(saturating_i64(span.duration_ns()));
        self.status.append_value(match span.status_code {
            1 => "ok",
            2 => "error",
            _ => "unset",
        });
        self.message.append_option(span.error.as_deref());
        let attributes = self.attributes.get_or_insert_with(|| {
            MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
        });
        for (key, value) in &span.attributes {
            attributes.keys().append_value(key);
            attributes.values().append_value(value);
        }
        attributes.append(true)?;
        let ints = self.int_attributes.get_or_insert_with(|| {
            MapBuilder::new(None, StringBuilder::new(), Int64Builder::new())
        });
        for (key, value) in &span.int_attributes {
            ints.keys().append_value(key);
            ints.values().append_value(*value);
        }
        ints.append(true)?;
        self.file.append_value(file);
        self.line.append_value(line as i64);
        Ok(())
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        self.len = 0;
        let text_map = self
            .attributes
            .get_or_insert_with(|| {
                MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
            })
            .finish();
        let int_map = self
            .int_attributes
            .get_or_insert_with(|| MapBuilder::new(None, StringBuilder::new(), Int64Builder::new()))
            .finish();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.start.finish().with_timezone("UTC")),
            Arc::new(self.end.finish().with_timezone("UTC")),
            Arc::new(self.duration.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.message.finish()),
            Arc::new(text_map),
            Arc::new(int_map),
            Arc::new(self.file.finish()),
            Arc::new(self.line.finish()),
        ];
        Ok(RecordBatch::try_new(Arc::clone(&SPANS_SCHEMA), columns)?)
    }
}
