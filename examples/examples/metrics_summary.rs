//! dftrace-metrics-summary on its own: a stable, versioned summary of one
//! query's DataFusion metrics, and the same figures as typed attributes.
//!
//! `cargo run -p dftrace-examples --example metrics_summary`

use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use dftrace_metrics_summary::{SCHEMA_VERSION, attributes, summarize};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = SessionContext::new();
    let df = ctx
        .sql(
            "SELECT v % 10 AS k, count(*) AS n FROM unnest(range(0, 100000)) AS t(v) \
             WHERE v % 3 = 0 GROUP BY k ORDER BY k",
        )
        .await?;
    let plan = df.create_physical_plan().await?;
    let batches = collect(plan.clone(), ctx.task_ctx()).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();

    // After execution the plan holds its metrics; summarize reads them.
    let summary = summarize(&plan);
    println!("{}", serde_json::to_string_pretty(&summary)?);
    for attribute in attributes(&summary) {
        println!("{} = {}", attribute.key, attribute.value);
    }
    assert_eq!(summary.schema_version, SCHEMA_VERSION);
    assert_eq!(summary.output_rows, Some(rows as u64));
    assert!(
        summary
            .filter_selectivity
            .is_some_and(|s| (s - 1.0 / 3.0).abs() < 0.01)
    );
    Ok(())
}
