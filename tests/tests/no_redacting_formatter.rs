//! Maximal asks for row previews; without a redacting formatter linked
//! (dftrace-preview-redaction, which this binary does not link, unlike the
//! tests in `shared_capture/`), building the session is an error unless the
//! host allows unredacted previews.

use datafusion::execution::SessionStateBuilder;
use dftrace_registry::{DftraceConfig, Preset, RegistryStateBuilderExt};
use dftrace_rules as _;
use dftrace_tests::TestResult;

#[test]
fn previews_without_a_redacting_formatter_are_an_error() -> TestResult {
    let config = DftraceConfig::builder().preset(Preset::Maximal).build()?;
    let error = SessionStateBuilder::new()
        .with_dftrace(&config)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.contains("rules.preview_limit is 5") && error.contains("dftrace-preview-redaction"),
        "{error}"
    );

    let allowed = DftraceConfig::builder()
        .preset(Preset::Maximal)
        .set("rules.allow_unredacted_preview", true)
        .build()?;
    assert!(SessionStateBuilder::new().with_dftrace(&allowed).is_ok());
    Ok(())
}
