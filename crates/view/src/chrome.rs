//! The timeline: Chrome trace-event JSON ("X" complete events), which
//! Perfetto and `chrome://tracing` open.

use super::Trace;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// A span's track: the service instance (process) and thread it names.
type ThreadKey = (usize, i64);

pub(super) fn render(trace: &Trace) -> String {
    let origin = trace.start_unix_ns();
    let micros = |ns: u64| ns.saturating_sub(origin) as f64 / 1_000.0;

    let mut services: Vec<&str> = Vec::new();
    let mut thread_names: BTreeMap<ThreadKey, String> = BTreeMap::new();
    // Per thread, lanes of nested spans: each lane a stack of end times.
    // Complete events on one track must nest, and concurrent operators
    // created on one thread overlap without nesting, so they get more lanes.
    let mut lanes: BTreeMap<ThreadKey, Vec<Vec<u64>>> = BTreeMap::new();
    let mut tracks: BTreeMap<(usize, i64), String> = BTreeMap::new();
    let mut events = Vec::with_capacity(trace.spans.len() + 8);

    // Spans come sorted by start, longest first at equal starts: a parent
    // is always placed before the children it contains.
    for span in &trace.spans {
        let pid = match services.iter().position(|s| *s == span.service) {
            Some(pid) => pid,
            None => {
                services.push(&span.service);
                services.len() - 1
            }
        };
        let thread = span
            .attribute("thread.id")
            .and_then(|id| id.parse::<i64>().ok())
            .unwrap_or(0);
        let key = (pid, thread);
        thread_names
            .entry(key)
            .or_insert_with(|| match span.attribute("thread.name") {
                Some(name) => format!("thread {thread} ({name})"),
                None => format!("thread {thread}"),
            });
        let thread_lanes = lanes.entry(key).or_default();
        let lane = place(thread_lanes, span.start_unix_ns, span.end_unix_ns);
        // Lanes of one thread sort together: thread id × 1000 + lane.
        let tid = thread * 1_000 + lane as i64;
        tracks.entry((pid, tid)).or_insert_with(|| {
            let base = &thread_names[&key];
            if lane == 0 {
                base.clone()
            } else {
                format!("{base} · lane {}", lane + 1)
            }
        });

        let mut args = Map::new();
        args.insert("span_id".into(), json!(span.span_id));
        if let Some(parent) = &span.parent_span_id {
            args.insert("parent_span_id".into(), json!(parent));
        }
        if let Some(error) = &span.error {
            args.insert("error".into(), json!(error));
        }
        for (key, value) in &span.attributes {
            // Source locations and the thread are noise on a timeline.
            if !key.starts_with("code.") && !key.starts_with("thread.") {
                args.insert(key.clone(), json!(value));
            }
        }
        events.push(json!({
            "name": span.name,
            "cat": span.attribute(dftrace_registry::keys::TARGET).unwrap_or("span"),
            "ph": "X",
            "ts": micros(span.start_unix_ns),
            "dur": span.duration_ns() as f64 / 1_000.0,
            "pid": pid,
            "tid": tid,
            "args": Value::Object(args),
        }));
    }

    for (pid, service) in services.iter().enumerate() {
        events.push(json!({
            "name": "process_name", "ph": "M", "pid": pid, "tid": 0,
            "args": {"name": service},
        }));
    }
    for ((pid, tid), name) in &tracks {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
            "args": {"name": name},
        }));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"trace_id": trace.trace_id, "source": "dftrace"},
    })
    .to_string()
}

/// The first lane where `[start, end]` nests inside what is open there (or
/// where nothing is open any more); a new lane when none fits.
pub(super) fn place(lanes: &mut Vec<Vec<u64>>, start: u64, end: u64) -> usize {
    for (index, open) in lanes.iter_mut().enumerate() {
        while open.last().is_some_and(|&open_end| open_end <= start) {
            open.pop();
        }
        if open.last().is_none_or(|&open_end| end <= open_end) {
            open.push(end);
            return index;
        }
    }
    lanes.push(vec![end]);
    lanes.len() - 1
}
