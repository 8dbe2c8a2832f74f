//! The HTML page: summary, flame graph and operator table in one file, with
//! no external assets (styles inline, the SVG embedded).

use super::Trace;
use std::fmt::Write as _;

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Nanoseconds as a short human duration.
pub(super) fn duration_text(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

/// One row of the operator table: an operator span and its depth in the
/// plan (operators above it).
pub(super) fn operator_rows(
    trace: &Trace,
    children: &[Vec<usize>],
    roots: &[usize],
) -> Vec<(usize, usize)> {
    let mut rows = Vec::new();
    let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&r| (r, 0)).collect();
    while let Some((index, depth)) = stack.pop() {
        let is_operator = trace.spans[index].is_operator();
        if is_operator {
            rows.push((index, depth));
        }
        let child_depth = depth + usize::from(is_operator);
        stack.extend(children[index].iter().rev().map(|&k| (k, child_depth)));
    }
    rows
}

pub(super) fn render(trace: &Trace, svg: &str) -> String {
    let (children, roots) = trace.tree();
    let root = roots
        .iter()
        .map(|&r| &trace.spans[r])
        .find(|span| span.name == "dftrace.query")
        .or_else(|| roots.first().map(|&r| &trace.spans[r]));
    let services: std::collections::BTreeSet<&str> =
        trace.spans.iter().map(|s| s.service.as_str()).collect();
    let operators = operator_rows(trace, &children, &roots);

    let mut page = String::new();
    let title = format!("dftrace · query {}", trace.trace_id);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );

    page.push_str("<table class=\"summary\">\n");
    let mut fact = |name: &str, value: &str| {
        let _ = writeln!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(value)
        );
    };
    if let Some(root) = root {
        fact("root span", &root.name);
        fact("duration", &duration_text(root.duration_ns()));
        fact(
            "status",
            match root.error.as_deref() {
                None => "ok",
                Some("") => "error",
                Some(message) => message,
            },
        );
        if let Some(rows) = root.attribute("dftrace.rows") {
            fact("rows returned", rows);
        }
        if let Some(sql) = root.attribute("db.query.text") {
            fact("SQL", sql);
        } else if let Some(fingerprint) = root.attribute("dftrace.sql.fingerprint") {
            fact("SQL fingerprint", fingerprint);
        }
    }
    fact(
        "spans",
        &format!("{} ({} operators)", trace.spans.len(), operators.len()),
    );
    fact(
        "services",
        &services.iter().copied().collect::<Vec<_>>().join(", "),
    );
    page.push_str("</table>\n");

    page.push_str(
        "<h2>Flame graph</h2>\n<p class=\"hint\">Width is time; hover a frame for its name and time. \
         Open the .svg file on its own to click-zoom and search.</p>\n<div class=\"flame\">\n",
    );
    page.push_str(svg_element(svg));
    page.push_str("\n</div>\n");

    page.push_str(
        "<h2>Operators</h2>\n<table class=\"operators\">\n<thead><tr><th>operator</th>\
         <th>output rows</th><th>compute time</th><th>output bytes</th><th>wall time</th>",
    );
    if services.len() > 1 {
        page.push_str("<th>service</th>");
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    let metric = |span: &super::TraceSpan, name: &str| {
        escape(
            span.attribute(&format!("datafusion.metrics.{name}"))
                .unwrap_or("–"),
        )
    };
    for &(index, depth) in &operators {
        let span = &trace.spans[index];
        let _ = write!(
            page,
            "<tr><td class=\"name\" style=\"padding-left:{}em\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td>",
            0.4 + depth as f64 * 1.2,
            escape(&span.name),
            metric(span, "output_rows"),
            metric(span, "elapsed_compute"),
            metric(span, "output_bytes"),
            escape(&duration_text(span.duration_ns())),
        );
        if services.len() > 1 {
            let _ = write!(page, "<td>{}</td>", escape(&span.service));
        }
        page.push_str("</tr>\n");
    }
    if operators.is_empty() {
        page.push_str("<tr><td colspan=\"5\">no operator spans in this trace</td></tr>\n");
    }
    page.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    page
}

/// The `<svg>` element of an SVG document, without the XML declaration and
/// doctype, which are not allowed inside HTML.
fn svg_element(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |start| &svg[start..])
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse}th,td{padding:.25em .8em;text-align:left;border-bottom:1px solid #ddd}\
table.summary th{color:#555;font-weight:normal}\
table.operators td:not(.name){text-align:right;font-variant-numeric:tabular-nums}\
td.name{font-family:ui-monospace,monospace}\
.flame svg{width:100%;height:auto;border:1px solid #eee}.hint{color:#666;font-size:.9em}";
