use super::*;
use crate::SpanLevel;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Demo {
    level: SpanLevel,
    limit: u64,
    ratio: f64,
    flag: bool,
    name: String,
    list: Vec<String>,
    attrs: BTreeMap<String, String>,
    nested: Nested,
    endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Nested {
    depth: u32,
}

impl Section for Demo {
    const NAME: &'static str = "demo";
    const ENV_ALIASES: &'static [EnvAlias] = &[
        EnvAlias {
            var: "OTEL_SERVICE_NAME",
            field: "name",
        },
        EnvAlias {
            var: "OTEL_RESOURCE_ATTRIBUTES",
            field: "attrs",
        },
    ];

    fn for_preset(preset: Preset) -> Self {
        Demo {
            level: SpanLevel::Info,
            limit: match preset {
                Preset::Maximal => 5,
                Preset::MaximalNoData | Preset::ProductionLean => 0,
            },
            ratio: 1.0,
            flag: preset == Preset::Maximal,
            name: "preset".into(),
            list: vec!["a".into()],
            attrs: BTreeMap::new(),
            nested: Nested { depth: 1 },
            endpoint: None,
        }
    }
}

fn demo(builder: ConfigBuilder) -> Demo {
    builder
        .build()
        .and_then(|c| c.section::<Demo>())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn error(builder: ConfigBuilder) -> String {
    match builder.build().and_then(|c| c.section::<Demo>()) {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn preset_names_round_trip_and_default_is_production_lean() {
    for preset in Preset::ALL {
        assert_eq!(preset.name().parse::<Preset>().ok(), Some(preset));
        assert_eq!(
            serde_json::to_value(preset).ok(),
            Some(Value::from(preset.name()))
        );
    }
    assert_eq!(Preset::default(), Preset::ProductionLean);
    let config = DftraceConfig::builder()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (config.preset(), config.preset_origin()),
        (Preset::ProductionLean, "default")
    );
}

#[test]
fn section_defaults_follow_the_preset() {
    assert_eq!(
        demo(DftraceConfig::builder().preset(Preset::Maximal)).limit,
        5
    );
    assert_eq!(
        demo(DftraceConfig::builder().preset(Preset::MaximalNoData)).limit,
        0
    );
    assert!(demo(DftraceConfig::builder().preset(Preset::Maximal)).flag);
    assert!(!demo(DftraceConfig::builder().preset(Preset::ProductionLean)).flag);
}

/// Every layer overrides the one below it, whatever order the builder calls
/// come in.
#[test]
fn each_layer_overrides_the_one_below() {
    type Layer = fn(ConfigBuilder) -> ConfigBuilder;
    let file: Layer = |b| b.toml_str("[demo]\nlimit = 10\n");
    let env: Layer = |b| b.env([("DFTRACE_DEMO__LIMIT", "20")]);
    let code: Layer = |b| b.set("demo.limit", 30);
    let cases: [(&str, &[Layer], u64); 8] = [
        ("preset only", &[], 5),
        ("file over preset", &[file], 10),
        ("env over preset", &[env], 20),
        ("code over preset", &[code], 30),
        ("env over file", &[file, env], 20),
        ("code over file", &[file, code], 30),
        ("code over env", &[env, code], 30),
        (
            "code over env over file, calls reversed",
            &[code, env, file],
            30,
        ),
    ];
    for (name, layers, expected) in cases {
        let builder = layers
            .iter()
            .fold(DftraceConfig::builder().preset(Preset::Maximal), |b, l| {
                l(b)
            });
        assert_eq!(demo(builder).limit, expected, "{name}");
    }
}

#[test]
fn preset_choice_follows_the_same_precedence() {
    let file = "preset = \"maximal-no-data\"\n";
    let cases = [
        (
            DftraceConfig::builder().toml_str(file),
            Preset::MaximalNoData,
            "inline TOML",
        ),
        (
            DftraceConfig::builder()
                .toml_str(file)
                .env([(ENV_PRESET, "maximal")]),
            Preset::Maximal,
            ENV_PRESET,
        ),
        (
            DftraceConfig::builder()
                .toml_str(file)
                .env([(ENV_PRESET, "maximal")])
                .preset(Preset::ProductionLean),
            Preset::ProductionLean,
            "code",
        ),
    ];
    for (builder, preset, origin) in cases {
        let config = builder.build().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((config.preset(), config.preset_origin()), (preset, origin));
    }
}

#[test]
fn json_file_layer_and_dftrace_config_variable() {
    let dir = std::env::temp_dir().join(format!("dftrace-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let toml_path = dir.join("dftrace.toml");
    std::fs::write(
        &toml_path,
        "preset = \"maximal\"\n[demo]\nname = \"from-file\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let json_path = dir.join("dftrace.json");
    std::fs::write(&json_path, r#"{"demo": {"name": "from-json"}}"#)
        .unwrap_or_else(|e| panic!("{e}"));

    let via_env = DftraceConfig::builder()
        .env([(ENV_CONFIG, toml_path.to_string_lossy().into_owned())])
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(via_env.preset(), Preset::Maximal);
    assert_eq!(
        via_env.section::<Demo>().map(|d| d.name).ok().as_deref(),
        Some("from-file")
    );

    // An explicit file wins over DFTRACE_CONFIG.
    let explicit = DftraceConfig::builder()
        .file(&json_path)
        .env([(ENV_CONFIG, toml_path.to_string_lossy().into_owned())]);
    assert_eq!(demo(explicit).name, "from-json");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn env_values_are_read_as_the_field_type() {
    let value = demo(DftraceConfig::builder().env([
        ("DFTRACE_DEMO__LEVEL", "debug"),
        ("DFTRACE_DEMO__LIMIT", "7"),
        ("DFTRACE_DEMO__RATIO", "0.25"),
        ("DFTRACE_DEMO__FLAG", "TRUE"),
        ("DFTRACE_DEMO__NAME", "123"),
        ("DFTRACE_DEMO__LIST", "x, y,z"),
        ("DFTRACE_DEMO__ATTRS", "env=prod,team%3Dname=a%2Cb"),
        ("DFTRACE_DEMO__NESTED__DEPTH", "3"),
        ("DFTRACE_DEMO__ENDPOINT", "http://127.0.0.1:4317"),
        ("UNRELATED", "ignored"),
        ("DFTRACE_CLI_BIN", "/tooling/variables/are/ignored"),
    ]));
    assert_eq!(value.level, SpanLevel::Debug);
    assert_eq!(value.limit, 7);
    assert!((value.ratio - 0.25).abs() < f64::EPSILON);
    assert!(value.flag);
    assert_eq!(
        value.name, "123",
        "a string field keeps numeric-looking text"
    );
    assert_eq!(value.list, ["x", "y", "z"]);
    assert_eq!(
        value.attrs,
        BTreeMap::from([
            ("env".into(), "prod".into()),
            ("team=name".into(), "a,b".into())
        ])
    );
    assert_eq!(value.nested.depth, 3);
    assert_eq!(value.endpoint.as_deref(), Some("http://127.0.0.1:4317"));

    // An optional string without a default to say its type keeps
    // numeric-looking text too (a version `2`, a `RUST_LOG` level `3`).
    let value = demo(DftraceConfig::builder().env([("DFTRACE_DEMO__ENDPOINT", "2.10")]));
    assert_eq!(value.endpoint.as_deref(), Some("2.10"));
    // The code layer's value wins over the variable's, and a wrong one is
    // still named as the code's.
    let message = error(
        DftraceConfig::builder()
            .env([("DFTRACE_DEMO__ENDPOINT", "2")])
            .set("demo.endpoint", 3),
    );
    assert!(
        message.contains("demo.endpoint") && message.contains("code"),
        "{message}"
    );
}

#[test]
fn standard_variables_map_through_aliases_and_dftrace_wins() {
    let aliased = demo(DftraceConfig::builder().env([
        ("OTEL_SERVICE_NAME", "svc"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod"),
    ]));
    assert_eq!(aliased.name, "svc");
    assert_eq!(
        aliased
            .attrs
            .get("deployment.environment")
            .map(String::as_str),
        Some("prod")
    );

    let both = demo(DftraceConfig::builder().env([
        ("OTEL_SERVICE_NAME", "svc"),
        ("DFTRACE_DEMO__NAME", "specific"),
    ]));
    assert_eq!(both.name, "specific");
}

#[test]
fn tables_merge_and_arrays_replace() {
    let value = demo(
        DftraceConfig::builder()
            .toml_str("[demo]\nlist = [\"b\", \"c\"]\n[demo.attrs]\nk = \"v\"\n")
            .set("demo.attrs.k2", "v2"),
    );
    assert_eq!(value.list, ["b", "c"]);
    assert_eq!(value.attrs.len(), 2);
    assert_eq!(
        value.nested.depth, 1,
        "untouched nested table keeps its default"
    );
}

#[test]
fn error_messages_name_the_field_value_origin_and_accepted() {
    let builder = DftraceConfig::builder;
    let env = |var: &str, value: &str| builder().env([(var, value)]);
    let toml = |document: &str| builder().toml_str(document);
    let cases: Vec<(&str, ConfigBuilder)> = vec![
        ("unknown_preset_env", env(ENV_PRESET, "max")),
        ("unknown_preset_file", toml("preset = \"loud\"")),
        ("preset_not_a_string", toml("preset = 3")),
        ("unknown_field_file", toml("[demo]\nlimt = 3\n")),
        ("bad_enum_env", env("DFTRACE_DEMO__LEVEL", "loud")),
        ("bad_number_env", env("DFTRACE_DEMO__LIMIT", "five")),
        ("negative_number_env", env("DFTRACE_DEMO__LIMIT", "-1")),
        ("bad_bool_env", env("DFTRACE_DEMO__FLAG", "yes")),
        ("bad_pairs_env", env("OTEL_RESOURCE_ATTRIBUTES", "novalue")),
        ("unknown_field_env", env("DFTRACE_DEMO__NOPE", "1")),
        ("unknown_dftrace_var", env("DFTRACE_VERBOSE", "1")),
        ("wrong_type_code", builder().set("demo.limit", "many")),
        ("bad_code_path", builder().set("limit", 1)),
        ("bad_toml", toml("[demo\nlimit = 1")),
        ("bad_json", builder().json_str("{\"demo\": ")),
        ("top_level_not_table", toml("demo = 1")),
        ("json_not_object", builder().json_str("[1, 2]")),
        ("missing_file", builder().file("/nonexistent/dftrace.toml")),
    ];
    let mut messages = BTreeMap::new();
    for (name, case) in cases {
        messages.insert(name, error(case));
    }
    insta::assert_json_snapshot!(messages);
}

#[test]
fn unknown_sections_list_the_linked_plugins() {
    let config = DftraceConfig::builder()
        .toml_str("[rules]\npreview_limit = 1\n")
        .env([("DFTRACE_EXPORT__SINK", "file")])
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let sections: Vec<String> = config
        .mentioned_sections()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(sections, ["export", "rules"]);
    assert!(config.check_sections(&["export", "rules"]).is_ok());
    insta::assert_snapshot!(
        config.check_sections(&["export"]).map_err(|e| e.to_string()).err().unwrap_or_default(),
        @"config section `[rules]` (from inline TOML) names no linked dftrace plugin; linked plugins: export. It belongs to dftrace-rules: with the `dftrace` crate, enable its `rules` feature; depending on dftrace-rules alone, reference it once (`use dftrace_rules as _;`) so the linker keeps it"
    );
    insta::assert_snapshot!(
        config.check_sections(&[]).map_err(|e| e.to_string()).err().unwrap_or_default(),
        @"config section `[export]` (from DFTRACE_EXPORT__SINK) names no linked dftrace plugin; linked plugins: none. It belongs to dftrace-bootstrap: the `dftrace` crate always links it; depending on dftrace-bootstrap alone, reference it once (`use dftrace_bootstrap as _;`) so the linker keeps it"
    );
    let host_section = DftraceConfig::builder()
        .toml_str("[hello]\ngreeting = 1\n")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!(
        host_section.check_sections(&["export"]).map_err(|e| e.to_string()).err().unwrap_or_default(),
        @"config section `[hello]` (from inline TOML) names no linked dftrace plugin; linked plugins: export. No dftrace crate owns it (dftrace's sections: rules, preview, object_store, metrics, history, udf, caches, memory, cli, export); a host plugin's section needs that plugin linked"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever text arrives as a TOML or JSON document, the loader answers
    /// with a config or an error, never a panic.
    #[test]
    fn arbitrary_documents_never_panic(text in ".{0,200}", json in any::<bool>()) {
        let builder = if json {
            DftraceConfig::builder().json_str(text)
        } else {
            DftraceConfig::builder().toml_str(text)
        };
        if let Ok(config) = builder.build() {
            let _ = config.section::<Demo>();
        }
    }

    /// Structured documents with plausible keys reach deeper paths than random text.
    #[test]
    fn arbitrary_section_values_never_panic(
        key in prop::sample::select(vec!["level", "limit", "ratio", "flag", "name", "list", "attrs", "nested", "endpoint", "other"]),
        value in prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<f64>().prop_map(|v| format!("{v:?}")),
            "[a-z\"\\[\\]{}=,. 0-9]{0,20}",
        ],
    ) {
        let toml = format!("[demo]\n{key} = {value}\n");
        if let Ok(config) = DftraceConfig::builder().toml_str(toml).build() {
            let _ = config.section::<Demo>();
        }
        let json = format!("{{\"demo\": {{\"{key}\": {value}}}}}");
        if let Ok(config) = DftraceConfig::builder().json_str(json).build() {
            let _ = config.section::<Demo>();
        }
    }

    /// Arbitrary environment values for every kind of field never panic.
    #[test]
    fn arbitrary_env_values_never_panic(
        field in prop::sample::select(vec!["LEVEL", "LIMIT", "RATIO", "FLAG", "NAME", "LIST", "ATTRS", "NESTED__DEPTH", "ENDPOINT", "NESTED", "X__Y"]),
        value in ".{0,40}",
        preset in ".{0,12}",
    ) {
        let vars = [(format!("DFTRACE_DEMO__{field}"), value.clone()), (ENV_PRESET.to_owned(), preset), ("OTEL_RESOURCE_ATTRIBUTES".to_owned(), value)];
        if let Ok(config) = DftraceConfig::builder().env(vars).build() {
            let _ = config.section::<Demo>();
        }
    }
}

#[test]
fn credentials_are_masked_in_messages_and_debug() {
    use crate::secrets::{shown_setting, shown_url};
    assert_eq!(
        shown_setting(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer Zq1,broken"
        ),
        "authorization=***,***"
    );
    assert_eq!(
        shown_url("http://user:Zq2@host:bad/v1"),
        "http://user:***@host:bad/v1"
    );
    assert_eq!(shown_url("https://Zq3@host"), "https://***@host");
    assert_eq!(shown_setting("OTEL_SERVICE_NAME", "svc"), "svc");
    let config = DftraceConfig::builder()
        .env([
            (
                "OTEL_EXPORTER_OTLP_HEADERS".to_owned(),
                "authorization=Bearer Zq4".to_owned(),
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                "http://u:Zq5@h:4317".to_owned(),
            ),
        ])
        .build()
        .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("Zq4") && !debug.contains("Zq5"), "{debug}");
    assert!(debug.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{debug}");
}
