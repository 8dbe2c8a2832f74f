//! The dftrace configuration: presets, layers and typed sections.
//!
//! A configuration is a preset plus three layers of overrides. Each plugin owns
//! one *section* (a typed struct implementing [`Section`]); a section's value
//! is resolved field by field with this precedence, lowest to highest:
//!
//! 1. the preset's defaults ([`Section::for_preset`]);
//! 2. the config file (TOML or JSON), section `[<name>]`;
//! 3. the environment: the standard variables a section declares
//!    ([`Section::ENV_ALIASES`], e.g. `OTEL_SERVICE_NAME`), then
//!    `DFTRACE_<SECTION>__<FIELD>` (nested fields joined by `__`), which wins
//!    over a standard variable for the same field;
//! 4. code: [`ConfigBuilder::set`].
//!
//! The preset itself is chosen the same way: code ([`ConfigBuilder::preset`]),
//! else `DFTRACE_PRESET`, else the file's top-level `preset` key, else
//! [`Preset::default`].
//!
//! Tables merge key by key; any other value (including arrays) replaces the
//! value below it.

use crate::environment::{coerce_env, json_kind};
use crate::error::{ConfigError, Result};
use crate::secrets::{SECRET_MASK, may_hold_credentials, quoted_masked, shown_setting};
use crate::section_owners::section_remedy;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Environment variable naming the preset.
pub const ENV_PRESET: &str = "DFTRACE_PRESET";
/// Environment variable naming a TOML (or `.json`) config file to load.
pub const ENV_CONFIG: &str = "DFTRACE_CONFIG";
/// Variables of dftrace's own tooling (`cargo xtask test` sets them for the
/// tests); the config loader accepts and ignores them.
const TOOLING_VARS: &[&str] = &[
    "DFTRACE_ROTEL_BIN",
    "DFTRACE_MOTO_BIN",
    "DFTRACE_CLI_BIN",
    "DFTRACE_UPDATE_DOCS",
    "DFTRACE_CHROMIUM_BIN",
    "DFTRACE_PYTHON_BIN",
];
const ENV_PREFIX: &str = "DFTRACE_";
const ENV_NESTING: &str = "__";
/// The standard variables of other tools' conventions a section may take as
/// an alias besides `OTEL_*` (`export.log_filter`).
const OTHER_STANDARD_VARS: &[&str] = &["RUST_LOG"];

/// A named set of defaults for every section.
///
/// | preset | exec spans | metrics | rule mode | plan diff | preview | object store |
/// |---|---|---|---|---|---|---|
/// | `maximal` | on | on | full | on | 5 rows, redacted | on |
/// | `maximal-no-data` | on | on | full | on | off | on |
/// | `production-lean` | on | on | phase-only | off | off | on |
///
/// The default is `production-lean`: it puts no row data in spans and costs
/// the least, so a host that turns dftrace on without choosing gets the safe
/// profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// Everything on, including redacted 5-row previews.
    Maximal,
    /// Everything but row previews.
    MaximalNoData,
    /// Operator spans and metrics, planner phases only, no previews or diffs.
    #[default]
    ProductionLean,
}

impl Preset {
    /// Every preset, in documentation order.
    pub const ALL: [Preset; 3] = [
        Preset::Maximal,
        Preset::MaximalNoData,
        Preset::ProductionLean,
    ];

    /// The preset's name as written in config files and variables.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Maximal => "maximal",
            Preset::MaximalNoData => "maximal-no-data",
            Preset::ProductionLean => "production-lean",
        }
    }

    fn accepted() -> String {
        Self::ALL.map(Preset::name).join(", ")
    }

    fn parse(value: &str, origin: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|preset| preset.name().eq_ignore_ascii_case(value.trim()))
            .ok_or_else(|| ConfigError::UnknownPreset {
                value: value.to_owned(),
                origin: origin.to_owned(),
                accepted: Self::accepted(),
            })
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self> {
        Self::parse(value, "code")
    }
}

/// A standard environment variable that sets one field of a section.
#[derive(Debug, Clone, Copy)]
pub struct EnvAlias {
    /// The variable, e.g. `OTEL_SERVICE_NAME`.
    pub var: &'static str,
    /// The dotted field path inside the section, e.g. `service_name`.
    pub field: &'static str,
}

/// One plugin's typed config section.
///
/// Implementors should use `#[serde(deny_unknown_fields)]` so that a typo is an
/// error rather than a silently ignored key.
pub trait Section: Serialize + DeserializeOwned {
    /// The section's name: the TOML table `[name]` and the `DFTRACE_NAME__*`
    /// variable prefix (upper-cased).
    const NAME: &'static str;

    /// Standard variables (outside the `DFTRACE_` namespace) that set fields of
    /// this section.
    const ENV_ALIASES: &'static [EnvAlias] = &[];

    /// The section's defaults under `preset`.
    fn for_preset(preset: Preset) -> Self;
}

/// The layered dftrace configuration. Build one with [`DftraceConfig::builder`]
/// or [`DftraceConfig::from_env`], then read typed sections with
/// [`DftraceConfig::section`].
///
/// Its `Debug` output masks what can hold a credential (header values, the
/// passwords in endpoint URLs), whichever layer set it.
#[derive(Clone, Default)]
pub struct DftraceConfig {
    preset: Preset,
    preset_origin: String,
    file: Option<FileLayer>,
    /// Only the `DFTRACE_*`, `OTEL_*` and `RUST_LOG` variables, sorted for
    /// determinism.
    env: BTreeMap<String, String>,
    code: Map<String, Value>,
}

/// A layer's values as `Debug` shows them: credentials masked.
fn shown_layer(layer: &Map<String, Value>, prefix: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in layer {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if may_hold_credentials(&path) => {
                for key in inner.keys() {
                    out.insert(format!("{path}.{key}"), SECRET_MASK.to_owned());
                }
            }
            Value::Object(inner) => out.extend(shown_layer(inner, &path)),
            Value::String(text) => {
                out.insert(path.clone(), shown_setting(&path, text));
            }
            other => {
                out.insert(path, other.to_string());
            }
        }
    }
    out
}

impl fmt::Debug for DftraceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: BTreeMap<&str, String> = self
            .env
            .iter()
            .map(|(var, value)| (var.as_str(), shown_setting(var, value)))
            .collect();
        f.debug_struct("DftraceConfig")
            .field("preset", &self.preset)
            .field("preset_origin", &self.preset_origin)
            .field(
                "file",
                &self
                    .file
                    .as_ref()
                    .map(|file| (&file.origin, shown_layer(&file.sections, ""))),
            )
            .field("env", &env)
            .field("code", &shown_layer(&self.code, ""))
            .finish()
    }
}

#[derive(Clone)]
struct FileLayer {
    origin: String,
    sections: Map<String, Value>,
}

impl DftraceConfig {
    /// A builder with no layers: the default preset and nothing else.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// The configuration a process gets from its environment: `DFTRACE_PRESET`,
    /// the file named by `DFTRACE_CONFIG` (if set), and every `DFTRACE_*` and
    /// `OTEL_*` variable and `RUST_LOG`.
    pub fn from_env() -> Result<Self> {
        Self::builder().env(std::env::vars()).build()
    }

    /// The preset in force.
    pub fn preset(&self) -> Preset {
        self.preset
    }

    /// The environment variables this config read (only `DFTRACE_*`,
    /// `OTEL_*` and `RUST_LOG`).
    pub fn env_vars(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The typed section `S`, resolved through every layer.
    pub fn section<S: Section>(&self) -> Result<S> {
        let mut origins = Origins::default();
        let mut value = serde_json::to_value(S::for_preset(self.preset)).map_err(|error| {
            ConfigError::InvalidValue {
                field: S::NAME.to_owned(),
                origin: format!("preset {}", self.preset),
                message: format!("the preset's defaults do not serialize: {error}"),
            }
        })?;
        origins.set(&[], format!("preset {}", self.preset));

        if let Some(file) = &self.file
            && let Some(layer) = file.sections.get(S::NAME)
        {
            merge(
                &mut value,
                layer,
                &mut Vec::new(),
                &mut origins,
                &file.origin,
            );
        }
        // Values the environment gave a field without a default that read
        // as numbers: numbers unless the section wants text there.
        let mut read_as_numbers = Vec::new();
        for alias in S::ENV_ALIASES {
            if let Some(raw) = self.env.get(alias.var) {
                let path: Vec<String> = alias.field.split('.').map(str::to_owned).collect();
                set_env(
                    &mut value,
                    &path,
                    alias.var,
                    raw,
                    &mut origins,
                    &mut read_as_numbers,
                )?;
            }
        }
        let prefix = format!("{ENV_PREFIX}{}{ENV_NESTING}", S::NAME.to_ascii_uppercase());
        for (var, raw) in self.env.range(prefix.clone()..) {
            let Some(rest) = var.strip_prefix(&prefix) else {
                break;
            };
            let path: Vec<String> = rest
                .split(ENV_NESTING)
                .map(str::to_ascii_lowercase)
                .collect();
            set_env(
                &mut value,
                &path,
                var,
                raw,
                &mut origins,
                &mut read_as_numbers,
            )?;
        }
        if let Some(layer) = self.code.get(S::NAME) {
            merge(&mut value, layer, &mut Vec::new(), &mut origins, "code");
        }

        loop {
            let error = match serde_path_to_error::deserialize(&value) {
                Ok(section) => return Ok(section),
                Err(error) => error,
            };
            let path = error_path(&error);
            // `SERVICE_VERSION=2` for an optional string: the text, then
            // read again (unless the code layer set that field since).
            let from_env = |(p, var, _): &(Vec<String>, String, String)| {
                *p == path && origins.find(&path) == *var
            };
            if let Some(at) = read_as_numbers.iter().position(from_env) {
                let (path, _, raw) = read_as_numbers.swap_remove(at);
                if let Some(slot) = value.pointer_mut(&json_pointer(&path)) {
                    *slot = Value::String(raw);
                    continue;
                }
            }
            let mut field = S::NAME.to_owned();
            for segment in &path {
                field.push('.');
                field.push_str(segment);
            }
            let mut message = error.into_inner().to_string();
            // Serde quotes the value it refused: not for settings that hold
            // credentials.
            if may_hold_credentials(&field) {
                message = quoted_masked(&message);
            }
            return Err(ConfigError::InvalidValue {
                field,
                origin: origins.find(&path),
                message,
            });
        }
    }

    /// Every section name this config mentions in a file, in a
    /// `DFTRACE_<SECTION>__*` variable or in code, with where it came from.
    pub fn mentioned_sections(&self) -> Vec<(String, String)> {
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        if let Some(file) = &self.file {
            for name in file.sections.keys() {
                found
                    .entry(name.clone())
                    .or_insert_with(|| file.origin.clone());
            }
        }
        for var in self.env.keys() {
            if let Some((section, _)) = var
                .strip_prefix(ENV_PREFIX)
                .and_then(|rest| rest.split_once(ENV_NESTING))
            {
                found
                    .entry(section.to_ascii_lowercase())
                    .or_insert_with(|| var.clone());
            }
        }
        for name in self.code.keys() {
            found
                .entry(name.clone())
                .or_insert_with(|| "code".to_owned());
        }
        found.into_iter().collect()
    }

    /// Whether a file, a variable or code sets the field `section.field`
    /// (so a host's own default for it, such as the traced CLI's
    /// `history.enabled`, must give way).
    pub fn sets_field(&self, section: &str, field: &str) -> bool {
        let in_layer = |layer: &Map<String, Value>| {
            layer
                .get(section)
                .and_then(Value::as_object)
                .is_some_and(|fields| fields.contains_key(field))
        };
        let var = format!(
            "{ENV_PREFIX}{}{ENV_NESTING}{}",
            section.to_ascii_uppercase(),
            field.to_ascii_uppercase()
        );
        self.file
            .as_ref()
            .is_some_and(|file| in_layer(&file.sections))
            || self.env.contains_key(&var)
            || in_layer(&self.code)
    }

    /// Fails when the config mentions a section not in `known`.
    pub fn check_sections(&self, known: &[&str]) -> Result<()> {
        for (section, origin) in self.mentioned_sections() {
            if !known.contains(&section.as_str()) {
                let linked = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                let remedy = section_remedy(&section);
                return Err(ConfigError::UnknownSection {
                    section,
                    origin,
                    linked,
                    remedy,
                });
            }
        }
        Ok(())
    }
}

/// Builds a [`DftraceConfig`] from its layers. The order of calls does not
/// matter: precedence is fixed (see the [module docs](self)).
#[derive(Debug, Default)]
#[must_use]
pub struct ConfigBuilder {
    preset: Option<Preset>,
    file: Option<FileSource>,
    env: Option<Vec<(String, String)>>,
    code: Vec<(String, Value)>,
}

#[derive(Debug)]
enum FileSource {
    Path(PathBuf),
    Toml(String),
    Json(String),
}

impl ConfigBuilder {
    /// Chooses the preset in code; this wins over `DFTRACE_PRESET` and the file.
    pub fn preset(mut self, preset: Preset) -> Self {
        self.preset = Some(preset);
        self
    }

    /// Loads a config file: JSON when the name ends in `.json`, TOML otherwise.
    /// This wins over `DFTRACE_CONFIG`.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(FileSource::Path(path.into()));
        self
    }

    /// Uses a TOML document as the file layer.
    pub fn toml_str(mut self, document: impl Into<String>) -> Self {
        self.file = Some(FileSource::Toml(document.into()));
        self
    }

    /// Uses a JSON document as the file layer.
    pub fn json_str(mut self, document: impl Into<String>) -> Self {
        self.file = Some(FileSource::Json(document.into()));
        self
    }

    /// Reads the environment layer from these variables (pass
    /// `std::env::vars()` for the process environment). Only `DFTRACE_*`,
    /// `OTEL_*` and `RUST_LOG` are kept.
    pub fn env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// Sets one field in code, the highest layer: `path` is
    /// `<section>.<field>[.<nested>...]`, e.g. `rules.preview_limit`.
    pub fn set(mut self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.code.push((path.into(), value.into()));
        self
    }

    /// Sets one field of section `S` in code to a typed value (what the
    /// sections' typed overrides, such as `dftrace_rules::RulesOverrides`,
    /// call): `field` is the field's path inside the section.
    pub fn set_field<S: Section, T: Serialize>(self, field: &str, value: T) -> Self {
        // The sections' values are plain enums, strings and numbers, whose
        // serialization cannot fail; a value that did would reach `build` as
        // a string the section rejects, naming the field.
        let value = serde_json::to_value(value)
            .unwrap_or_else(|error| Value::String(format!("unserializable value: {error}")));
        self.set(format!("{}.{field}", S::NAME), value)
    }

    /// Resolves the layers into a config. Sections are checked when read
    /// ([`DftraceConfig::section`]) or when applied to a session.
    pub fn build(self) -> Result<DftraceConfig> {
        let env: BTreeMap<String, String> = self
            .env
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with(ENV_PREFIX)
                    || k.starts_with("OTEL_")
                    || OTHER_STANDARD_VARS.contains(&k.as_str())
            })
            .filter(|(k, _)| !TOOLING_VARS.contains(&k.as_str()))
            .collect();
        for var in env.keys() {
            let known = var == ENV_PRESET
                || var == ENV_CONFIG
                || var
                    .strip_prefix(ENV_PREFIX)
                    .and_then(|rest| rest.split_once(ENV_NESTING))
                    .is_some_and(|(section, field)| !section.is_empty() && !field.is_empty());
            if var.starts_with(ENV_PREFIX) && !known {
                return Err(ConfigError::UnknownEnv { var: var.clone() });
            }
        }

        let file_source = match self.file {
            Some(source) => Some(source),
            None => env
                .get(ENV_CONFIG)
                .map(|path| FileSource::Path(PathBuf::from(path))),
        };
        let file = file_source.map(read_file_layer).transpose()?;

        let (file_sections, file_preset) = match file {
            Some((origin, mut sections)) => {
                let preset = match sections.remove("preset") {
                    None => None,
                    Some(Value::String(name)) => Some(Preset::parse(&name, &origin)?),
                    Some(other) => {
                        return Err(ConfigError::UnknownPreset {
                            value: other.to_string(),
                            origin,
                            accepted: Preset::accepted(),
                        });
                    }
                };
                for (name, section) in &sections {
                    if !section.is_object() {
                        return Err(ConfigError::Parse {
                            origin,
                            message: format!(
                                "top-level key `{name}` must be a table (a plugin section) or \
                                 `preset`"
                            ),
                        });
                    }
                }
                (
                    Some(FileLayer {
                        origin: origin.clone(),
                        sections,
                    }),
                    preset.map(|p| (p, origin)),
                )
            }
            None => (None, None),
        };

        let (preset, preset_origin) = if let Some(preset) = self.preset {
            (preset, "code".to_owned())
        } else if let Some(name) = env.get(ENV_PRESET) {
            (Preset::parse(name, ENV_PRESET)?, ENV_PRESET.to_owned())
        } else if let Some((preset, origin)) = file_preset {
            (preset, origin)
        } else {
            (Preset::default(), "default".to_owned())
        };

        let mut code = Map::new();
        for (path, value) in self.code {
            let mut segments = path.split('.').map(str::to_owned).collect::<Vec<_>>();
            if segments.len() < 2 || segments.iter().any(String::is_empty) {
                return Err(ConfigError::InvalidValue {
                    field: path,
                    origin: "code".to_owned(),
                    message: "a code override needs a `<section>.<field>` path".to_owned(),
                });
            }
            let leaf = segments.pop().unwrap_or_default();
            let mut target = &mut code;
            for segment in segments {
                let entry = target
                    .entry(segment)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                target = match entry {
                    Value::Object(map) => map,
                    _ => unreachable!("just made an object"),
                };
            }
            target.insert(leaf, value);
        }

        Ok(DftraceConfig {
            preset,
            preset_origin,
            file: file_sections,
            env,
            code,
        })
    }
}

impl DftraceConfig {
    /// Where the preset came from: `code`, `DFTRACE_PRESET`, a file, or
    /// `default`.
    pub fn preset_origin(&self) -> &str {
        &self.preset_origin
    }
}

fn read_file_layer(source: FileSource) -> Result<(String, Map<String, Value>)> {
    let (origin, text, json) = match source {
        FileSource::Path(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
                path: path.clone(),
                source,
            })?;
            let json = path
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
            (display_path(&path), text, json)
        }
        FileSource::Toml(text) => ("inline TOML".to_owned(), text, false),
        FileSource::Json(text) => ("inline JSON".to_owned(), text, true),
    };
    let parsed: Value = if json {
        serde_json::from_str(&text).map_err(|error| ConfigError::Parse {
            origin: origin.clone(),
            message: error.to_string(),
        })?
    } else {
        let table: toml::Table = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            origin: origin.clone(),
            message: error.message().to_owned(),
        })?;
        serde_json::to_value(table).map_err(|error| ConfigError::Parse {
            origin: origin.clone(),
            message: error.to_string(),
        })?
    };
    match parsed {
        Value::Object(map) => Ok((origin, map)),
        other => Err(ConfigError::Parse {
            origin,
            message: format!("expected a table of sections, found {}", json_kind(&other)),
        }),
    }
}

fn display_path(path: &Path) -> String {
    format!("file {}", path.display())
}

/// The layer each field's value came from, by field path.
#[derive(Debug, Default)]
struct Origins(BTreeMap<Vec<String>, String>);

impl Origins {
    fn set(&mut self, path: &[String], origin: impl Into<String>) {
        self.0.insert(path.to_vec(), origin.into());
    }

    /// The origin of the deepest recorded prefix of `path`.
    fn find(&self, path: &[String]) -> String {
        (0..=path.len())
            .rev()
            .find_map(|len| self.0.get(&path[..len]))
            .cloned()
            .unwrap_or_else(|| "default".to_owned())
    }
}

fn merge(
    target: &mut Value,
    layer: &Value,
    path: &mut Vec<String>,
    origins: &mut Origins,
    origin: &str,
) {
    match (target, layer) {
        (Value::Object(target), Value::Object(layer)) => {
            for (key, value) in layer {
                path.push(key.clone());
                let slot = target.entry(key.clone()).or_insert(Value::Null);
                if slot.is_object() && value.is_object() {
                    merge(slot, value, path, origins, origin);
                } else {
                    *slot = value.clone();
                    origins.set(path, origin);
                }
                path.pop();
            }
        }
        (target, layer) => {
            *target = layer.clone();
            origins.set(path, origin);
        }
    }
}

/// Sets the field at `path` from an environment string, read as the type the
/// field has below this layer.
/// The section-relative path of the field a deserialization error is about.
fn error_path<E>(error: &serde_path_to_error::Error<E>) -> Vec<String> {
    error
        .path()
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
            _ => None,
        })
        .collect()
}

/// `path` as a JSON pointer (RFC 6901) into a section's value.
fn json_pointer(path: &[String]) -> String {
    path.iter()
        .map(|segment| format!("/{}", segment.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Sets the variable `var`'s value at `path`, read as the type the value
/// there has; a value read as a number where there is no default to say the
/// type is noted in `read_as_numbers` with the variable and its text.
fn set_env(
    value: &mut Value,
    path: &[String],
    var: &str,
    raw: &str,
    origins: &mut Origins,
    read_as_numbers: &mut Vec<(Vec<String>, String, String)>,
) -> Result<()> {
    let mut slot = value;
    for segment in path {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(map) = slot else {
            unreachable!("just made an object")
        };
        slot = map.entry(segment.clone()).or_insert(Value::Null);
    }
    let coerced = coerce_env(slot, var, raw)?;
    if slot.is_null() && coerced.is_number() {
        read_as_numbers.push((path.to_vec(), var.to_owned(), raw.to_owned()));
    }
    *slot = coerced;
    origins.set(path, var);
    Ok(())
}

#[cfg(test)]
mod tests;
