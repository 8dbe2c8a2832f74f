//! The configuration reference and the example config cannot rot:
//! `docs/configuration.md`'s tables are what the linked sections generate,
//! and `examples/dftrace.toml` loads into every section.
//!
//! `cargo xtask schema --update` runs this with `DFTRACE_UPDATE_DOCS=1` to
//! regenerate the tables (hand-written types and descriptions are kept).

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use dftrace_bootstrap::{ExportConfig, Sink};
use dftrace_caches::CachesConfig;
use dftrace_history::HistoryConfig;
// Linked for its `[cli]` section, documented with the others.
use dftrace_cli_hooks as _;
use dftrace_memory::MemoryConfig;
use dftrace_metrics_summary::MetricsConfig;
use dftrace_object_store_registry::ObjectStoreConfig;
use dftrace_preview_redaction::PreviewConfig;
use dftrace_registry::{DftraceConfig, Preset, linked_plugins};
use dftrace_rules::RulesConfig;
use dftrace_tests::config_doc::{regenerate, undocumented};
use dftrace_tests::workspace_root;
use dftrace_udf::UdfConfig;

const SECTIONS: [&str; 9] = [
    "caches",
    "export",
    "history",
    "memory",
    "metrics",
    "object_store",
    "preview",
    "rules",
    "udf",
];

#[test]
fn configuration_reference_matches_the_config_types() {
    let plugins = linked_plugins();
    let names: Vec<&str> = plugins.iter().map(|p| p.name()).collect();
    for section in SECTIONS {
        assert!(names.contains(&section), "{section} is linked: {names:?}");
    }
    let path = workspace_root().join("docs/configuration.md");
    let current = std::fs::read_to_string(&path).expect("docs/configuration.md exists");
    let generated = regenerate(&current, &plugins);
    if std::env::var_os("DFTRACE_UPDATE_DOCS").is_some() && generated != current {
        std::fs::write(&path, &generated).unwrap();
        println!("updated {}", path.display());
    } else {
        assert!(
            generated == current,
            "docs/configuration.md is out of date with the config types: run `cargo xtask schema \
             --update` (it rewrites the generated tables)"
        );
    }
    let missing = undocumented(&generated, &plugins);
    assert!(
        missing.is_empty(),
        "write the type and description of these fields in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn the_example_config_file_loads_into_every_section() {
    let path = workspace_root().join("examples/dftrace.toml");
    let config = DftraceConfig::builder()
        .file(&path)
        .build()
        .unwrap_or_else(|error| panic!("{error}"));
    for plugin in linked_plugins() {
        plugin
            .check(&config)
            .unwrap_or_else(|error| panic!("section [{}]: {error}", plugin.name()));
    }
    // The file says something in each section (so a key it sets is checked).
    let mentioned: Vec<String> = config
        .mentioned_sections()
        .into_iter()
        .map(|(section, _)| section)
        .collect();
    for section in SECTIONS {
        assert!(
            mentioned.iter().any(|m| m == section),
            "{section} in {mentioned:?}"
        );
    }
    // A few values, to show the file is read, not just parsed.
    assert_eq!(config.preset(), Preset::MaximalNoData);
    let export: ExportConfig = config.section().unwrap();
    assert_eq!(export.sink, Sink::Auto);
    assert_eq!(export.service_name, "orders-api");
    let rules: RulesConfig = config.section().unwrap();
    assert!(rules.exec_spans);
    let preview: PreviewConfig = config.section().unwrap();
    assert!(preview.deny.iter().any(|glob| glob == "*card*"));
    let storage: ObjectStoreConfig = config.section().unwrap();
    assert!(storage.enabled);
    let _: MetricsConfig = config.section().unwrap();
    let history: HistoryConfig = config.section().unwrap();
    assert_eq!((history.enabled, history.max_queries), (true, 200));
    let udf: UdfConfig = config.section().unwrap();
    assert_eq!(udf.versions.get("score").map(String::as_str), Some("1.4.0"));
    let caches: CachesConfig = config.section().unwrap();
    assert!(caches.enabled);
    let memory: MemoryConfig = config.section().unwrap();
    assert!(memory.enabled);
}
