//! `--quick` as a CI smoke test: every configuration returns the same rows as
//! `baseline` on TPC-H (scale 0.1), and the pipeline loses no span. No
//! timing is asserted: timings belong in `cargo xtask bench`.

use dftrace_bench::{Options, run};
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_configuration_returns_the_baseline_rows() -> Result<(), String> {
    let data_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tpch");
    let report = run(&Options::quick(data_root)).await?;
    assert!(report.mismatches.is_empty(), "{:?}", report.mismatches);
    assert_eq!(report.variants.len(), dftrace_bench::Variant::ALL.len());
    for variant in &report.variants {
        let (ended, exported, dropped) = variant.spans;
        assert_eq!(
            dropped, 0,
            "{}: {ended} ended, {exported} exported",
            variant.name
        );
        let traced = !matches!(variant.name, "baseline" | "maximal-unsampled");
        assert_eq!(ended > 0, traced, "{}: spans ended {ended}", variant.name);
    }
    Ok(())
}
