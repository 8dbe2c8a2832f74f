//! dftrace-registry on its own: a layered config (preset < file < environment
//! < code), a host's own plugin section registered through `inventory`, and
//! the session extension applying every linked plugin.
//!
//! `cargo run -p dftrace-examples --example registry_config`

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use dftrace_registry::{DftraceConfig, Plugin, Preset, RegistryStateBuilderExt, Section, Stage};
use serde::{Deserialize, Serialize};

/// A host's own section, `[audit]`, next to dftrace's.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditConfig {
    enabled: bool,
    label: String,
}

impl Section for AuditConfig {
    const NAME: &'static str = "audit";

    fn for_preset(preset: Preset) -> Self {
        AuditConfig {
            enabled: preset == Preset::Maximal,
            label: "none".to_owned(),
        }
    }
}

dftrace_registry::inventory::submit! {
    Plugin::new::<AuditConfig>(Stage::Observation)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = DftraceConfig::builder()
        .preset(Preset::Maximal)
        .toml_str("[audit]\nlabel = \"from-file\"\n")
        .env([("DFTRACE_AUDIT__LABEL", "from-env")])
        .set("audit.enabled", false)
        .build()?;
    let audit: AuditConfig = config.section()?;
    println!("preset {} -> {audit:?}", config.preset());
    // The environment beats the file; code beats the preset.
    assert_eq!(audit.label, "from-env");
    assert!(!audit.enabled);

    // A bad value is an error naming the field, the value and its origin.
    let bad = DftraceConfig::builder()
        .env([("DFTRACE_AUDIT__ENABLED", "sometimes")])
        .build()
        .and_then(|config| config.section::<AuditConfig>().map(drop));
    let message = bad.err().map(|e| e.to_string()).unwrap_or_default();
    println!("bad value: {message}");
    assert!(message.contains("DFTRACE_AUDIT__ENABLED"));

    let names: Vec<&str> = dftrace_registry::linked_plugins()
        .iter()
        .map(|p| p.name())
        .collect();
    println!("linked plugins: {names:?}");
    assert!(names.contains(&"audit"));

    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_dftrace(&config)?
        .build_dftrace()?;
    let batches = SessionContext::new_with_state(state)
        .sql("SELECT 1 AS one")
        .await?
        .collect()
        .await?;
    assert_eq!(batches[0].num_rows(), 1);
    println!("session built with every linked plugin");
    Ok(())
}
