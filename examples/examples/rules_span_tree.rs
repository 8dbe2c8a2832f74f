//! dftrace-rules on its own (no registry): operator spans from the exec rule,
//! planner phase spans, and a root span per query; prints the span tree.
//!
//! `cargo run -p dftrace-examples --example rules_span_tree`

mod common;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace_registry::QUERY_SPAN_NAME;
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_rules::{RuleMode, RulesConfig, exec_rule, instrument_planner};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = common::capture_spans()?;

    let config = RulesConfig {
        rule_mode: RuleMode::PhaseOnly,
        ..RulesConfig::default()
    };
    // The exec rule goes last, so it wraps the final plan.
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_physical_optimizer_rule(exec_rule(&config, None)?)
        .build();
    let ctx = SessionContext::new_with_state(instrument_planner(state, &config));

    let sql = "SELECT v % 3 AS k, count(*) AS n FROM unnest(range(0, 30)) AS t(v) \
               WHERE v > 4 GROUP BY k ORDER BY k";
    let query = run_sql(&ctx, sql, &QueryOptions::new()).await?;
    println!(
        "{}",
        datafusion::arrow::util::pretty::pretty_format_batches(&query.batches)?
    );
    println!("trace {}:", query.trace_id);
    drop(query);

    let spans = common::finished_spans(&exporter).await?;
    common::print_tree(&spans);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    for expected in [
        QUERY_SPAN_NAME,
        "optimize_logical_plan",
        "AggregateExec",
        "SortExec",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    Ok(())
}
