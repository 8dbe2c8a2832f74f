//! Errors of the config loader and the registry.

use std::path::PathBuf;

/// A `Result` whose error defaults to [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// A problem with the dftrace configuration.
///
/// Every variant names what was wrong (the field, variable or file), the bad
/// value where there is one, and what is accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A config file could not be read.
    #[error("cannot read dftrace config file `{}`: {source}", path.display())]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A config document is not valid TOML or JSON, or is not shaped like a
    /// dftrace config (a table of sections).
    #[error("invalid dftrace config in {origin}: {message}")]
    Parse {
        /// Where the document came from (a file path, or "inline TOML").
        origin: String,
        /// What the parser reported.
        message: String,
    },

    /// A field holds a value its section does not accept.
    #[error("invalid value for `{field}` (from {origin}): {message}")]
    InvalidValue {
        /// The dotted path of the field, starting with the section name.
        field: String,
        /// The layer the bad value came from: `preset <name>`, a file path, an
        /// environment variable, or `code`.
        origin: String,
        /// What was wrong and what is accepted.
        message: String,
    },

    /// An environment variable holds a value that cannot be read as the type
    /// of the field it sets.
    #[error("invalid value `{value}` in environment variable {var}: expected {expected}")]
    InvalidEnv {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: String,
    },

    /// A `DFTRACE_` variable that dftrace does not know.
    #[error(
        "unknown environment variable {var}: accepted are DFTRACE_PRESET, DFTRACE_CONFIG and \
         DFTRACE_<SECTION>__<FIELD> (for example DFTRACE_RULES__PREVIEW_LIMIT)"
    )]
    UnknownEnv {
        /// The variable.
        var: String,
    },

    /// The preset name is not one of the presets.
    #[error("unknown preset `{value}` (from {origin}): accepted are {accepted}")]
    UnknownPreset {
        /// The name given.
        value: String,
        /// Where it came from.
        origin: String,
        /// The accepted names, comma separated.
        accepted: String,
    },

    /// The config has a section for a plugin that is not linked into this
    /// program.
    #[error(
        "config section `[{section}]` (from {origin}) names no linked dftrace plugin; \
         linked plugins: {linked}. {remedy}"
    )]
    UnknownSection {
        /// The section name.
        section: String,
        /// Where it came from.
        origin: String,
        /// The linked plugins, comma separated (or `none`).
        linked: String,
        /// How to link the plugin that owns the section.
        remedy: String,
    },
}

/// A problem applying dftrace to a DataFusion session.
#[cfg(feature = "session")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A plugin's hook failed.
    #[error("dftrace plugin `{plugin}` failed: {source}")]
    Plugin {
        /// The plugin's name.
        plugin: &'static str,
        /// What the hook reported.
        source: datafusion::error::DataFusionError,
    },

    /// `build_dftrace` was called on a builder that `with_dftrace` was not
    /// applied to, or whose session config was replaced afterwards.
    #[error(
        "build_dftrace found no dftrace session: call `with_dftrace` first, and call \
         `with_config` (which replaces the session config) before `with_dftrace`, not after"
    )]
    NotConfigured,
}

#[cfg(feature = "session")]
impl From<RegistryError> for datafusion::error::DataFusionError {
    fn from(error: RegistryError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(error))
    }
}
