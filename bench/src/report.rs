//! The benchmark's table (stdout and `docs/benchmarks.md`) and JSON.

use crate::Report;
use crate::stats::Estimate;
use std::fmt::Write as _;

/// Total memory of the machine (Linux `MemTotal`), 0 when unknown.
pub fn machine_memory_bytes() -> u64 {
    dftrace_tests::proc_kib("/proc/meminfo", "MemTotal").map_or(0, |kib| kib * 1024)
}

fn estimate(e: &Estimate) -> String {
    if e.median.is_nan() {
        return "n/a".to_owned();
    }
    format!("{:.3} [{:.3}–{:.3}]", e.median, e.low, e.high)
}

fn peak_rss(bytes: u64) -> String {
    if bytes == 0 {
        return "n/a".to_owned();
    }
    format!("{:.0}", bytes as f64 / (1u64 << 20) as f64)
}

/// The results as a Markdown table (also readable on a terminal).
pub fn markdown_table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "TPC-H scale factor {}, queries {:?}, {} rounds; short loops: {} queries per round \
         (throughput: {} concurrent clients); {} cores, {:.1} GiB; allocator: {}.\n",
        report.scale,
        report.queries,
        report.rounds,
        report.short_runs,
        report.clients,
        report.cores,
        report.memory_bytes as f64 / (1u64 << 30) as f64,
        report.allocator
    );
    out.push_str(
        "| configuration | TPC-H vs baseline | TPC-H vs raw | short loop vs baseline | short loop vs raw | short, fresh literal vs baseline | throughput vs baseline (qps) | worst query | pass (s) | spans ended / exported / dropped | attribute bytes per query | peak RSS, own process (MiB) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for v in &report.variants {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | Q{} ({:.3}) | {:.2} | {} / {} / {} | {} | {} |",
            v.name,
            estimate(&v.vs_baseline),
            estimate(&v.vs_raw),
            estimate(&v.short_vs_baseline),
            estimate(&v.short_vs_raw),
            estimate(&v.fresh_vs_baseline),
            estimate(&v.throughput_vs_baseline),
            v.worst_query.0,
            v.worst_query.1,
            v.pass_seconds,
            v.spans.0,
            v.spans.1,
            v.spans.2,
            v.attribute_bytes_per_query,
            peak_rss(v.peak_rss_bytes)
        );
    }
    let _ = writeln!(
        out,
        "\n`maximal+history` vs `maximal` (the cost of keeping the history): TPC-H {}, \
         short loop {}.",
        estimate(&report.history_vs_maximal.0),
        estimate(&report.history_vs_maximal.1)
    );
    let _ = writeln!(
        out,
        "`maximal+udf` vs `maximal` (the cost of observing the host's functions; query 23 \
         calls one): TPC-H {}, short loop {}.",
        estimate(&report.udf_vs_maximal.0),
        estimate(&report.udf_vs_maximal.1)
    );
    let _ = writeln!(
        out,
        "`maximal+memory` vs `maximal` (the cost of observing the memory pool): TPC-H {}, \
         short loop {}.",
        estimate(&report.memory_vs_maximal.0),
        estimate(&report.memory_vs_maximal.1)
    );
    if report.mismatches.is_empty() {
        out.push_str("\nEvery configuration returned the same rows as `baseline`.\n");
    } else {
        out.push_str("\nResult mismatches:\n");
        for mismatch in &report.mismatches {
            let _ = writeln!(out, "- {mismatch}");
        }
    }
    out
}

/// The report as pretty JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
