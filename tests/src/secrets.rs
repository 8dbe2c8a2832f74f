//! Statements a host runs with secret values in every place a literal or a
//! value of the data can stand, through every way a host runs them (SQL
//! then `collect`, the DataFrame API, parameters, prepared statements,
//! DML, `CREATE TABLE .. AS`, `EXPLAIN ANALYZE`, a failing cast), and
//! queries whose dynamic filters (a hash join's build-side values, a TopK
//! threshold) hold secret values of the data. Tests run them under a
//! session with dftrace, then search every exported byte for the secrets.

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::prelude::{ParquetReadOptions, SessionContext, col, lit};
use std::path::Path;
use std::sync::Arc;

/// The secret literals the statements carry, each in one statement (a
/// string with a `Qz` prefix no plan or id could show by chance, or a
/// five-digit number).
pub const LITERALS: &[&str] = &[
    "QzEquals",
    "QzLike",
    "QzInOne",
    "QzInTwo",
    "73511",
    "QzCase",
    "QzGroup",
    "QzJoin",
    "61234",
    "12278",
    // 61234 + 12278, folded by the optimizer: a value no SQL text shows.
    "73512",
    "QzValuesOne",
    "QzValuesTwo",
    "QzInsert",
    "QzCast",
    "QzExplain",
    "QzCreate",
    "QzLit",
    "QzParam",
    "QzPrepared",
    "2031-07-19",
    "73513",
    "QzRegex",
    "QzConstant",
    "QzQuoted",
    "QzHaving",
    "QzSubquery",
    "QzUnion",
];

/// The secret values of the data: the `api_key` column of `accounts`,
/// which the queries' dynamic filters see.
pub const DATA: &[&str] = &[
    "QzdataAmber",
    "QzdataBasalt",
    "QzdataCobalt",
    "QzdataDune",
    "QzdataEmber",
    "QzdataFjord",
    "QzdataGarnet",
    "QzdataHarbor",
];

/// Registers `people` (public values), `ledger` (for `INSERT`) and
/// `accounts` (a parquet file in `dir` whose `api_key` holds [`DATA`]).
pub async fn register(ctx: &SessionContext, dir: &Path) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("score", DataType::Int64, false),
    ]));
    let people = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..6)) as ArrayRef,
            Arc::new(StringArray::from(vec![
                "ada", "bob", "cy", "dee", "eve", "fay",
            ])),
            Arc::new(StringArray::from(vec![
                "oslo", "lima", "oslo", "kiev", "lima", "oslo",
            ])),
            Arc::new(Int64Array::from(vec![3, 5, 8, 13, 21, 34])),
        ],
    )?;
    ctx.register_table(
        "people",
        Arc::new(MemTable::try_new(schema, vec![vec![people]])?),
    )?;

    let ledger = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("note", DataType::Utf8, false),
    ]));
    ctx.register_table("ledger", Arc::new(MemTable::try_new(ledger, vec![vec![]])?))?;

    let accounts = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("api_key", DataType::Utf8, false),
        Field::new("owner", DataType::Utf8, false),
    ]));
    let ids: Vec<i64> = (0..DATA.len() as i64).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&accounts),
        vec![
            Arc::new(Int64Array::from(ids)) as ArrayRef,
            Arc::new(StringArray::from(DATA.to_vec())),
            Arc::new(StringArray::from(vec!["o"; DATA.len()])),
        ],
    )?;
    std::fs::create_dir_all(dir)?;
    let file = dir.join("accounts.parquet");
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&file)?, accounts, None)?;
    writer.write(&batch)?;
    writer.close()?;
    ctx.register_parquet(
        "accounts",
        file.display().to_string(),
        ParquetReadOptions::default(),
    )
    .await?;
    Ok(())
}

/// The SQL statements run with `ctx.sql(..).collect()`; each carries one or
/// more of [`LITERALS`].
pub const STATEMENTS: &[&str] = &[
    "SELECT id FROM people WHERE name = 'QzEquals'",
    "SELECT id FROM people WHERE name LIKE '%QzLike%'",
    "SELECT id FROM people WHERE city IN ('QzInOne', 'QzInTwo')",
    "SELECT CASE WHEN score > 73511 THEN 'QzCase' ELSE 'plain' END AS c FROM people",
    "SELECT concat(city, 'QzGroup') AS k, count(*) AS n FROM people GROUP BY concat(city, 'QzGroup')",
    "SELECT p.id FROM people p JOIN people q ON p.id = q.id AND q.name <> 'QzJoin'",
    "SELECT id FROM people WHERE score > 61234 + 12278",
    "SELECT * FROM (VALUES (1, 'QzValuesOne'), (2, 'QzValuesTwo')) AS v(n, s)",
    "INSERT INTO ledger VALUES (1, 'QzInsert')",
    "EXPLAIN ANALYZE SELECT id FROM people WHERE name = 'QzExplain'",
    "CREATE TABLE snapshot AS SELECT id FROM people WHERE city <> 'QzCreate'",
    "SELECT id FROM people WHERE DATE '2031-07-19' > DATE '2001-01-01'",
    "SELECT id FROM people LIMIT 73513",
    "SELECT id FROM people WHERE name ~ 'QzRegex'",
    "SELECT 'QzConstant' AS constant_column, id FROM people",
    "SELECT id FROM people WHERE name = 'It''s QzQuoted'",
    "SELECT city, max(score) AS top FROM people GROUP BY city HAVING max(city) <> 'QzHaving'",
    "SELECT id FROM people WHERE id IN (SELECT id FROM people WHERE name <> 'QzSubquery')",
    "SELECT name FROM people UNION ALL SELECT 'QzUnion'",
];

/// The queries whose dynamic filters hold [`DATA`] values after they ran:
/// a self-join on `api_key` (the build side's keys reach the probe side's
/// scan) and a TopK on it (its threshold is a value of the data).
pub const DYNAMIC_FILTER_QUERIES: &[&str] = &[
    "SELECT a.owner FROM accounts a JOIN accounts b ON a.api_key = b.api_key WHERE b.id < 3",
    "SELECT api_key FROM accounts ORDER BY api_key DESC LIMIT 2",
];

/// Runs every statement the ways a host does; returns how many ran
/// something (and so have a root span). The failing cast is expected to
/// fail (an error whose text quotes the value).
pub async fn run(ctx: &SessionContext) -> Result<usize> {
    let mut ran = 0;
    for sql in STATEMENTS.iter().chain(DYNAMIC_FILTER_QUERIES) {
        ctx.sql(sql).await?.collect().await?;
        ran += 1;
    }
    // The DataFrame API, with a literal of its own.
    ctx.table("people")
        .await?
        .filter(col("name").eq(lit("QzLit")))?
        .select_columns(&["id"])?
        .collect()
        .await?;
    // Parameters bound to a statement's placeholders.
    ctx.sql("SELECT id FROM people WHERE name = $1")
        .await?
        .with_param_values(vec![ScalarValue::from("QzParam")])?
        .collect()
        .await?;
    // A prepared statement.
    ctx.sql("PREPARE find_person(VARCHAR) AS SELECT id FROM people WHERE name = $1")
        .await?
        .collect()
        .await?;
    ctx.sql("EXECUTE find_person('QzPrepared')")
        .await?
        .collect()
        .await?;
    // `PREPARE` itself runs nothing: no root.
    ran += 3;
    // A cast that fails, its error quoting the value.
    let failed = match ctx.sql("SELECT CAST('QzCast' AS INT)").await {
        Ok(df) => df.collect().await.is_err(),
        Err(_) => true,
    };
    if !failed {
        return Err(datafusion::error::DataFusionError::Execution(
            "the cast of 'QzCast' to INT was expected to fail".to_owned(),
        ));
    }
    Ok(ran + 1)
}

/// Whether `text` (exported bytes, log output) holds `value`: a number
/// counts where it stands as a token of its own, not inside an id, a
/// timestamp or a measurement (numbers of dftrace's own).
pub fn holds(text: &str, value: &str) -> bool {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return text.contains(value);
    }
    text.match_indices(value).any(|(at, _)| {
        let before = text[..at].bytes().next_back();
        let after = text[at + value.len()..].bytes().next();
        !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

/// The secrets among `values` that `text` holds.
pub fn found_in<'a>(text: &str, values: &[&'a str]) -> Vec<&'a str> {
    values
        .iter()
        .copied()
        .filter(|value| holds(text, value))
        .collect()
}
