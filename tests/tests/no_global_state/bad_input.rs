//! Bad input never panics and always says what was wrong: the W3C
//! `traceparent` parser and every linked config section, fuzzed with
//! proptest (a bounded run here; `PROPTEST_CASES=100000 cargo test -p
//! dftrace-tests --test no_global_state bad_input::` for a long one).

use dftrace_metrics_summary as _;
use dftrace_object_store_registry as _;
use dftrace_preview_redaction as _;
use dftrace_registry::{DftraceConfig, linked_plugins};
use dftrace_rules::parse_trace_context;
use dftrace_tests::config_doc::{env_var, field_paths};
use proptest::prelude::*;

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Every `DFTRACE_<SECTION>__<FIELD>` variable of the linked sections.
fn config_variables() -> Vec<String> {
    linked_plugins()
        .into_iter()
        .flat_map(|plugin| {
            field_paths(plugin)
                .into_iter()
                .map(move |path| env_var(plugin, &path))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_string_is_parsed_or_refused_with_a_reason(text in ".{0,80}") {
        match parse_trace_context(&text, None) {
            Ok(context) => prop_assert!(context.is_valid()),
            Err(error) => {
                let message = error.to_string();
                prop_assert!(message.contains("traceparent"), "{}", message);
            }
        }
    }

    #[test]
    fn one_changed_character_is_caught_or_harmless(at in 0..VALID.len(), c in any::<char>()) {
        let mut text: Vec<char> = VALID.chars().collect();
        let original = text[at];
        text[at] = c;
        let text: String = text.into_iter().collect();
        if let Ok(context) = parse_trace_context(&text, None) {
            // Only the same character (no change at all: seen when a `-`
            // replaced a `-`) or another lowercase hex digit can pass.
            prop_assert!(context.is_valid());
            prop_assert!(
                c == original || (c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{:?} accepted",
                text
            );
        }
    }

    #[test]
    fn any_value_in_any_config_variable_is_accepted_or_named(
        // Over however many variables the linked sections have.
        index in any::<proptest::sample::Index>(),
        value in prop_oneof![".{0,24}", "-?[0-9]{1,22}", "(true|false|yes|1\\.5e9|NaN|,|=)"],
    ) {
        let vars = config_variables();
        let var = &vars[index.index(vars.len())];
        let result = DftraceConfig::builder()
            .env([(var.clone(), value.clone())])
            .build()
            .and_then(|config| {
                for plugin in linked_plugins() {
                    plugin.check(&config)?;
                }
                Ok(())
            });
        if let Err(error) = result {
            let message = error.to_string();
            prop_assert!(message.contains(var.as_str()), "{} does not name {}", message, var);
        }
    }
}
