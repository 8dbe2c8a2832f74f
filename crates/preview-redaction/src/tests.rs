use super::*;
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, DictionaryArray, Float64Array, Int64Array, LargeListArray,
    LargeStringArray, ListArray, MapBuilder, StringArray, StringBuilder, StringViewArray,
    StructArray, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Int32Type, Schema};
use proptest::prelude::*;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns.into_iter().map(|(n, a)| (n.to_owned(), a))).unwrap()
}

fn users() -> RecordBatch {
    let user = StructArray::from(vec![
        (
            Arc::new(Field::new("name", DataType::Utf8, false)),
            Arc::new(StringArray::from(vec!["ada", "bob"])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("email", DataType::Utf8, false)),
            Arc::new(StringArray::from(vec![
                "ada@example.com",
                "bob@example.com",
            ])) as ArrayRef,
        ),
    ]);
    let session_fields = Fields::from(vec![
        Field::new("kind", DataType::Utf8, true),
        Field::new("refresh_token", DataType::Utf8, true),
    ]);
    let sessions_values = StructArray::new(
        session_fields.clone(),
        vec![
            Arc::new(StringArray::from(vec!["web", "cli", "web"])),
            Arc::new(StringArray::from(vec!["tok-AAA", "tok-BBB", "tok-CCC"])),
        ],
        None,
    );
    let sessions = ListArray::new(
        Arc::new(Field::new_list_field(
            DataType::Struct(session_fields),
            true,
        )),
        datafusion::arrow::buffer::OffsetBuffer::from_lengths([2, 1]),
        Arc::new(sessions_values),
        None,
    );
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    labels.keys().append_value("team");
    labels.values().append_value("core");
    labels.append(true).unwrap();
    labels.keys().append_value("secret_note");
    labels.values().append_value("hidden-in-map");
    labels.append(true).unwrap();
    let api_key: DictionaryArray<Int32Type> = vec!["key-111", "key-222"].into_iter().collect();
    batch(vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2]))),
        (
            "password",
            Arc::new(StringViewArray::from(vec!["hunter2", "correct-horse"])),
        ),
        ("user", Arc::new(user)),
        ("sessions", Arc::new(sessions)),
        ("labels", Arc::new(labels.finish())),
        ("API_KEY", Arc::new(api_key)),
        (
            "ssn",
            Arc::new(Int64Array::from(vec![123456789, 987654321])),
        ),
        (
            "secret_blob",
            Arc::new(BinaryArray::from(vec![&b"raw-bytes"[..], b"more"])),
        ),
        ("balance", Arc::new(Float64Array::from(vec![10.5, 20.25]))),
    ])
}

fn wide_open() -> PreviewConfig {
    PreviewConfig {
        max_width: 0,
        max_row_height: 0,
        ..PreviewConfig::default()
    }
}

#[test]
fn default_deny_list_masks_by_name_at_any_depth_and_by_type() {
    let redactor = Redactor::new(&PreviewConfig {
        deny: [
            DEFAULT_DENY
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
            vec!["user.email".into()],
        ]
        .concat(),
        ..wide_open()
    })
    .unwrap();
    let batch = users();
    let preview = redactor.preview(&batch);
    for secret in [
        "hunter2",
        "correct-horse",
        "ada@example.com",
        "tok-AAA",
        "key-111",
        "123456789",
        "raw-bytes",
    ] {
        assert!(!preview.contains(secret), "{secret} leaked:\n{preview}");
    }
    assert!(
        !preview.contains("hidden-in-map"),
        "map entry keyed by a denied name:\n{preview}"
    );
    for shown in ["ada", "web", "core", "10.5"] {
        assert!(preview.contains(shown), "{shown} missing:\n{preview}");
    }
    // Names and types are kept.
    let redacted = redactor.redact(&batch).unwrap();
    for (before, after) in batch
        .schema()
        .fields()
        .iter()
        .zip(redacted.schema().fields())
    {
        assert_eq!(before.name(), after.name());
        assert_eq!(
            std::mem::discriminant(before.data_type()),
            std::mem::discriminant(after.data_type())
        );
    }
    insta::assert_snapshot!("deny_list", preview);
}

#[test]
fn allow_list_shows_only_what_it_names() {
    let redactor = Redactor::new(&PreviewConfig {
        policy: Policy::AllowList,
        allow: vec!["id".into(), "user.name".into(), "balance".into()],
        ..wide_open()
    })
    .unwrap();
    let preview = redactor.preview(&users());
    assert!(preview.contains("ada") && preview.contains("20.25"));
    for hidden in [
        "ada@example.com",
        "hunter2",
        "web",
        "core",
        "team",
        "key-111",
    ] {
        assert!(!preview.contains(hidden), "{hidden} leaked:\n{preview}");
    }
    insta::assert_snapshot!("allow_list", preview);
}

#[test]
fn detectors_mask_by_content_whatever_the_column() {
    let notes = StringArray::from(vec![
        "mail jane@example.org",
        "Bearer abcdef.123",
        "AKIAIOSFODNN7EXAMPLE",
        "4111 1111 1111 1111",
        "just text",
    ]);
    let batch = batch(vec![("note", Arc::new(notes) as ArrayRef)]);
    let off = Redactor::new(&wide_open()).unwrap().preview(&batch);
    assert!(
        off.contains("jane@example.org"),
        "detectors are off by default"
    );
    let on = Redactor::new(&PreviewConfig {
        detectors: Detectors {
            email: true,
            bearer_token: true,
            aws_access_key: true,
            card_number: true,
        },
        ..wide_open()
    })
    .unwrap()
    .preview(&batch);
    insta::assert_snapshot!("detectors", on);
}

#[test]
fn previews_are_capped_with_a_visible_marker() {
    let long: Vec<String> = (0..50)
        .map(|i| format!("value-{i}-{}", "x".repeat(40)))
        .collect();
    let batch = batch(vec![(
        "note",
        Arc::new(StringArray::from(long)) as ArrayRef,
    )]);
    let preview = Redactor::new(&PreviewConfig {
        max_bytes: 200,
        ..wide_open()
    })
    .unwrap()
    .preview(&batch);
    assert!(preview.len() <= 200, "{}", preview.len());
    assert!(preview.ends_with("bytes]") && preview.contains("[preview truncated to 200 of"));
    insta::assert_snapshot!("capped", preview);
}

#[test]
fn bad_bounds_are_errors_naming_the_field() {
    let error = Redactor::new(&PreviewConfig {
        max_bytes: 10,
        ..PreviewConfig::default()
    })
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid value 10 for preview.max_bytes: expected at least 128"
    );
    let error = Redactor::new(&PreviewConfig {
        mask: String::new(),
        ..PreviewConfig::default()
    })
    .unwrap_err();
    assert!(error.to_string().contains("preview.mask"));
}

#[test]
fn empty_and_zero_column_batches() {
    let redactor = Redactor::new(&PreviewConfig::default()).unwrap();
    let empty = RecordBatch::new_empty(Arc::new(Schema::new(vec![Field::new(
        "password",
        DataType::Utf8,
        true,
    )])));
    assert!(!redactor.preview(&empty).contains(ERROR_MARKER));
    let no_columns = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(3)),
    )
    .unwrap();
    assert_eq!(redactor.redact(&no_columns).unwrap().num_rows(), 3);
}

// ---- property tests -------------------------------------------------------

/// A generated column type.
#[derive(Debug, Clone)]
enum Kind {
    Utf8,
    LargeUtf8,
    Utf8View,
    DictUtf8,
    Binary,
    Int64,
    Float64,
    Struct(Vec<(String, Kind)>),
    List(Box<Kind>),
    LargeList(Box<Kind>),
    Map(Box<Kind>),
}

/// Names that the default deny list must catch, and names it must not.
const DENIED_NAMES: &[&str] = &["password", "api_key", "user_token", "Secret_Value", "SSN"];
const SAFE_NAMES: &[&str] = &["id", "city", "amount", "note"];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(DENIED_NAMES).prop_map(str::to_owned),
        prop::sample::select(SAFE_NAMES).prop_map(str::to_owned),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    let leaf = prop_oneof![
        Just(Kind::Utf8),
        Just(Kind::LargeUtf8),
        Just(Kind::Utf8View),
        Just(Kind::DictUtf8),
        Just(Kind::Binary),
        Just(Kind::Int64),
        Just(Kind::Float64),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec((name(), inner.clone()), 1..3).prop_map(Kind::Struct),
            inner.clone().prop_map(|k| Kind::List(Box::new(k))),
            inner.clone().prop_map(|k| Kind::LargeList(Box::new(k))),
            inner.prop_map(|k| Kind::Map(Box::new(k))),
        ]
    })
}

/// Builds arrays whose values say whether they must be hidden: values under
/// a denied name are `DENIED…` strings or numbers from 9.1e9 up; others are
/// `ok…` strings or small numbers. Every third value is null.
struct Gen {
    counter: i64,
    allowed_strings: Vec<String>,
}

impl Gen {
    fn next(&mut self) -> i64 {
        self.counter += 1;
        self.counter
    }

    /// `shown_as_text`: binaries print as hex, so they are not expected to
    /// appear verbatim even when allowed.
    fn string(&mut self, denied: bool, shown_as_text: bool) -> String {
        let n = self.next();
        if denied {
            format!("DENIED{n}")
        } else {
            let value = format!("ok{n}");
            if shown_as_text {
                self.allowed_strings.push(value.clone());
            }
            value
        }
    }

    /// `len` values made by `value`, every third one null.
    fn with_nulls<T>(
        &mut self,
        len: usize,
        mut value: impl FnMut(&mut Self) -> T,
    ) -> Vec<Option<T>> {
        (0..len)
            .map(|i| (i % 3 != 2).then(|| value(self)))
            .collect()
    }

    fn strings(&mut self, len: usize, denied: bool) -> Vec<Option<String>> {
        self.with_nulls(len, |this| this.string(denied, true))
    }

    fn array(&mut self, kind: &Kind, len: usize, denied: bool) -> ArrayRef {
        match kind {
            Kind::Utf8 => Arc::new(StringArray::from(self.strings(len, denied))),
            Kind::LargeUtf8 => Arc::new(LargeStringArray::from(self.strings(len, denied))),
            Kind::Utf8View => Arc::new(StringViewArray::from(self.strings(len, denied))),
            Kind::DictUtf8 => {
                let values = self.strings(len, denied);
                Arc::new(
                    values
                        .iter()
                        .map(|v| v.as_deref())
                        .collect::<DictionaryArray<Int32Type>>(),
                )
            }
            Kind::Binary => {
                let values = self.with_nulls(len, |this| this.string(denied, false));
                Arc::new(BinaryArray::from(
                    values
                        .iter()
                        .map(|v| v.as_deref().map(str::as_bytes))
                        .collect::<Vec<_>>(),
                ))
            }
            Kind::Int64 => Arc::new(Int64Array::from(self.with_nulls(len, |this| {
                if denied {
                    9_100_000_000 + this.next()
                } else {
                    this.next() % 100
                }
            }))),
            Kind::Float64 => Arc::new(Float64Array::from(self.with_nulls(len, |this| {
                if denied {
                    9_200_000_000.0 + this.next() as f64
                } else {
                    0.5
                }
            }))),
            Kind::Struct(children) => {
                let mut fields = Vec::new();
                let mut columns = Vec::new();
                for (child, child_kind) in children {
                    if fields.iter().any(|f: &Field| f.name() == child) {
                        continue;
                    }
                    let column = self.array(
                        child_kind,
                        len,
                        denied || DENIED_NAMES.contains(&child.as_str()),
                    );
                    fields.push(Field::new(child, column.data_type().clone(), true));
                    columns.push(column);
                }
                Arc::new(StructArray::new(Fields::from(fields), columns, None))
            }
            Kind::List(inner) | Kind::LargeList(inner) => {
                let values = self.array(inner, len * 2, denied);
                let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
                let offsets = datafusion::arrow::buffer::OffsetBuffer::from_lengths(vec![2; len]);
                if matches!(kind, Kind::List(_)) {
                    Arc::new(ListArray::new(field, offsets, values, None))
                } else {
                    let offsets =
                        datafusion::arrow::buffer::OffsetBuffer::from_lengths(vec![2; len]);
                    Arc::new(LargeListArray::new(field, offsets, values, None))
                }
            }
            Kind::Map(value_kind) => {
                let keys: Vec<String> = (0..len).map(|_| self.string(denied, true)).collect();
                let values = self.array(value_kind, len, denied);
                let entry_fields = Fields::from(vec![
                    Field::new("keys", DataType::Utf8, false),
                    Field::new("values", values.data_type().clone(), true),
                ]);
                let entries = StructArray::new(
                    entry_fields.clone(),
                    vec![Arc::new(StringArray::from(keys)), values],
                    None,
                );
                let field = Arc::new(Field::new("entries", DataType::Struct(entry_fields), false));
                let offsets = datafusion::arrow::buffer::OffsetBuffer::from_lengths(vec![1; len]);
                Arc::new(datafusion::arrow::array::MapArray::new(
                    field, offsets, entries, None, false,
                ))
            }
        }
    }
}

fn generated_batch(columns: &[(String, Kind)], rows: usize) -> (RecordBatch, Vec<String>) {
    let mut generator = Gen {
        counter: 0,
        allowed_strings: Vec::new(),
    };
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for (name, kind) in columns {
        if fields.iter().any(|f: &Field| f.name() == name) {
            continue;
        }
        let array = generator.array(kind, rows, DENIED_NAMES.contains(&name.as_str()));
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .unwrap();
    (batch, generator.allowed_strings)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No denied value appears anywhere in the preview; allowed strings do.
    #[test]
    fn denied_values_never_appear_and_allowed_ones_do(
        columns in prop::collection::vec((name(), kind()), 0..4),
        rows in 0usize..5,
    ) {
        let (batch, allowed) = generated_batch(&columns, rows);
        let preview = Redactor::new(&PreviewConfig { max_bytes: 1 << 20, ..wide_open() }).unwrap().preview(&batch);
        prop_assert!(!preview.contains(ERROR_MARKER), "{}", preview);
        prop_assert!(!preview.contains("DENIED"), "{}", preview);
        // "DENIED" as hex, for binaries.
        prop_assert!(!preview.contains("44454e494544"), "{}", preview);
        prop_assert!(!preview.contains("91000") && !preview.contains("92000"), "{}", preview);
        for value in allowed {
            prop_assert!(preview.contains(&value), "allowed {} missing:\n{}", value, preview);
        }
    }

    /// Under an allow list naming nothing generated, no generated value shows.
    #[test]
    fn allow_list_hides_everything_it_does_not_name(
        columns in prop::collection::vec((name(), kind()), 0..4),
        rows in 0usize..5,
    ) {
        let (batch, allowed) = generated_batch(&columns, rows);
        let config = PreviewConfig { policy: Policy::AllowList, allow: vec!["nothing".into()], max_bytes: 1 << 20, ..wide_open() };
        let preview = Redactor::new(&config).unwrap().preview(&batch);
        prop_assert!(!preview.contains("DENIED"), "{}", preview);
        for value in allowed {
            prop_assert!(!preview.contains(&value), "{} shown:\n{}", value, preview);
        }
    }

    /// Whatever the batch and bounds, the preview fits the byte cap.
    #[test]
    fn previews_never_exceed_the_byte_cap(
        columns in prop::collection::vec((name(), kind()), 0..4),
        rows in 0usize..5,
        max_bytes in 128usize..600,
        max_width in 0usize..200,
    ) {
        let (batch, _) = generated_batch(&columns, rows);
        let config = PreviewConfig { max_bytes, max_width, ..PreviewConfig::default() };
        let preview = Redactor::new(&config).unwrap().preview(&batch);
        prop_assert!(preview.len() <= max_bytes, "{} > {}", preview.len(), max_bytes);
    }
}

#[test]
fn unsupported_masks_fall_back_to_null_not_to_the_value() {
    // A list of maps with integer keys under a denied name: the keys cannot be
    // masked in place, so each map becomes null.
    let mut builder = MapBuilder::new(
        None,
        datafusion::arrow::array::Int64Builder::new(),
        StringBuilder::new(),
    );
    builder.keys().append_value(4242424242);
    builder.values().append_value("inner-secret");
    builder.append(true).unwrap();
    let batch = batch(vec![("secret_map", Arc::new(builder.finish()) as ArrayRef)]);
    let preview = Redactor::new(&wide_open()).unwrap().preview(&batch);
    assert!(
        !preview.contains("4242424242") && !preview.contains("inner-secret"),
        "{preview}"
    );
    let null_map = new_null_array(batch.column(0).data_type(), 1);
    assert_eq!(null_map.null_count(), 1);
}
