//! Maximal asks for row previews; without a redacting formatter linked
//! (dftrace-preview-redaction, which this binary does not link, unlike the
//! tests in `shared_capture/`), building the session is an error unless the
//! host allows unredacted previews.

use datafusion::execution::SessionStateBuilder;
use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
use dftrace_rules as _;
use dftrace_tests::{TestResult, assert_contains_all, error_text};

#[test]
fn previews_without_a_redacting_formatter_are_an_error() -> TestResult {
    let config = DftraceConfig::builder().preset(Preset::Maximal).build()?;
    let error = error_text(SessionStateBuilder::new().with_dftrace(&config));
    assert_contains_all(
        &error,
        &["rules.preview_limit is 5", "dftrace-preview-redaction"],
    );

    let allowed = DftraceConfig::builder()
        .preset(Preset::Maximal)
        .set("rules.allow_unredacted_preview", true)
        .build()?;
    assert!(SessionStateBuilder::new().with_dftrace(&allowed).is_ok());
    Ok(())
}
