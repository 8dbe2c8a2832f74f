//! The flame graph: the span tree as folded stacks, drawn by `inferno`.

use super::{Trace, TraceSpan};
use inferno::flamegraph::{self, Options};
use std::collections::HashMap;

/// What a frame's width stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlameWidth {
    /// Wall time: each span as long as it was open.
    Wall,
    /// Work: an operator's own time (`dftrace.operator.self_time_ns`, its
    /// compute time without its children's), so the operators that did the
    /// work are the wide ones. Spans without it keep their wall time.
    SelfTime,
}

/// A span's own frame value in ns: what it spent beyond its children.
fn own_ns(span: &TraceSpan, kids_wall_ns: u64, width: FlameWidth) -> u64 {
    let self_time = match width {
        FlameWidth::Wall => None,
        FlameWidth::SelfTime => span.self_time_ns(),
    };
    self_time.unwrap_or_else(|| span.duration_ns().saturating_sub(kids_wall_ns))
}

/// One folded-stack line per span (`root;child;span <own µs>`): inferno sums
/// a frame's own value and its children's, so with wall widths each frame is
/// as wide as its span plus whatever its children ran beyond it (concurrent
/// partitions), and with self-time widths as wide as the work under it.
///
/// Siblings with the same name get ` [2]`, ` [3]`, ... so that every span is
/// its own frame instead of being merged with a namesake (two scans under one
/// join, say).
pub(super) fn folded_lines(trace: &Trace, width: FlameWidth) -> Vec<String> {
    let (children, roots) = trace.tree();
    let mut lines = Vec::with_capacity(trace.spans.len());
    // Depth-first; each entry carries its full folded path.
    let mut stack = labelled(trace, &roots);
    stack.reverse();
    while let Some((index, path)) = stack.pop() {
        let span = &trace.spans[index];
        let kids = &children[index];
        let kids_ns: u64 = kids.iter().map(|&k| trace.spans[k].duration_ns()).sum();
        // At least 1 µs, so that no span vanishes from the picture.
        let self_us = (own_ns(span, kids_ns, width) / 1_000).max(1);
        lines.push(format!("{path} {self_us}"));
        let mut next: Vec<_> = labelled(trace, kids)
            .into_iter()
            .map(|(kid, label)| (kid, format!("{path};{label}")))
            .collect();
        next.reverse();
        stack.extend(next);
    }
    lines
}

/// Frame labels for a set of siblings, numbered where names repeat.
fn labelled(trace: &Trace, siblings: &[usize]) -> Vec<(usize, String)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    siblings
        .iter()
        .map(|&index| {
            let name = frame_name(&trace.spans[index].name);
            let count = seen.entry(name.clone()).or_insert(0);
            *count += 1;
            let label = if *count == 1 {
                name
            } else {
                format!("{name}\u{a0}[{count}]")
            };
            (index, label)
        })
        .collect()
}

/// A span name as a folded-stack frame: `;` separates frames and an ASCII
/// space before a number would read as a sample count, so both are replaced
/// (a no-break space looks the same).
pub(super) fn frame_name(name: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .map(|c| match c {
            ';' => ',',
            c if c.is_whitespace() => '\u{a0}',
            c => c,
        })
        .collect();
    if name.is_empty() {
        "(unnamed)".into()
    } else {
        name
    }
}

pub(super) fn render(trace: &Trace, width: FlameWidth) -> String {
    let mut options = Options::default();
    options.title = match width {
        FlameWidth::Wall => format!("dftrace query {}", trace.trace_id),
        FlameWidth::SelfTime => format!("dftrace query {} (operator self time)", trace.trace_id),
    };
    options.subtitle = trace
        .spans
        .iter()
        .find_map(|span| span.attribute(dftrace_registry::keys::SQL_FINGERPRINT))
        .map(|fingerprint| format!("SQL fingerprint {fingerprint}"));
    options.count_name = "µs".into();
    options.name_type = "Span:".into();
    options.hash = true;
    // Keep every frame, however narrow: a planner rule takes microseconds.
    options.min_width = 0.0;
    let lines = folded_lines(trace, width);
    let mut svg = Vec::new();
    match flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg) {
        Ok(()) => String::from_utf8_lossy(&svg).into_owned(),
        // Only an I/O error on the Vec (impossible) or no lines at all.
        Err(error) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\">\
             <text x=\"10\" y=\"25\">no flame graph: {}</text></svg>",
            super::html::escape(&error.to_string())
        ),
    }
}
