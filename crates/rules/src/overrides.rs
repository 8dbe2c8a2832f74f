//! Typed code overrides for the common `[rules]` settings, on the registry's
//! [`ConfigBuilder`]; every other field stays reachable with
//! [`ConfigBuilder::set`].

use crate::config::{OperatorSpans, RuleMode, RulesConfig};
use dftrace_registry::ConfigBuilder;

/// Typed setters for `[rules]` on a [`ConfigBuilder`] (the code layer, so
/// they win over the preset, the file and the environment).
pub trait RulesOverrides: Sized {
    /// `rules.rule_mode`: which planner spans are made.
    fn rule_mode(self, mode: RuleMode) -> Self;
    /// `rules.preview_limit`: rows per operator preview, 0 for none.
    fn preview_limit(self, rows: usize) -> Self;
    /// `rules.operator_spans`: built from the executed plan (`deferred`,
    /// `metrics-only`), or live.
    fn operator_spans(self, mode: OperatorSpans) -> Self;
}

impl RulesOverrides for ConfigBuilder {
    fn rule_mode(self, mode: RuleMode) -> Self {
        self.set_field::<RulesConfig, _>("rule_mode", mode)
    }

    fn preview_limit(self, rows: usize) -> Self {
        self.set_field::<RulesConfig, _>("preview_limit", rows)
    }

    fn operator_spans(self, mode: OperatorSpans) -> Self {
        self.set_field::<RulesConfig, _>("operator_spans", mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dftrace_registry::{DftraceConfig, Preset};

    #[test]
    fn typed_overrides_win_over_the_preset() {
        let rules = DftraceConfig::builder()
            .preset(Preset::Maximal)
            .rule_mode(RuleMode::PhaseOnly)
            .preview_limit(0)
            .operator_spans(OperatorSpans::Live)
            .build()
            .and_then(|config| config.section::<RulesConfig>());
        let rules = match rules {
            Ok(rules) => rules,
            Err(error) => panic!("typed overrides rejected: {error}"),
        };
        assert_eq!(rules.rule_mode, RuleMode::PhaseOnly);
        assert_eq!(rules.preview_limit, 0);
        assert_eq!(rules.operator_spans, OperatorSpans::Live);
    }
}
