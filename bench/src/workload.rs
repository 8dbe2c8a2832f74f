//! The configurations compared and the queries they run.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion_tracing::{
    InstrumentationOptions, RuleInstrumentationOptions, instrument_rules_with_info_spans,
    instrument_with_info_spans, pretty_format_compact_batch,
};
use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
use dftrace_rules::{QueryEnded, QueryOptions, run_sql};
use dftrace_tests::tpch::Table;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::Instrument;

// Plugins register at link time: the bench links them as a host would.
use dftrace_history as _;
use dftrace_memory as _;
use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_preview_redaction as _;
use dftrace_udf as _;

/// One configuration under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    /// No instrumentation.
    Baseline,
    /// `datafusion-tracing` used directly with `maximal`'s options.
    Raw,
    /// dftrace's deferred operator spans and metrics only: no planner spans,
    /// no previews.
    ExecOnly,
    /// dftrace, `maximal` with `datafusion-tracing`'s live operator spans.
    Live,
    /// dftrace, `production-lean`.
    ProductionLean,
    /// dftrace, `maximal-no-data`.
    MaximalNoData,
    /// dftrace, `maximal`.
    Maximal,
    /// dftrace, `maximal` under a parent that is not sampled.
    MaximalUnsampled,
    /// dftrace, `maximal` with the query history kept (`history.enabled`).
    MaximalHistory,
    /// dftrace, `maximal` with the host's functions observed (`udf.enabled`).
    MaximalUdf,
    /// dftrace, `maximal` with the memory pool observed (`memory.enabled`).
    MaximalMemory,
}

impl Variant {
    /// Every configuration, in report order.
    pub const ALL: [Variant; 11] = [
        Variant::Baseline,
        Variant::Raw,
        Variant::ExecOnly,
        Variant::Live,
        Variant::ProductionLean,
        Variant::MaximalNoData,
        Variant::Maximal,
        Variant::MaximalUnsampled,
        Variant::MaximalHistory,
        Variant::MaximalUdf,
        Variant::MaximalMemory,
    ];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline",
            Variant::Raw => "raw",
            Variant::ExecOnly => "exec-only",
            Variant::Live => "live",
            Variant::ProductionLean => "production-lean",
            Variant::MaximalNoData => "maximal-no-data",
            Variant::Maximal => "maximal",
            Variant::MaximalUnsampled => "maximal-unsampled",
            Variant::MaximalHistory => "maximal+history",
            Variant::MaximalUdf => "maximal+udf",
            Variant::MaximalMemory => "maximal+memory",
        }
    }

    /// The configuration named `name` in reports.
    pub fn from_name(name: &str) -> Result<Variant, String> {
        Variant::ALL
            .into_iter()
            .find(|variant| variant.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Variant::ALL.iter().map(|v| v.name()).collect();
                format!(
                    "no configuration `{name}`: accepted are {}",
                    names.join(", ")
                )
            })
    }
}

/// A sampled and an unsampled W3C parent (the default sampler is
/// parent-based, so the second switches a whole query's tracing off).
const UNSAMPLED_PARENT: &str = "00-5ab1e5ab1e5ab1e5ab1e5ab1e5ab1e5a-00f067aa0ba902b7-00";

/// The same row preview `maximal` keeps, through upstream's own formatter.
fn raw_options() -> InstrumentationOptions {
    let preview = dftrace_preview_redaction::PreviewConfig::default();
    InstrumentationOptions::builder()
        .record_metrics(true)
        .preview_limit(5)
        .preview_fn(Arc::new(move |batch: &RecordBatch| {
            pretty_format_compact_batch(
                batch,
                preview.max_width,
                preview.max_row_height,
                preview.min_compacted_col_width,
            )
            .map(|table| table.to_string())
        }))
        .build()
}

/// A configuration's session.
pub struct Session {
    /// Which configuration.
    pub variant: Variant,
    ctx: SessionContext,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("variant", &self.variant)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Builds the session for `variant` the way its user would.
    pub fn new(variant: Variant) -> Result<Session, String> {
        let mut builder = SessionStateBuilder::new().with_default_features();
        // Every configuration has the host's function; query 23 calls it.
        builder
            .scalar_functions()
            .get_or_insert_with(Vec::new)
            .push(Arc::new(host_function()));
        let state = match variant {
            Variant::Baseline => builder.build(),
            Variant::Raw => {
                let rule = instrument_with_info_spans!(options: raw_options());
                let state = builder.with_physical_optimizer_rule(rule).build();
                instrument_rules_with_info_spans!(
                    options: RuleInstrumentationOptions::full().with_plan_diff(),
                    state: state
                )
            }
            Variant::ExecOnly
            | Variant::Live
            | Variant::ProductionLean
            | Variant::MaximalNoData
            | Variant::Maximal
            | Variant::MaximalUnsampled
            | Variant::MaximalHistory
            | Variant::MaximalUdf
            | Variant::MaximalMemory => {
                let preset = match variant {
                    Variant::ProductionLean | Variant::ExecOnly => Preset::ProductionLean,
                    Variant::MaximalNoData => Preset::MaximalNoData,
                    _ => Preset::Maximal,
                };
                let mut config = DftraceConfig::builder().preset(preset);
                if variant == Variant::ExecOnly {
                    config = config.set("rules.rule_mode", "disabled");
                }
                if variant == Variant::Live {
                    config = config
                        .set("rules.operator_spans", "live")
                        .set("rules.record_literals", true);
                }
                if variant == Variant::MaximalHistory {
                    config = config.set("history.enabled", true);
                }
                // dftrace-udf is linked for `maximal+udf`; the others leave
                // the host's function as it is.
                config = config.set("udf.enabled", variant == Variant::MaximalUdf);
                config = config.set("memory.enabled", variant == Variant::MaximalMemory);
                let config = config.build().map_err(|e| e.to_string())?;
                builder
                    .with_dftrace(&config)
                    .and_then(|b| b.build_dftrace())
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(Session {
            variant,
            ctx: SessionContext::new_with_state(state),
        })
    }

    /// Registers the TPC-H tables in `dir`.
    pub async fn register_tpch(&self, dir: &Path) -> Result<(), String> {
        for table in Table::ALL {
            let path = dir.join(format!("{}.parquet", table.name()));
            self.ctx
                .register_parquet(
                    table.name(),
                    path.display().to_string(),
                    ParquetReadOptions::default(),
                )
                .await
                .map_err(|e| format!("register {}: {e}", table.name()))?;
        }
        Ok(())
    }

    /// Runs `sql` as this configuration's user would, returning the rows.
    pub async fn run(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        self.run_with_end(sql).await.map(|(batches, _)| batches)
    }

    /// Like [`Session::run`], with the handle that resolves when the query's
    /// trace is complete (for dftrace's configurations).
    pub async fn run_with_end(
        &self,
        sql: &str,
    ) -> Result<(Vec<RecordBatch>, Option<QueryEnded>), String> {
        let traced = |query: dftrace_rules::TracedQuery| {
            let ended = query.ended();
            (query.batches, Some(ended))
        };
        let result = match self.variant {
            Variant::Baseline => self.collect(sql).await.map(|batches| (batches, None)),
            // Upstream gives no root span; a host would open one per query.
            Variant::Raw => self
                .collect(sql)
                .instrument(tracing::info_span!("query"))
                .await
                .map(|batches| (batches, None)),
            Variant::MaximalUnsampled => {
                let options = QueryOptions::new().traceparent(UNSAMPLED_PARENT);
                run_sql(&self.ctx, sql, &options)
                    .await
                    .map(traced)
                    .map_err(|e| e.to_string())
            }
            _ => run_sql(&self.ctx, sql, &QueryOptions::new())
                .await
                .map(traced)
                .map_err(|e| e.to_string()),
        };
        result.map_err(|e| format!("{}: {e}", self.variant.name()))
    }

    async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        match self.ctx.sql(sql).await {
            Ok(df) => df.collect().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The TPC-H tables at `scale` under `root`, generated once and cached.
pub fn tpch_data(root: &Path, scale: f64) -> Result<PathBuf, String> {
    let dir = root.join(format!("sf{scale}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for table in Table::ALL {
        let path = dir.join(format!("{}.parquet", table.name()));
        if !path.is_file() {
            eprintln!("generating TPC-H {} at scale {scale}", table.name());
            table
                .write_parquet(scale, &path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(dir)
}

/// The query number of [`UDF_QUERY`] in `--queries`.
pub const UDF_QUERY_NUMBER: usize = 23;

/// A query whose work is mostly a host function: a discounted price per
/// line item, grouped by return flag.
pub const UDF_QUERY: &str = "select l_returnflag, \
     sum(host_discounted(cast(l_extendedprice as double), cast(l_discount as double))) \
     as revenue from lineitem group by l_returnflag order by l_returnflag";

/// The host's function: `price * (1 - discount)`, row by row, as a host's
/// own code would be.
fn host_function() -> datafusion::logical_expr::ScalarUDF {
    use datafusion::arrow::array::{Array, ArrayRef, Float64Array};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    create_udf(
        "host_discounted",
        vec![DataType::Float64, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let price = datafusion::common::cast::as_float64_array(&arrays[0])?;
            let discount = datafusion::common::cast::as_float64_array(&arrays[1])?;
            let out: Float64Array = (0..price.len())
                .map(|i| {
                    (!price.is_null(i) && !discount.is_null(i))
                        .then(|| price.value(i) * (1.0 - discount.value(i)))
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

/// The short query: about ten operators over the two tiny tables.
pub const SHORT_QUERY: &str = "select n_name, r_name, count(*) as c from nation join region \
     on n_regionkey = r_regionkey where n_nationkey % 2 = 0 group by n_name, r_name \
     order by n_name";

/// [`SHORT_QUERY`] with a literal of its own, `run` (the same rows): as a
/// dashboard sends it, the same shape with new values, so that nothing
/// keyed on the exact text can help.
pub fn fresh_short_query(run: u64) -> String {
    format!(
        "select n_name, r_name, count(*) as c from nation join region \
         on n_regionkey = r_regionkey where n_nationkey % 2 = 0 \
         and n_comment <> 'fresh literal {run}' group by n_name, r_name order by n_name"
    )
}
