//! A plugin registered through `inventory` from outside the registry crate is
//! found, configured from its own section, and applied at both stages; the
//! `Instrument` rule ends last even when the host adds a rule afterwards.

// Helpers outside #[test] functions may panic too: in a test, a panic with
// a message is the failure report.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use datafusion::execution::SessionStateBuilder;
use dftrace_registry::{
    DftraceConfig, DftraceSession, INSTRUMENT_RULE_NAME, Plugin, PluginContext, Preset,
    RegistryError, RegistryStateBuilderExt, Section, Stage, linked_plugins,
};

// Included by path, not through the `dftrace_tests` library: linking the
// library would link the dftrace plugins it depends on, and this binary must
// see only its own plugin. (`pub mod`: their items are `pub` for the
// library's users, which `unreachable_pub` accepts only if reachable here.)
#[path = "../src/optimizer.rs"]
pub mod optimizer;
#[path = "../src/text.rs"]
pub mod text;
use optimizer::{HostRule, rule_names};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use text::{assert_contains_all, error_text};

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestPluginConfig {
    tag: String,
}

impl Section for TestPluginConfig {
    const NAME: &'static str = "test_plugin";
    fn for_preset(preset: Preset) -> Self {
        TestPluginConfig {
            tag: format!("default-{preset}"),
        }
    }
}

/// What the plugin leaves in the session's services, to prove both hooks ran.
#[derive(Debug, PartialEq)]
struct Seen {
    tag: String,
    stages: Vec<&'static str>,
}

fn builder_hook(
    builder: SessionStateBuilder,
    context: &mut PluginContext<'_>,
) -> datafusion::error::Result<SessionStateBuilder> {
    let section: TestPluginConfig = context.section()?;
    context.services().insert(Arc::new(Seen {
        tag: section.tag,
        stages: vec!["builder"],
    }));
    Ok(builder.with_physical_optimizer_rule(HostRule::new(INSTRUMENT_RULE_NAME, |plan| plan)))
}

fn state_hook(
    state: datafusion::execution::session_state::SessionState,
    context: &mut PluginContext<'_>,
) -> datafusion::error::Result<datafusion::execution::session_state::SessionState> {
    let seen = context.services().get::<Seen>().map(|seen| Seen {
        tag: seen.tag.clone(),
        stages: [seen.stages.clone(), vec!["state"]].concat(),
    });
    if let Some(seen) = seen {
        context.services().insert(Arc::new(seen));
    }
    Ok(state)
}

dftrace_registry::inventory::submit! {
    Plugin::new::<TestPluginConfig>(Stage::Instrumentation)
        .on_builder(builder_hook)
        .on_state(state_hook)
}

#[test]
fn plugin_from_another_crate_is_linked_configured_and_applied() -> Result<(), RegistryError> {
    let names: Vec<_> = linked_plugins()
        .iter()
        .map(|plugin| plugin.name())
        .collect();
    assert_eq!(names, ["test_plugin"]);

    let config = DftraceConfig::builder()
        .toml_str("[test_plugin]\ntag = \"from-file\"\n")
        .build()?;
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .with_physical_optimizer_rule(HostRule::new("HostRuleAddedAfter", |plan| plan))
        .build_dftrace()?;

    let rules = rule_names(&state);
    assert_eq!(
        rules.last(),
        Some(&INSTRUMENT_RULE_NAME),
        "rules: {rules:?}"
    );
    assert_eq!(
        rules
            .iter()
            .filter(|name| **name == INSTRUMENT_RULE_NAME)
            .count(),
        1
    );
    assert!(rules.contains(&"HostRuleAddedAfter"));

    let session =
        DftraceSession::of(&state).expect("with_dftrace leaves its session in the config");
    let seen = session
        .services()
        .get::<Seen>()
        .expect("the plugin's hooks ran");
    assert_eq!(
        *seen,
        Seen {
            tag: "from-file".into(),
            stages: vec!["builder", "state"]
        }
    );
    Ok(())
}

#[test]
fn preset_defaults_reach_the_plugin() -> Result<(), RegistryError> {
    let config = DftraceConfig::builder().preset(Preset::Maximal).build()?;
    let state = SessionStateBuilder::new()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let seen = DftraceSession::of(&state).and_then(|s| s.services().get::<Seen>());
    assert_eq!(
        seen.map(|s| s.tag.clone()).as_deref(),
        Some("default-maximal")
    );
    Ok(())
}

#[test]
fn sections_of_unlinked_plugins_and_bad_values_are_errors() {
    let unknown = DftraceConfig::builder()
        .toml_str("[rulez]\nx = 1\n")
        .build()
        .map_err(|e| e.to_string());
    let error =
        error_text(SessionStateBuilder::new().with_dftrace(&unknown.expect("a valid document")));
    assert_contains_all(&error, &["`[rulez]`", "linked plugins: test_plugin"]);

    let bad = DftraceConfig::builder()
        .env([
            ("DFTRACE_TEST_PLUGIN__TAG", "x"),
            ("DFTRACE_TEST_PLUGIN__OTHER", "y"),
        ])
        .build();
    let error = error_text(
        SessionStateBuilder::new().with_dftrace(&bad.expect("variables are well-formed")),
    );
    assert_contains_all(&error, &["test_plugin.other", "DFTRACE_TEST_PLUGIN__OTHER"]);
}

#[test]
fn build_without_with_dftrace_is_a_clear_error() {
    let error = error_text(SessionStateBuilder::new().build_dftrace());
    assert_contains_all(&error, &["call `with_dftrace` first"]);
}
