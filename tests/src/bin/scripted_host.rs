//! A traced host driven line by line on stdin, for the reliability tests
//! (bootstrap installs process-wide state, and some faults — a collector
//! killed and restarted — happen between a host's queries).
//!
//! Configured from the environment (DFTRACE_* and OTEL_* variables), it
//! answers each command with one JSON line on stdout:
//!
//! - `run <n> <label>`: runs the test query `n` times in sequence, each with
//!   the root attribute `phase=<label>`, each query's spans ended before the
//!   next; prints the durations and whether every result was right.
//! - `concurrent <n> <rounds>`: `rounds` times, `n` queries at once.
//! - `huge`: one query whose plan holds a 500 000-element literal, so its
//!   plan attributes are megabytes long.
//! - `rss`: the peak resident set size so far.
//! - `progress`: the span counts so far (ended, exported, failed), without
//!   flushing.
//! - `exit`: shuts telemetry down and prints the shutdown report.

use datafusion::prelude::SessionContext;
use dftrace_rules::{QueryOptions, run_sql};
use serde_json::json;
use std::io::BufRead;
use std::time::{Duration, Instant};

/// How long a query's end may take before the host gives up: a bound on a
/// hang only.
const QUERY_END_BOUND: Duration = Duration::from_secs(600);

// Linked so their plugins register, as in a real host.
use dftrace_metrics_summary as _;

/// Heavy enough (tens of milliseconds) that export stalls would show.
const QUERY: &str = "SELECT v % 7 AS k, count(*) AS c, sum(v) AS s FROM t WHERE v % 3 <> 0 GROUP BY v % 7 ORDER BY k";

/// `range(..)` is folded into one list literal, which every plan text (and
/// so every planner span's plan attributes) then spells out in full.
const HUGE_PLAN_QUERY: &str = "SELECT count(*) FROM unnest(range(0, 500000)) AS u(v)";

/// Table `t`: 200 000 integers in two partitions.
fn register_t(ctx: &SessionContext) -> datafusion::error::Result<()> {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    let part = |range: std::ops::Range<i64>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![std::sync::Arc::new(Int64Array::from_iter_values(range))],
        )
    };
    let table = datafusion::datasource::MemTable::try_new(
        schema.clone(),
        vec![vec![part(0..100_000)?], vec![part(100_000..200_000)?]],
    )?;
    ctx.register_table("t", std::sync::Arc::new(table))?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = dftrace_registry::DftraceConfig::from_env()?;
    let export: dftrace_bootstrap::ExportConfig = config.section()?;
    let guard = dftrace_bootstrap::init(&export)?;
    let runtime = dftrace_tests::two_worker_runtime()?;
    let ctx = runtime.block_on(async {
        let ctx = dftrace_tests::try_dftrace_context(&config)?;
        register_t(&ctx)?;
        Ok::<_, Box<dyn std::error::Error>>(ctx)
    })?;
    // The reference result, computed untraced.
    let expected = runtime.block_on(async {
        let untraced = SessionContext::new();
        register_t(&untraced)?;
        let batches = untraced.sql(QUERY).await?.collect().await?;
        datafusion::arrow::util::pretty::pretty_format_batches(&batches).map(|t| t.to_string())
    })?;
    let matches = |batches: &[datafusion::arrow::record_batch::RecordBatch]| {
        datafusion::arrow::util::pretty::pretty_format_batches(batches)
            .map(|t| t.to_string() == expected)
            .unwrap_or(false)
    };
    println!("{}", json!({ "ready": true }));

    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["run", n, label] => {
                let n: usize = n.parse()?;
                let mut durations_ms = Vec::new();
                let mut all_right = true;
                for _ in 0..n {
                    let options = QueryOptions::new().attribute("phase", *label);
                    let started = Instant::now();
                    let query = runtime.block_on(run_sql(&ctx, QUERY, &options))?;
                    durations_ms.push(started.elapsed().as_secs_f64() * 1e3);
                    all_right &= matches(&query.batches);
                    // Every span of the query has ended before the next
                    // command, so `progress` counts them all (a query's end
                    // runs on dftrace's thread, which a loaded machine can
                    // hold back past an export).
                    if !query.ended().wait_timeout(QUERY_END_BOUND) {
                        return Err(format!(
                            "a query's spans had not ended after {QUERY_END_BOUND:?}"
                        )
                        .into());
                    }
                }
                println!(
                    "{}",
                    json!({ "durations_ms": durations_ms, "all_right": all_right })
                );
            }
            ["concurrent", n, rounds] => {
                let (n, rounds): (usize, usize) = (n.parse()?, rounds.parse()?);
                let mut all_right = true;
                for _ in 0..rounds {
                    let results = runtime.block_on(async {
                        let tasks: Vec<_> = (0..n)
                            .map(|_| {
                                let ctx = ctx.clone();
                                tokio::spawn(async move {
                                    run_sql(&ctx, QUERY, &QueryOptions::new()).await
                                })
                            })
                            .collect();
                        let mut results = Vec::new();
                        for task in tasks {
                            results.push(task.await);
                        }
                        results
                    });
                    for result in results {
                        all_right &= matches!(result, Ok(Ok(ref query)) if matches(&query.batches));
                    }
                }
                println!("{}", json!({ "all_right": all_right }));
            }
            ["huge"] => {
                let query =
                    runtime.block_on(run_sql(&ctx, HUGE_PLAN_QUERY, &QueryOptions::new()))?;
                let count = datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?;
                println!(
                    "{}",
                    json!({ "all_right": count.to_string().contains("500000") })
                );
            }
            ["progress"] => {
                let progress = guard.progress();
                println!(
                    "{}",
                    json!({
                        "ended": progress.ended,
                        "exported": progress.exported,
                        "failed": progress.failed,
                    })
                );
            }
            ["rss"] => println!(
                "{}",
                json!({ "peak_rss_kib": dftrace_tests::proc_kib("/proc/self/status", "VmHWM") })
            ),
            ["exit"] => break,
            _ => return Err(format!("unknown command `{line}`").into()),
        }
    }
    let started = Instant::now();
    let report = guard.shutdown();
    println!(
        "{}",
        json!({
            "ended": report.ended,
            "exported": report.exported,
            "failed": report.failed,
            "dropped": report.dropped(),
            "timed_out": report.timed_out,
            "shutdown_ms": started.elapsed().as_millis(),
        })
    );
    Ok(())
}
