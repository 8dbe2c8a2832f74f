//! The `[preview]` config section.

use dftrace_registry::{Preset, Section};
use serde::{Deserialize, Serialize};

/// Column names (case-insensitive globs) masked by default under `deny-list`.
///
/// A pattern without a dot matches a field of that name at any depth; a
/// pattern with dots matches the full path of a nested field (`user.email`).
pub const DEFAULT_DENY: &[&str] = &[
    "*password*",
    "*passwd*",
    "*secret*",
    "*token*",
    "*api_key*",
    "*apikey*",
    "*access_key*",
    "*private_key*",
    "*credential*",
    "authorization",
    "cookie",
    "session_id",
    "ssn",
    "*social_security*",
    "*credit_card*",
    "card_number",
    "cvv",
    "iban",
];

/// The token that replaces a masked string or binary value.
pub const DEFAULT_MASK: &str = "***";

/// Which columns a preview shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Show every column as it is (value detectors still apply when on).
    None,
    /// Mask the columns matching `deny`; show the rest.
    DenyList,
    /// Show only the columns matching `allow`; mask the rest.
    AllowList,
}

/// How a pattern is compared with a field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameMatching {
    /// Case and the separators `_`, `-` and spaces are ignored on both
    /// sides, so `*password*` matches `Pass_Word`, `PASSWORD`, `passWord`
    /// and `pass-word`, and `*api_key*` matches `apiKey`.
    Normalized,
    /// The glob as written, case and separators included.
    Exact,
}

/// Detectors that mask a string value by its content, whatever its column's
/// name. All off by default and in every preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detectors {
    /// Values containing an email address.
    pub email: bool,
    /// Values containing a bearer token (`Bearer ...`) or a JWT (`eyJ...`).
    pub bearer_token: bool,
    /// Values containing an AWS access key id (`AKIA...`, `ASIA...`).
    pub aws_access_key: bool,
    /// Values containing a 13-19 digit card number that passes the Luhn check.
    pub card_number: bool,
}

/// Preview redaction and bounds: the `[preview]` section. How many rows a
/// preview keeps is `rules.preview_limit`, not set here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewConfig {
    /// Which columns are shown.
    pub policy: Policy,
    /// Patterns of columns to mask under `deny-list`
    /// (default: [`DEFAULT_DENY`]).
    pub deny: Vec<String>,
    /// Patterns of columns to show under `allow-list`.
    pub allow: Vec<String>,
    /// How patterns compare with names: `normalized` (case and `_`, `-`,
    /// space ignored) or `exact`.
    pub name_matching: NameMatching,
    /// The token that replaces masked strings and binaries.
    pub mask: String,
    /// Content detectors.
    pub detectors: Detectors,
    /// Maximum width of the preview table in characters; wide values are cut
    /// with `…`, and columns that do not fit even when compacted are dropped
    /// (`datafusion-tracing`'s compact formatter). 0 = unlimited.
    pub max_width: usize,
    /// Maximum height of one row in lines. 0 = unlimited.
    pub max_row_height: usize,
    /// The width a column is compacted to when deciding which columns fit
    /// `max_width` (at least 4 is used).
    pub min_compacted_col_width: usize,
    /// Hard cap on the bytes of one `datafusion.preview` attribute, including
    /// the truncation marker (at least 64).
    pub max_bytes: usize,
}

impl Section for PreviewConfig {
    const NAME: &'static str = "preview";

    fn for_preset(_preset: Preset) -> Self {
        // Every preset redacts the same way; presets differ in whether
        // previews are taken at all (`rules.preview_limit`).
        PreviewConfig {
            policy: Policy::DenyList,
            deny: DEFAULT_DENY.iter().map(|s| (*s).to_owned()).collect(),
            allow: Vec::new(),
            name_matching: NameMatching::Normalized,
            mask: DEFAULT_MASK.to_owned(),
            detectors: Detectors::default(),
            max_width: 120,
            max_row_height: 3,
            min_compacted_col_width: 12,
            max_bytes: 4096,
        }
    }
}

impl Default for PreviewConfig {
    fn default() -> Self {
        Self::for_preset(Preset::default())
    }
}
