//! The HTML page: summary, flame graph and operator table in one file, with
//! no external assets (styles inline, the SVG embedded).

use super::Trace;
use dftrace_registry::keys;
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

/// Bytes as a reader takes them in (`3.2 MiB`).
pub(super) fn bytes_text(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / KIB),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", bytes as f64 / (KIB * KIB)),
        _ => format!("{:.2} GiB", bytes as f64 / (KIB * KIB * KIB)),
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

pub(super) fn render(trace: &Trace, svg: &str, self_time_svg: &str) -> String {
    let (children, roots) = trace.tree();
    let root = roots
        .iter()
        .map(|&r| &trace.spans[r])
        .find(|span| span.name == keys::QUERY_SPAN_NAME)
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
        if let Some(rows) = root.attribute(keys::QUERY_ROWS) {
            fact("rows returned", rows);
        }
        if let Some(sql) = root.attribute(keys::QUERY_TEXT) {
            fact("SQL", sql);
        } else if let Some(fingerprint) = root.attribute(keys::SQL_FINGERPRINT) {
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
        "<h2>Flame graph</h2>\n<p class=\"hint\">Width is wall time, or each operator's own \
         (compute) time; hover a frame for its name and time. Open the .svg files on their own to \
         click-zoom and search.</p>\n\
         <input type=\"radio\" name=\"width\" id=\"width-wall\" checked>\
         <label for=\"width-wall\">wall time</label>\n\
         <input type=\"radio\" name=\"width\" id=\"width-self\">\
         <label for=\"width-self\">operator self time</label>\n<div class=\"flame wall\">\n",
    );
    page.push_str(svg_element(svg));
    page.push_str("\n</div>\n<div class=\"flame self\">\n");
    // Scripts of two inferno graphs in one page would fight over the same
    // element ids: the second keeps its native tooltips only.
    page.push_str(&without_scripts(svg_element(self_time_svg)));
    page.push_str("\n</div>\n");

    page.push_str(
        "<h2>Operators</h2>\n<table class=\"operators\">\n<thead><tr><th>operator</th>\
         <th>self time</th><th>output rows</th><th>estimated rows</th><th>partitions</th>\
         <th>rows per partition<br>min / median / max</th>\
         <th>self time per partition<br>min / median / max</th><th>wall time</th>\
         <th>peak memory</th><th>spilled</th>",
    );
    if services.len() > 1 {
        page.push_str("<th>service</th>");
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    let text = |span: &super::TraceSpan, key: &str| escape(span.attribute(key).unwrap_or("–"));
    let time = |span: &super::TraceSpan, key: &str| {
        span.attribute(key)
            .and_then(|ns| ns.parse::<u64>().ok())
            .map_or_else(|| "–".to_owned(), |ns| escape(&duration_text(ns)))
    };
    let bytes = |span: &super::TraceSpan, key: &str| {
        span.attribute(key)
            .and_then(|bytes| bytes.parse::<u64>().ok())
            .map_or_else(|| "–".to_owned(), |bytes| escape(&bytes_text(bytes)))
    };
    let spread = |span: &super::TraceSpan, keys: [&str; 3], as_time: bool| {
        let part = |key: &str| {
            if as_time {
                time(span, key)
            } else {
                text(span, key)
            }
        };
        format!("{} / {} / {}", part(keys[0]), part(keys[1]), part(keys[2]))
    };
    for &(index, depth) in &operators {
        let span = &trace.spans[index];
        // Live spans carry DataFusion's text instead of the typed figures.
        let self_time = if span.attribute(keys::SELF_TIME_NS).is_some() {
            time(span, keys::SELF_TIME_NS)
        } else {
            text(span, &format!("{}elapsed_compute", keys::METRICS_PREFIX))
        };
        let _ = write!(
            page,
            "<tr><td class=\"name\" style=\"padding-left:{}em\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            0.4 + depth as f64 * 1.2,
            escape(&span.name),
            self_time,
            text(span, &format!("{}output_rows", keys::METRICS_PREFIX)),
            text(span, keys::ESTIMATED_ROWS),
            text(span, keys::OPERATOR_PARTITIONS),
            spread(
                span,
                [keys::ROWS_MIN, keys::ROWS_MEDIAN, keys::ROWS_MAX],
                false
            ),
            spread(
                span,
                [
                    keys::SELF_TIME_MIN,
                    keys::SELF_TIME_MEDIAN,
                    keys::SELF_TIME_MAX
                ],
                true
            ),
            escape(&duration_text(span.duration_ns())),
            bytes(span, keys::OPERATOR_PEAK_MEMORY),
            bytes(span, &format!("{}spilled_bytes", keys::METRICS_PREFIX)),
        );
        if services.len() > 1 {
            let _ = write!(page, "<td>{}</td>", escape(&span.service));
        }
        page.push_str("</tr>\n");
    }
    if operators.is_empty() {
        page.push_str("<tr><td colspan=\"10\">no operator spans in this trace</td></tr>\n");
    }
    page.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    page
}

/// `svg` without its `<script>` elements.
fn without_scripts(svg: &str) -> String {
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    while let Some(start) = rest.find("<script") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</script>") {
            Some(end) => rest = &rest[start + end + "</script>".len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
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
.flame svg{width:100%;height:auto;border:1px solid #eee}.flame.self{display:none}\
#width-self:checked~.flame.wall{display:none}#width-self:checked~.flame.self{display:block}.hint{color:#666;font-size:.9em}";
