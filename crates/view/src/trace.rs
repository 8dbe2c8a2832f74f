//! Reading one trace out of an OTLP-JSON-lines file.

use super::ViewError;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use dftrace_registry::keys;

/// One span, its attribute values rendered as text.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpan {
    /// Hex span id.
    pub span_id: String,
    /// Hex parent span id; `None` for a span that started its trace here.
    pub parent_span_id: Option<String>,
    /// The span name (an operator's, a rule's, `dftrace.query`, ...).
    pub name: String,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_unix_ns: u64,
    /// Attributes, sorted by key; arrays and maps as JSON-like text.
    pub attributes: BTreeMap<String, String>,
    /// The attributes whose values are integers, as numbers.
    pub int_attributes: BTreeMap<String, i64>,
    /// `service.name` of the resource that sent it, with `/service.instance.id`
    /// when the resource has one.
    pub service: String,
    /// The status message of a span that ended in error.
    pub error: Option<String>,
    /// The OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
}

impl TraceSpan {
    /// Wall time from start to end.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }

    /// An attribute's value as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// Whether this is one of dftrace's physical operator spans.
    pub fn is_operator(&self) -> bool {
        self.attribute(keys::TARGET) == Some(keys::EXEC_TARGET)
    }

    /// An operator's own time (`dftrace.operator.self_time_ns`), when the
    /// span carries it (deferred operator spans do).
    pub fn self_time_ns(&self) -> Option<u64> {
        self.attribute(keys::SELF_TIME_NS)?.parse().ok()
    }
}

/// Every span of one trace, sorted by start time.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Hex trace id.
    pub trace_id: String,
    /// Its spans, earliest first.
    pub spans: Vec<TraceSpan>,
}

impl Trace {
    /// Children of each span (indexes into `spans`, earliest first), and the
    /// roots: spans whose parent is not in this trace (such as a parent in
    /// another process that exported elsewhere).
    pub(super) fn tree(&self) -> (Vec<Vec<usize>>, Vec<usize>) {
        let index: HashMap<&str, usize> = self
            .spans
            .iter()
            .enumerate()
            .map(|(i, span)| (span.span_id.as_str(), i))
            .collect();
        let mut children = vec![Vec::new(); self.spans.len()];
        let mut roots = Vec::new();
        for (i, span) in self.spans.iter().enumerate() {
            match span
                .parent_span_id
                .as_deref()
                .and_then(|parent| index.get(parent))
            {
                Some(&parent) if parent != i => children[parent].push(i),
                _ => roots.push(i),
            }
        }
        (children, roots)
    }

    /// Nanoseconds since the Unix epoch at which the trace's first span started.
    pub(super) fn start_unix_ns(&self) -> u64 {
        self.spans
            .iter()
            .map(|span| span.start_unix_ns)
            .min()
            .unwrap_or(0)
    }
}

/// Reads `path` and returns the trace `trace_id` or, when `None`, the trace
/// that started last (the last query the file holds).
pub fn read_trace_file(path: &Path, trace_id: Option<&str>) -> Result<Trace, ViewError> {
    let text = std::fs::read_to_string(path).map_err(|source| ViewError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut traces: HashMap<String, Vec<TraceSpan>> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let spans = read_line(line).map_err(|source| ViewError::Parse {
            path: path.to_path_buf(),
            line: number + 1,
            source,
        })?;
        for (trace_id, span) in spans {
            traces.entry(trace_id).or_default().push(span);
        }
    }
    let first_start = |spans: &[TraceSpan]| spans.iter().map(|s| s.start_unix_ns).min();
    let chosen = match trace_id {
        Some(wanted) => {
            let wanted = wanted.trim().to_ascii_lowercase();
            traces.remove_entry(&wanted).ok_or_else(|| {
                let mut ids: Vec<_> = traces.keys().cloned().collect();
                ids.sort();
                ViewError::UnknownTrace {
                    path: path.to_path_buf(),
                    wanted,
                    available: if ids.is_empty() {
                        "no spans at all".into()
                    } else {
                        ids.join(", ")
                    },
                }
            })?
        }
        None => {
            let last = traces
                .iter()
                .max_by_key(|(id, spans)| (first_start(spans), id.as_str()))
                .map(|(id, _)| id.clone());
            last.and_then(|id| traces.remove_entry(&id))
                .ok_or_else(|| ViewError::Empty {
                    path: path.to_path_buf(),
                })?
        }
    };
    let (trace_id, mut spans) = chosen;
    spans.sort_by(|a, b| {
        (a.start_unix_ns, std::cmp::Reverse(a.end_unix_ns))
            .cmp(&(b.start_unix_ns, std::cmp::Reverse(b.end_unix_ns)))
    });
    Ok(Trace { trace_id, spans })
}

/// How a line of OTLP-JSON metrics (`ExportMetricsServiceRequest`) starts.
const METRICS_LINE: &str = "{\"resourceMetrics\"";

/// The spans of one line of an OTLP-JSON-lines file (one export request),
/// each with its hex trace id. A blank line holds none, and so does a line
/// of metrics (the file sink's `*.metrics.jsonl`, found by the same globs).
pub fn read_line(line: &str) -> Result<Vec<(String, TraceSpan)>, serde_json::Error> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with(METRICS_LINE) {
        return Ok(Vec::new());
    }
    let request: ExportTraceServiceRequest = serde_json::from_str(line)?;
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|resource| resource.attributes)
            .unwrap_or_default();
        let service = service_label(&resource);
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            let status_code = span.status.as_ref().map_or(0, |status| status.code);
            let error = span
                .status
                .filter(|status| status.code == 2)
                .map(|status| status.message);
            let parent = hex(&span.parent_span_id);
            let int_attributes = span
                .attributes
                .iter()
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::IntValue(number) => Some((kv.key.clone(), *number)),
                    _ => None,
                })
                .collect();
            spans.push((
                hex(&span.trace_id),
                TraceSpan {
                    span_id: hex(&span.span_id),
                    parent_span_id: (!parent.is_empty()).then_some(parent),
                    name: span.name,
                    start_unix_ns: span.start_time_unix_nano,
                    end_unix_ns: span.end_time_unix_nano,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
                        .collect(),
                    int_attributes,
                    service: service.clone(),
                    error,
                    status_code,
                },
            ));
        }
    }
    Ok(spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn service_label(resource: &[KeyValue]) -> String {
    let get = |key: &str| {
        resource
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| value_text(kv.value.as_ref()))
    };
    let name = get("service.name").unwrap_or_else(|| "unknown service".into());
    match get("service.instance.id") {
        Some(instance) => format!("{name}/{instance}"),
        None => name,
    }
}

fn value_text(value: Option<&AnyValue>) -> String {
    let Some(value) = value.and_then(|value| value.value.as_ref()) else {
        return String::new();
    };
    match value {
        any_value::Value::StringValue(text) => text.clone(),
        any_value::Value::BoolValue(flag) => flag.to_string(),
        any_value::Value::IntValue(number) => number.to_string(),
        any_value::Value::DoubleValue(number) => number.to_string(),
        any_value::Value::ArrayValue(array) => format!(
            "[{}]",
            array
                .values
                .iter()
                .map(|item| value_text(Some(item)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        any_value::Value::KvlistValue(list) => format!(
            "{{{}}}",
            list.values
                .iter()
                .map(|kv| format!("{}: {}", kv.key, value_text(kv.value.as_ref())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        any_value::Value::BytesValue(bytes) => hex(bytes),
        // Profiling-only string-table references carry no text here.
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}
