//! `cargo xtask bench`: what each dftrace preset costs, measured as ratios
//! against uninstrumented DataFusion and against `datafusion-tracing` used
//! raw, all in one process.
//!
//! Every configuration ([`Variant`]) has its own `SessionContext`, built once;
//! all share one global subscriber and one batch span pipeline exporting to a
//! counting, discarding exporter ([`pipeline`]). After a warm-up that also
//! checks every configuration returns the same rows as `baseline`, each round
//! runs every (query, configuration) pair in a fresh random order, plus three
//! short-query measures per configuration: the loop of one client, the loop
//! with a new literal in every query (nothing keyed on the exact text
//! helps), and the throughput of as many concurrent clients as cores (so
//! work moved off the query's path onto another thread is counted). A
//! configuration's round ratio is its total time over `baseline`'s (or
//! `raw`'s) in that round; the report gives the median round ratio with a
//! bootstrap 95% interval. Peak RSS is measured
//! per configuration in a process of its own ([`rss_probe`]): in the shared
//! process, the allocator's high-water mark from earlier passes hides which
//! configuration holds the memory.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod pipeline;
pub mod report;
pub mod stats;
pub mod workload;

use dftrace_tests::rows::canonical_rows;
use pipeline::{Pipeline, SpanCounts, peak_rss_bytes};
use stats::{Rng, bootstrap_median, median};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
pub use workload::Variant;
use workload::{SHORT_QUERY, Session, fresh_short_query, tpch_data};

/// The allocator this build runs on: glibc's `malloc` by default,
/// mimalloc (what datafusion-cli ships with) with the `mimalloc` feature.
/// dftrace builds a query's spans on a thread of its own, which frees what
/// the query's threads allocated: how much that costs depends on it.
pub const ALLOCATOR: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "system"
};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// TPC-H scale factor.
    pub scale: f64,
    /// TPC-H query numbers (1 to 22).
    pub queries: Vec<usize>,
    /// Measured rounds.
    pub rounds: usize,
    /// Warm-up rounds (the first also checks results).
    pub warmup: usize,
    /// Short queries per configuration per round.
    pub short_runs: usize,
    /// Where generated TPC-H data is cached.
    pub data_root: PathBuf,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// The `dftrace-bench` executable to run [`rss_probe`] in, once per
    /// configuration per repetition; `None` leaves peak RSS unmeasured (the
    /// CI smoke test runs inside a test harness, which cannot be re-run as
    /// the bench).
    pub rss_probe_exe: Option<PathBuf>,
    /// Processes per configuration for peak RSS; the report takes the median.
    pub rss_repetitions: usize,
    /// Concurrent clients of the throughput measure (the cores, by default).
    pub clients: usize,
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl Options {
    /// The full benchmark: scale 1, all 22 queries, 30 rounds.
    pub fn full(data_root: PathBuf) -> Options {
        Options {
            scale: 1.0,
            queries: (1..=22).collect(),
            rounds: 30,
            warmup: 1,
            short_runs: 300,
            data_root,
            progress: true,
            rss_probe_exe: None,
            rss_repetitions: 5,
            clients: cores(),
        }
    }

    /// The CI smoke test: scale 0.1, three TPC-H queries and the one that
    /// calls a host function, three rounds.
    pub fn quick(data_root: PathBuf) -> Options {
        Options {
            scale: 0.1,
            queries: vec![1, 3, 6, workload::UDF_QUERY_NUMBER],
            rounds: 3,
            warmup: 1,
            short_runs: 10,
            data_root,
            progress: false,
            rss_probe_exe: None,
            rss_repetitions: 1,
            clients: cores(),
        }
    }
}

/// One configuration's results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantResult {
    /// The configuration.
    pub name: &'static str,
    /// Median per-round ratio to `baseline` over the TPC-H queries.
    pub vs_baseline: stats::Estimate,
    /// The same, to `raw`.
    pub vs_raw: stats::Estimate,
    /// Median per-round ratio to `baseline` of the short-query loop.
    pub short_vs_baseline: stats::Estimate,
    /// The same, to `raw`.
    pub short_vs_raw: stats::Estimate,
    /// Median per-round ratio to `baseline` of the short-query loop with a
    /// new literal in every query.
    pub fresh_vs_baseline: stats::Estimate,
    /// Median per-round ratio of queries per second to `baseline`'s, with
    /// [`Options::clients`] clients running the short query at once.
    pub throughput_vs_baseline: stats::Estimate,
    /// The query with the highest median ratio to `baseline`, and that ratio.
    pub worst_query: (usize, f64),
    /// Median seconds of one pass over the queries.
    pub pass_seconds: f64,
    /// Spans ended / exported / dropped in one pass over the queries.
    pub spans: (u64, u64, u64),
    /// Attribute bytes exported per query.
    pub attribute_bytes_per_query: u64,
    /// Median over [`Options::rss_repetitions`] processes of the peak RSS of
    /// a process running only this configuration's warm-up and one pass over
    /// the queries, in bytes (0 when not measured).
    pub peak_rss_bytes: u64,
}

/// The whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Scale factor.
    pub scale: f64,
    /// Queries run.
    pub queries: Vec<usize>,
    /// Measured rounds.
    pub rounds: usize,
    /// Short queries per configuration per round.
    pub short_runs: usize,
    /// Concurrent clients of the throughput measure.
    pub clients: usize,
    /// Cores the process may use.
    pub cores: usize,
    /// Total memory of the machine in bytes (0 when unknown).
    pub memory_bytes: u64,
    /// The allocator every configuration ran on ([`ALLOCATOR`]).
    pub allocator: &'static str,
    /// Per configuration, in [`Variant::ALL`] order.
    pub variants: Vec<VariantResult>,
    /// Result mismatches against `baseline` (empty when all agree).
    pub mismatches: Vec<String>,
    /// `maximal+history` over `maximal`: the TPC-H passes and the short
    /// loop, per-round ratios.
    pub history_vs_maximal: (stats::Estimate, stats::Estimate),
    /// `maximal+udf` over `maximal`, likewise.
    pub udf_vs_maximal: (stats::Estimate, stats::Estimate),
    /// `maximal+memory` over `maximal`, likewise.
    pub memory_vs_maximal: (stats::Estimate, stats::Estimate),
}

/// Timings: variant → query → one duration per round.
type Timings = BTreeMap<Variant, BTreeMap<usize, Vec<f64>>>;

/// A unit of work in a round.
#[derive(Debug, Clone, Copy)]
enum Job {
    Query(Variant, usize),
    ShortLoop(Variant),
    FreshLoop(Variant),
    Throughput(Variant),
}

/// The literal of the next fresh short query: never the same twice.
static FRESH: AtomicU64 = AtomicU64::new(0);

/// `queries` run one after the other on `session`; the time they took
/// together.
async fn run_in_turn(session: &Session, queries: &[impl AsRef<str>]) -> Result<Duration, String> {
    let start = Instant::now();
    for sql in queries {
        session.run(sql.as_ref()).await?;
    }
    Ok(start.elapsed())
}

/// `runs` short queries on `session` from `clients` concurrent tasks;
/// the time they took together.
async fn concurrent_short_loop(
    session: &Arc<Session>,
    clients: usize,
    runs: usize,
) -> Result<Duration, String> {
    let clients = clients.max(1);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let session = Arc::clone(session);
            // The runs split over the clients, the remainder to the first.
            let mine = runs / clients + usize::from(client < runs % clients);
            tokio::spawn(async move {
                for _ in 0..mine {
                    session.run(SHORT_QUERY).await?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| format!("a client panicked: {e}"))??;
    }
    Ok(start.elapsed())
}

fn progress(done: usize, total: usize, label: &str) {
    let width = 30;
    let filled = done * width / total.max(1);
    eprint!(
        "\r[{}{}] {done}/{total} {label:<40}",
        "=".repeat(filled),
        " ".repeat(width - filled)
    );
    let _ = std::io::stderr().flush();
}

/// The pipeline and `variant`'s session, with TPC-H registered, for a
/// process that runs only that configuration.
async fn alone(variant: Variant, options: &Options) -> Result<(Pipeline, Session), String> {
    let dir = tpch_data(&options.data_root, options.scale)?;
    let pipeline = Pipeline::install()?;
    let session = Session::new(variant)?;
    session.register_tpch(&dir).await?;
    Ok((pipeline, session))
}

/// The text of TPC-H query `q` (checked by [`check_queries`]); query 23
/// is [`workload::UDF_QUERY`], which calls a host function.
fn tpch_sql(q: usize) -> &'static str {
    match q {
        workload::UDF_QUERY_NUMBER => workload::UDF_QUERY,
        _ => dftrace_tests::tpch::QUERIES[q - 1],
    }
}

/// `--profile NAME`: only one configuration's short-query loop, run
/// `options.short_runs` times under the same pipeline, so a profiler such as
/// `perf` sees that configuration's costs alone. Returns the mean time per
/// query.
pub async fn profile_short(variant: Variant, options: &Options) -> Result<Duration, String> {
    let (pipeline, session) = alone(variant, options).await?;
    session.run(SHORT_QUERY).await?;
    let start = Instant::now();
    for _ in 0..options.short_runs {
        session.run(SHORT_QUERY).await?;
    }
    let per_query = start.elapsed() / options.short_runs.max(1) as u32;
    let counts = pipeline.flushed_counts();
    eprintln!(
        "{}: {per_query:?} per short query; spans ended {}, exported {}",
        variant.name(),
        counts.ended,
        counts.exported
    );
    Ok(per_query)
}

fn check_queries(queries: &[usize]) -> Result<(), String> {
    match queries
        .iter()
        .find(|q| !(1..=workload::UDF_QUERY_NUMBER).contains(*q))
    {
        Some(q) => Err(format!(
            "no TPC-H query {q}: accepted are 1 to 22, and 23 for a query calling a host function"
        )),
        None => Ok(()),
    }
}

/// `--rss-probe NAME`: the peak resident set size, in bytes, of this process
/// after it ran only `variant`'s warm-up and one pass over the queries, under
/// the same pipeline as the timed run. Meant to run in a fresh process (see
/// [`Options::rss_probe_exe`]), so nothing another configuration allocated
/// counts.
pub async fn rss_probe(variant: Variant, options: &Options) -> Result<u64, String> {
    check_queries(&options.queries)?;
    let (pipeline, session) = alone(variant, options).await?;
    for _ in 0..options.warmup.max(1) + 1 {
        for &q in &options.queries {
            session.run(tpch_sql(q)).await?;
        }
    }
    pipeline.flushed_counts();
    Ok(peak_rss_bytes())
}

/// Runs [`rss_probe`] in `exe` for every configuration, the configurations
/// interleaved, [`Options::rss_repetitions`] times; the median per
/// configuration.
fn peak_rss_per_process(
    exe: &std::path::Path,
    options: &Options,
) -> Result<BTreeMap<Variant, u64>, String> {
    let queries: Vec<String> = options.queries.iter().map(|q| q.to_string()).collect();
    let mut samples: BTreeMap<Variant, Vec<f64>> = BTreeMap::new();
    let repetitions = options.rss_repetitions.max(1);
    for repetition in 0..repetitions {
        for (i, variant) in Variant::ALL.into_iter().enumerate() {
            if options.progress {
                progress(
                    repetition * Variant::ALL.len() + i,
                    repetitions * Variant::ALL.len(),
                    &format!("peak RSS: {}", variant.name()),
                );
            }
            let output = std::process::Command::new(exe)
                .args(["--rss-probe", variant.name()])
                .args(["--scale", &options.scale.to_string()])
                .args(["--queries", &queries.join(",")])
                .args(["--warmup", &options.warmup.to_string()])
                .output()
                .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let bytes = stdout
                .lines()
                .find_map(|line| line.strip_prefix("peak_rss_bytes="))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .filter(|_| output.status.success())
                .ok_or_else(|| {
                    format!(
                        "peak RSS probe for {} failed ({}): {}",
                        variant.name(),
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    )
                })?;
            samples.entry(variant).or_default().push(bytes as f64);
        }
    }
    if options.progress {
        eprintln!();
    }
    Ok(samples
        .into_iter()
        .map(|(variant, bytes)| (variant, median(&bytes) as u64))
        .collect())
}

/// Runs the benchmark.
pub async fn run(options: &Options) -> Result<Report, String> {
    check_queries(&options.queries)?;
    let dir = tpch_data(&options.data_root, options.scale)?;
    let pipeline = Pipeline::install()?;
    let mut sessions = Vec::new();
    for variant in Variant::ALL {
        let session = Session::new(variant)?;
        session.register_tpch(&dir).await?;
        sessions.push(Arc::new(session));
    }

    // Warm-up; the first pass checks every configuration against baseline.
    let mut mismatches = Vec::new();
    for pass in 0..options.warmup.max(1) {
        for &q in &options.queries {
            let mut expected = None;
            for session in &sessions {
                let rows = canonical_rows(&session.run(tpch_sql(q)).await?)?;
                if pass > 0 {
                    continue;
                }
                match &expected {
                    None => expected = Some(rows),
                    Some(expected) if *expected != rows => mismatches.push(format!(
                        "Q{q}: {} returned {} rows differing from baseline's {}",
                        session.variant.name(),
                        rows.len(),
                        expected.len()
                    )),
                    Some(_) => {}
                }
            }
        }
        let mut expected = None;
        for session in &sessions {
            let rows = canonical_rows(&session.run(SHORT_QUERY).await?)?;
            let fresh = canonical_rows(
                &session
                    .run(&fresh_short_query(FRESH.fetch_add(1, Ordering::Relaxed)))
                    .await?,
            )?;
            if fresh != rows && pass == 0 {
                mismatches.push(format!(
                    "short query with a fresh literal: {} differs from the short query",
                    session.variant.name()
                ));
            }
            match &expected {
                None => expected = Some(rows),
                Some(expected) if *expected != rows && pass == 0 => mismatches.push(format!(
                    "short query: {} differs from baseline",
                    session.variant.name()
                )),
                Some(_) => {}
            }
        }
    }

    // Measured rounds, each in a fresh random order.
    let mut rng = Rng::new(0xdf7_2ace);
    let mut timings: Timings = BTreeMap::new();
    let mut short: BTreeMap<Variant, Vec<f64>> = BTreeMap::new();
    let mut fresh: BTreeMap<Variant, Vec<f64>> = BTreeMap::new();
    let mut throughput: BTreeMap<Variant, Vec<f64>> = BTreeMap::new();
    let mut jobs: Vec<Job> = Vec::new();
    for variant in Variant::ALL {
        jobs.extend(options.queries.iter().map(|&q| Job::Query(variant, q)));
        jobs.push(Job::ShortLoop(variant));
        jobs.push(Job::FreshLoop(variant));
        jobs.push(Job::Throughput(variant));
    }
    let total = jobs.len() * options.rounds;
    for round in 0..options.rounds {
        rng.shuffle(&mut jobs);
        for (i, job) in jobs.iter().enumerate() {
            if options.progress {
                progress(
                    round * jobs.len() + i,
                    total,
                    &format!("round {}/{}", round + 1, options.rounds),
                );
            }
            match *job {
                Job::Query(variant, q) => {
                    let session = &sessions[variant as usize];
                    let start = Instant::now();
                    session.run(tpch_sql(q)).await?;
                    timings
                        .entry(variant)
                        .or_default()
                        .entry(q)
                        .or_default()
                        .push(start.elapsed().as_secs_f64());
                }
                Job::ShortLoop(variant) => {
                    let queries = vec![SHORT_QUERY; options.short_runs];
                    let took = run_in_turn(&sessions[variant as usize], &queries).await?;
                    short.entry(variant).or_default().push(took.as_secs_f64());
                }
                Job::FreshLoop(variant) => {
                    let queries: Vec<String> = (0..options.short_runs)
                        .map(|_| fresh_short_query(FRESH.fetch_add(1, Ordering::Relaxed)))
                        .collect();
                    let took = run_in_turn(&sessions[variant as usize], &queries).await?;
                    fresh.entry(variant).or_default().push(took.as_secs_f64());
                }
                Job::Throughput(variant) => {
                    let session = &sessions[variant as usize];
                    let took =
                        concurrent_short_loop(session, options.clients, options.short_runs).await?;
                    throughput
                        .entry(variant)
                        .or_default()
                        .push(took.as_secs_f64());
                }
            }
        }
    }
    if options.progress {
        progress(total, total, "done");
        eprintln!();
    }

    // One pass per configuration for spans (not timed).
    let mut passes: BTreeMap<Variant, SpanCounts> = BTreeMap::new();
    for session in &sessions {
        let before = pipeline.flushed_counts();
        for &q in &options.queries {
            // Counted once every span of the query has ended.
            if let (_, Some(ended)) = session.run_with_end(tpch_sql(q)).await? {
                ended.await;
            }
        }
        passes.insert(session.variant, pipeline.flushed_counts().since(before));
    }
    let peak_rss = match &options.rss_probe_exe {
        Some(exe) => peak_rss_per_process(exe, options)?,
        None => BTreeMap::new(),
    };

    let round_totals = |variant: Variant| -> Vec<f64> {
        (0..options.rounds)
            .map(|r| {
                timings
                    .get(&variant)
                    .map_or(0.0, |per_query| per_query.values().map(|t| t[r]).sum())
            })
            .collect()
    };
    let ratios =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(x, y)| x / y).collect() };
    let base = round_totals(Variant::Baseline);
    let raw = round_totals(Variant::Raw);
    let short_base = short.get(&Variant::Baseline).cloned().unwrap_or_default();
    let short_raw = short.get(&Variant::Raw).cloned().unwrap_or_default();
    let fresh_base = fresh.get(&Variant::Baseline).cloned().unwrap_or_default();
    let throughput_base = throughput
        .get(&Variant::Baseline)
        .cloned()
        .unwrap_or_default();
    let queries_run = options.queries.len().max(1) as u64;
    let variants = Variant::ALL
        .iter()
        .map(|&variant| {
            let totals = round_totals(variant);
            let short_times = short.get(&variant).cloned().unwrap_or_default();
            let fresh_times = fresh.get(&variant).cloned().unwrap_or_default();
            let throughput_times = throughput.get(&variant).cloned().unwrap_or_default();
            let worst_query = options
                .queries
                .iter()
                .map(|&q| {
                    let mine = &timings[&variant][&q];
                    let theirs = &timings[&Variant::Baseline][&q];
                    (q, median(&ratios(mine, theirs)))
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, f64::NAN));
            let counts = passes.get(&variant).copied().unwrap_or_default();
            VariantResult {
                name: variant.name(),
                vs_baseline: bootstrap_median(&ratios(&totals, &base), 2000, &mut rng),
                vs_raw: bootstrap_median(&ratios(&totals, &raw), 2000, &mut rng),
                short_vs_baseline: bootstrap_median(
                    &ratios(&short_times, &short_base),
                    2000,
                    &mut rng,
                ),
                short_vs_raw: bootstrap_median(&ratios(&short_times, &short_raw), 2000, &mut rng),
                fresh_vs_baseline: bootstrap_median(
                    &ratios(&fresh_times, &fresh_base),
                    2000,
                    &mut rng,
                ),
                // Queries per second over baseline's: the same work, so
                // baseline's time over this configuration's.
                throughput_vs_baseline: bootstrap_median(
                    &ratios(&throughput_base, &throughput_times),
                    2000,
                    &mut rng,
                ),
                worst_query,
                pass_seconds: median(&totals),
                spans: (counts.ended, counts.exported, counts.dropped()),
                attribute_bytes_per_query: counts.attribute_bytes / queries_run,
                peak_rss_bytes: peak_rss.get(&variant).copied().unwrap_or(0),
            }
        })
        .collect();

    // What each addition to `maximal` costs on top of it (keeping the
    // history, observing the host's functions, observing the memory pool):
    // over the TPC-H rounds and over the short-query loops.
    let maximal = round_totals(Variant::Maximal);
    let short_maximal = short.get(&Variant::Maximal).cloned().unwrap_or_default();
    let mut vs_maximal = |variant: Variant| {
        let short_times = short.get(&variant).cloned().unwrap_or_default();
        (
            bootstrap_median(&ratios(&round_totals(variant), &maximal), 2000, &mut rng),
            bootstrap_median(&ratios(&short_times, &short_maximal), 2000, &mut rng),
        )
    };
    let history_vs_maximal = vs_maximal(Variant::MaximalHistory);
    let udf_vs_maximal = vs_maximal(Variant::MaximalUdf);
    let memory_vs_maximal = vs_maximal(Variant::MaximalMemory);

    Ok(Report {
        history_vs_maximal,
        udf_vs_maximal,
        memory_vs_maximal,
        scale: options.scale,
        queries: options.queries.clone(),
        rounds: options.rounds,
        short_runs: options.short_runs,
        clients: options.clients,
        cores: cores(),
        memory_bytes: report::machine_memory_bytes(),
        allocator: ALLOCATOR,
        variants,
        mismatches,
    })
}
