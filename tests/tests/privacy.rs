//! No value leaves the process unless the host asks: generated tables with
//! secret and public columns (secret names in every spelling the
//! normalisation must catch, nested in structs, lists and maps, as strings,
//! views, dictionaries and binaries) and generated queries (projections
//! with aliases, struct access, functions, filters with string and number
//! literals, joins, aggregates, unions, a column named `column3` aliased to a
//! secret name) run under every preset through
//! dftrace-bootstrap's real file sink; afterwards the exported bytes hold
//! no secret value and no literal of any query, the results equal an
//! uninstrumented run, and the previews still show public values. A session
//! with `rules.record_literals` shows that the search finds what is there.
//!
//! The same through `ctx.sql(..).collect()` and the other ways a host runs
//! statements, with literals of every kind and data values that dynamic
//! filters hold (`dftrace_tests::secrets`; `host_telemetry.rs` runs them
//! through a host's own subscriber and provider).
//!
//! One test function: the bootstrap installs process-wide telemetry once,
//! and the file is read after it has shut down.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, DictionaryArray, ListBuilder, MapBuilder, StringBuilder,
    StringViewArray, StructArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use dftrace_bootstrap::{ExportConfig, FileConfig, Sink};
use dftrace_preview_redaction as _;
use dftrace_registry::{DftraceConfig, Preset};
use dftrace_rules::{QueryOptions, run_sql};
use dftrace_tests::dftrace_context;
use dftrace_tests::rows::{
    batch_of, canonical_rows, ints, register_batches, register_join_partner, texts,
};
use dftrace_tests::secrets::holds;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use std::sync::Arc;

/// Spellings of secret names the default deny list must catch once case and
/// separators are ignored.
const SECRET_NAMES: &[&str] = &[
    "password",
    "Pass_Word",
    "PASSWORD",
    "passWord",
    "pass-word",
    "apiKey",
    "API_KEY",
    "api-key",
    "Secret",
    "user_token",
    "AccessToken",
    "Credential",
];
const PUBLIC_NAMES: &[&str] = &["label", "city", "nickname", "color", "Region"];

/// A generated table: its name, data, secret values and public values.
#[derive(Debug, Clone)]
struct Generated {
    secret_name: String,
    public_name: String,
    secret_kind: SecretKind,
    secrets: Vec<String>,
    publics: Vec<String>,
}

/// How the secret column is stored.
#[derive(Debug, Clone, Copy)]
enum SecretKind {
    Utf8,
    View,
    Dictionary,
    Binary,
    /// A struct `creds` with the secret under `token`.
    Nested,
    /// A list of strings.
    List,
    /// A map whose values are the secrets.
    Map,
}

fn secret_value() -> impl Strategy<Value = String> {
    "[a-z]{6,10}".prop_map(|tail| format!("Zq{tail}"))
}

fn public_value() -> impl Strategy<Value = String> {
    "[a-z]{5,8}".prop_map(|tail| format!("Pu{tail}"))
}

fn generated() -> impl Strategy<Value = Generated> {
    (
        prop::sample::select(SECRET_NAMES),
        prop::sample::select(PUBLIC_NAMES),
        prop::sample::select(vec![
            SecretKind::Utf8,
            SecretKind::View,
            SecretKind::Dictionary,
            SecretKind::Binary,
            SecretKind::Nested,
            SecretKind::List,
            SecretKind::Map,
        ]),
        prop::collection::vec(secret_value(), 8),
        prop::collection::vec(public_value(), 8),
    )
        .prop_map(|(secret, public, kind, secrets, publics)| Generated {
            secret_name: secret.to_owned(),
            public_name: public.to_owned(),
            secret_kind: kind,
            secrets,
            publics,
        })
}

/// Table `t`: `id`, the public column, the secret column; table `u`: `id`,
/// `w` (public).
fn register(ctx: &SessionContext, table: &Generated) -> datafusion::error::Result<()> {
    let (secret_type, secret): (DataType, ArrayRef) = match table.secret_kind {
        SecretKind::Utf8 => (DataType::Utf8, texts(&table.secrets)),
        SecretKind::View => (
            DataType::Utf8View,
            Arc::new(StringViewArray::from_iter_values(&table.secrets)),
        ),
        SecretKind::Dictionary => {
            let array: DictionaryArray<Int32Type> =
                table.secrets.iter().map(String::as_str).collect();
            (array.data_type().clone(), Arc::new(array))
        }
        SecretKind::Binary => (
            DataType::Binary,
            Arc::new(BinaryArray::from_iter_values(
                table.secrets.iter().map(String::as_bytes),
            )),
        ),
        SecretKind::Nested => {
            let token = texts(&table.secrets);
            let fields = Fields::from(vec![Field::new("token", DataType::Utf8, false)]);
            let creds = StructArray::new(fields.clone(), vec![token], None);
            let outer_fields =
                Fields::from(vec![Field::new("creds", DataType::Struct(fields), false)]);
            let outer = StructArray::new(outer_fields.clone(), vec![Arc::new(creds)], None);
            (DataType::Struct(outer_fields), Arc::new(outer))
        }
        SecretKind::List => {
            let mut builder = ListBuilder::new(StringBuilder::new());
            for secret in &table.secrets {
                builder.append_value([Some(secret.as_str())]);
            }
            let list = builder.finish();
            (list.data_type().clone(), Arc::new(list))
        }
        SecretKind::Map => {
            let mut builder = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
            for secret in &table.secrets {
                builder.keys().append_value("k");
                builder.values().append_value(secret);
                builder.append(true)?;
            }
            let map = builder.finish();
            (map.data_type().clone(), Arc::new(map))
        }
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(&table.public_name, DataType::Utf8, false),
        Field::new(&table.secret_name, secret_type, true),
    ]));
    let batch = RecordBatch::try_new(schema, vec![ints(0..8), texts(&table.publics), secret])?;
    register_batches(ctx, "t", vec![batch])?;
    register_join_partner(ctx, 0..8, table.publics.iter().cloned())?;
    // The secrets again under a name that says nothing (a headerless CSV's
    // `column3`): only a query's alias tells they are secret.
    let headerless = batch_of([("id", ints(0..8)), ("column3", texts(&table.secrets))])?;
    register_batches(ctx, "headerless", vec![headerless])
}

/// The secret as a string value, whatever its storage.
fn secret_text(table: &Generated) -> String {
    let s = format!("\"{}\"", table.secret_name);
    match table.secret_kind {
        SecretKind::Nested => format!("{s}['creds']['token']"),
        SecretKind::List => format!("array_element({s}, 1)"),
        SecretKind::Map => format!("array_element(map_extract({s}, 'k'), 1)"),
        _ => format!("CAST({s} AS VARCHAR)"),
    }
}

/// The queries for a table, carrying `string_literal` and `number`.
fn queries(table: &Generated, string_literal: &str, number: u32) -> Vec<String> {
    let p = format!("\"{}\"", table.public_name);
    let s = format!("\"{}\"", table.secret_name);
    let secret_text = secret_text(table);
    vec![
        format!(
            "SELECT id, {p} AS shown, {secret_text} AS tok FROM t WHERE {p} <> '{string_literal}'"
        ),
        format!("SELECT upper({secret_text}) AS loud, id + {number} AS bumped FROM t"),
        format!("SELECT concat({p}, '{string_literal}') AS tagged FROM t WHERE id < {number}"),
        format!(
            "SELECT t.id, u.w, {secret_text} AS x FROM t JOIN u ON t.id = u.id WHERE u.w <> '{string_literal}'"
        ),
        format!("SELECT {p}, count(*) AS n, max({secret_text}) AS m FROM t GROUP BY {p}"),
        format!(
            "SELECT {p} AS v FROM t UNION ALL SELECT '{string_literal}' AS v FROM u WHERE id > {number}"
        ),
        format!("SELECT {s} FROM t WHERE id <> {number}"),
        // Masked below the alias too: in the filter's and the scan's previews.
        format!("SELECT id, column3 AS {s} FROM headerless WHERE id <> {number}"),
    ]
}

/// Whether `value` is in the exported bytes. A number counts where it stands
/// as a token of its own in text (attribute strings, names, messages), not
/// inside an id or a measurement: those are numbers of dftrace's own.
fn appears(bytes: &str, text: &str, value: &str) -> bool {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        holds(text, value)
    } else {
        bytes.contains(value)
    }
}

/// Every string the file's spans hold: attribute strings, span names, status
/// messages and event attribute strings, one per line.
fn strings_of(bytes: &str) -> String {
    fn walk(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("stringValue" | "name" | "message", serde_json::Value::String(text)) => {
                            out.push_str(text);
                            out.push('\n');
                        }
                        _ => walk(inner, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    for line in bytes.lines() {
        if let Ok(request) = serde_json::from_str::<serde_json::Value>(line) {
            walk(&request, &mut out);
        }
    }
    out
}

#[test]
fn no_value_leaves_the_process_unless_asked() {
    let dir = std::env::temp_dir().join(format!("dftrace-privacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut export = ExportConfig {
        sink: Sink::File,
        file: FileConfig {
            dir: dir.display().to_string(),
            path: None,
        },
        // Bounds on a hang only: the search below needs every span, and
        // whether the export thread keeps up with thousands of spans must
        // not depend on how busy the machine is.
        shutdown_timeout_ms: 600_000,
        ..ExportConfig::default()
    };
    export.batch.max_queue_size = 1_000_000;
    let guard = dftrace_bootstrap::init(&export).unwrap();
    let trace_file = guard.trace_file().unwrap().to_path_buf();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let presets: Vec<(String, DftraceConfig)> = Preset::ALL
        .iter()
        .map(|preset| {
            (
                preset.to_string(),
                DftraceConfig::builder().preset(*preset).build().unwrap(),
            )
        })
        .collect();

    // The runner's closure is `Fn`: what it collects goes through a lock.
    let forbidden: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let publics: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    // Five digits at least: shorter numbers occur by chance in timestamps
    // and ids, which the search below skips anyway (it looks for the number
    // as a token of its own). Never this process's id: it is in the trace
    // file's path.
    let pid = std::process::id();
    let number = (10_000_u32..99_999).prop_filter("not this process's id", move |n| *n != pid);
    let strategy = (generated(), "[a-z]{4,8}", number);
    runner
        .run(&strategy, |(table, literal, number)| {
            let literal = format!("Lt{literal}");
            {
                let mut forbidden = forbidden.lock().unwrap();
                forbidden.extend(table.secrets.iter().cloned());
                forbidden.push(literal.clone());
                forbidden.push(number.to_string());
            }
            publics
                .lock()
                .unwrap()
                .extend(table.publics.iter().cloned());
            let fail =
                |error: datafusion::error::DataFusionError| TestCaseError::fail(error.to_string());
            runtime.block_on(async {
                let plain = SessionContext::new();
                register(&plain, &table).map_err(fail)?;
                for (name, config) in &presets {
                    let ctx = dftrace_context(config);
                    register(&ctx, &table).map_err(fail)?;
                    for sql in queries(&table, &literal, number) {
                        let expected = canonical_rows(
                            &plain
                                .sql(&sql)
                                .await
                                .map_err(fail)?
                                .collect()
                                .await
                                .map_err(fail)?,
                        );
                        let traced = run_sql(&ctx, &sql, &QueryOptions::new())
                            .await
                            .map_err(fail)?;
                        prop_assert_eq!(
                            canonical_rows(&traced.batches),
                            expected,
                            "{}: {}",
                            name,
                            sql
                        );
                        let ended = traced.ended();
                        drop(traced);
                        ended.await;
                    }
                    // A failing cast of a secret: the error quotes the value.
                    let failing = format!("SELECT CAST({} AS INT) FROM t", secret_text(&table));
                    prop_assert!(run_sql(&ctx, &failing, &QueryOptions::new()).await.is_err());
                }
                Ok(())
            })
        })
        .unwrap();

    // The control: a session that keeps literals exports them.
    let kept = "Kept0literal";
    runtime.block_on(async {
        let config = DftraceConfig::builder()
            .preset(Preset::MaximalNoData)
            .set("rules.record_literals", true)
            .build()
            .unwrap();
        let ctx = dftrace_context(&config);
        let query = run_sql(
            &ctx,
            &format!(
                "SELECT v FROM (VALUES (1), (2)) AS x(v) WHERE CAST(v AS VARCHAR) <> '{kept}'"
            ),
            &QueryOptions::new(),
        )
        .await
        .unwrap();
        let ended = query.ended();
        drop(query);
        ended.await;
    });
    // The host's kinds of literals and the data values dynamic filters
    // hold, through `ctx.sql(..).collect()` and the other entry points.
    let secrets_dir = dir.join("secrets");
    runtime.block_on(async {
        for (name, config) in &presets {
            let ctx = dftrace_context(config);
            dftrace_tests::secrets::register(&ctx, &secrets_dir)
                .await
                .unwrap();
            dftrace_tests::secrets::run(&ctx)
                .await
                .unwrap_or_else(|error| panic!("{name}: {error}"));
        }
    });
    drop(runtime);
    let report = guard.shutdown();
    assert_eq!(report.dropped(), 0, "{report:?}");

    let bytes = std::fs::read_to_string(&trace_file).unwrap();
    let forbidden = forbidden.into_inner().unwrap();
    let publics = publics.into_inner().unwrap();
    let text = strings_of(&bytes);
    let leaks: Vec<&String> = forbidden
        .iter()
        .filter(|value| appears(&bytes, &text, value))
        .collect();
    assert!(
        leaks.is_empty(),
        "{} values reached the trace file, e.g. {:?}",
        leaks.len(),
        leaks.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        bytes.contains(kept),
        "with rules.record_literals the literal is in the trace: the search finds values"
    );
    let mut host_leaks = dftrace_tests::secrets::found_in(&text, dftrace_tests::secrets::LITERALS);
    host_leaks.extend(dftrace_tests::secrets::found_in(
        &text,
        dftrace_tests::secrets::DATA,
    ));
    assert!(
        host_leaks.is_empty(),
        "the host's literals and data values reached the trace file: {host_leaks:?}"
    );
    assert!(
        publics.iter().any(|value| bytes.contains(value.as_str())),
        "maximal previews still show public values"
    );
    let _ = std::fs::remove_dir_all(dir);
}
