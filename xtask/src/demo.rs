//! `cargo xtask demo`: TPC-H Q1 through the traced CLI, on the embedded
//! default sink (an OTLP-JSON-lines file plus a summary line per query).

use crate::process::{cargo, run};

/// TPC-H Q1, the pricing summary report.
const Q1: &str = "select l_returnflag, l_linestatus, sum(l_quantity) as sum_qty, sum(l_extendedprice) as sum_base_price, sum(l_extendedprice * (1 - l_discount)) as sum_disc_price, avg(l_quantity) as avg_qty, avg(l_discount) as avg_disc, count(*) as count_order from lineitem where l_shipdate <= date '1998-12-01' - interval '90' day group by l_returnflag, l_linestatus order by l_returnflag, l_linestatus";

pub(crate) fn run_demo(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!(
            "`cargo xtask demo` takes no arguments, got `{extra}`"
        ));
    }
    let root = crate::workspace_root();
    let data = root.join("target/tpch/sf0.01");
    if !data.join("lineitem/part-0.parquet").exists() {
        eprintln!(
            "generating TPC-H scale 0.01 parquet into {}",
            data.display()
        );
        run(cargo()
            .args([
                "run",
                "-q",
                "-p",
                "dftrace-tests",
                "--bin",
                "tpch_gen",
                "--",
            ])
            .arg(&data)
            .arg("0.01"))?;
    }
    let binary = crate::cli::build(false)?;
    let create = format!(
        "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '{}/'",
        data.join("lineitem").display()
    );
    // Run from the workspace root: traces land in ./dftrace-traces/.
    run(std::process::Command::new(&binary)
        .current_dir(&root)
        .args(["-q", "-c", &create, "-c", Q1]))?;
    eprintln!(
        "\nThe trace file above holds every span of both statements as OTLP JSON lines \
         (POST a line to any collector's /v1/traces, or set OTEL_EXPORTER_OTLP_ENDPOINT to \
         export directly). The `cargo xtask view` command above draws the query: a flame \
         graph and an HTML page to open in a browser."
    );
    Ok(())
}
