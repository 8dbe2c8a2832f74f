//! Which crate owns each dftrace config section, and the `dftrace` facade
//! feature that links it: what an error about an unlinked section tells the
//! host to add. A test checks the list against the facade's `Cargo.toml`.

/// The dftrace sections, the crate that owns each and the `dftrace` facade
/// feature that links it (`None`: the facade always links it).
pub(crate) const SECTION_OWNERS: &[(&str, &str, Option<&str>)] = &[
    ("rules", "dftrace-rules", Some("rules")),
    ("preview", "dftrace-preview-redaction", Some("preview")),
    (
        "object_store",
        "dftrace-object-store-registry",
        Some("object-store"),
    ),
    ("metrics", "dftrace-metrics-summary", Some("metrics")),
    ("history", "dftrace-history", Some("history")),
    ("udf", "dftrace-udf", Some("udf")),
    ("caches", "dftrace-caches", Some("caches")),
    ("memory", "dftrace-memory", Some("memory")),
    ("cli", "dftrace-cli-hooks", None),
    ("export", "dftrace-bootstrap", None),
];

/// What to do when `section` names no linked plugin.
pub(crate) fn section_remedy(section: &str) -> String {
    if section == "cli" {
        return "It belongs to dftrace-cli-hooks: only the traced datafusion-cli (`cargo xtask \
                cli`) reads it; remove it from a host's config"
            .to_owned();
    }
    let Some((_, owner, feature)) = SECTION_OWNERS.iter().find(|(name, ..)| *name == section)
    else {
        let sections: Vec<&str> = SECTION_OWNERS.iter().map(|(name, ..)| *name).collect();
        return format!(
            "No dftrace crate owns it (dftrace's sections: {}); a host plugin's section \
             needs that plugin linked",
            sections.join(", ")
        );
    };
    let with_facade = match feature {
        Some(feature) => format!("with the `dftrace` crate, enable its `{feature}` feature"),
        None => "the `dftrace` crate always links it".to_owned(),
    };
    format!(
        "It belongs to {owner}: {with_facade}; depending on {owner} alone, reference it \
         once (`use {} as _;`) so the linker keeps it",
        owner.replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::SECTION_OWNERS;

    /// The facade's features, read from its manifest in this workspace.
    fn facade_features() -> Vec<String> {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../dftrace/Cargo.toml");
        let text = std::fs::read_to_string(manifest)
            .unwrap_or_else(|e| panic!("{manifest}: {e}; this test runs in the dftrace workspace"));
        let features = text
            .split("[features]")
            .nth(1)
            .unwrap_or_else(|| panic!("{manifest} has no [features]"));
        features
            .lines()
            .take_while(|line| !line.starts_with('['))
            .filter_map(|line| {
                line.split_once(" = ")
                    .map(|(name, _)| name.trim().to_owned())
            })
            .collect()
    }

    #[test]
    fn every_section_owner_is_a_feature_of_the_facade() {
        let features = facade_features();
        for (section, owner, feature) in SECTION_OWNERS {
            if let Some(feature) = feature {
                assert!(
                    features.iter().any(|f| f == feature),
                    "section [{section}] ({owner}) names the facade feature `{feature}`, which \
                     crates/dftrace/Cargo.toml does not have: {features:?}"
                );
            }
        }
    }

    #[test]
    fn every_component_feature_of_the_facade_owns_its_section() {
        // The facade's features that link a component with a config section
        // (transport and backend features link none).
        let not_components = [
            "default",
            "export-grpc",
            "export-http",
            "s3",
            "gcs",
            "azure",
            "http",
            "distributed",
        ];
        for feature in facade_features() {
            if not_components.contains(&feature.as_str()) {
                continue;
            }
            assert!(
                SECTION_OWNERS
                    .iter()
                    .any(|(_, _, f)| *f == Some(feature.as_str())),
                "the facade feature `{feature}` links a component whose section is missing \
                 from SECTION_OWNERS"
            );
        }
    }
}
