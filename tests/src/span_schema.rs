//! The span schema contract (`docs/span-schema.json`, rendered to
//! `docs/span-schema.md`): which spans dftrace produces, and which attributes,
//! of which type, they carry under which configuration.
//!
//! The drift test classifies every span a representative workload produces
//! into a [`SpanKind`] and checks each attribute against the kind's
//! [`AttributeSpec`]s. [`Observation::diff`] lists what drifted;
//! [`Observation::update`] folds deliberate changes into the schema
//! (`cargo xtask schema --update`), leaving new entries marked [`TODO`] until
//! someone documents them.

use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The placeholder for a description nobody has written yet.
pub const TODO: &str = "TODO";

/// The whole contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanSchema {
    /// Bumped when a key is renamed or removed (a breaking change for hosts).
    pub version: u32,
    /// The configurations the drift test runs, named in `required_in`.
    pub runs: Vec<String>,
    /// Attributes the OpenTelemetry layer puts on every span.
    pub common_attributes: Vec<AttributeSpec>,
    /// Every kind of span, matched in order (first match wins).
    pub kinds: Vec<SpanKind>,
}

/// One kind of span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanKind {
    /// A short id, e.g. `operator`.
    pub kind: String,
    /// The `tracing` target the span is created under (its `target`
    /// attribute).
    pub target: String,
    /// Span name patterns; `*` matches any run of characters.
    pub names: Vec<String>,
    /// An attribute key a span must carry to be of this kind, when the
    /// target and name do not tell two kinds apart (deferred operator spans
    /// carry `dftrace.operator.index`, live ones do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// The crate that creates the span.
    pub emitted_by: String,
    /// The configuration that turns it on.
    pub config: String,
    /// What it stands for.
    pub description: String,
    /// An example span name.
    pub example: String,
    /// Runs in which at least one span of this kind must appear.
    pub required_in: Vec<String>,
    /// Attributes specific to this kind.
    pub attributes: Vec<AttributeSpec>,
}

/// One attribute key (or a family of keys ending in `.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    /// The key, or a prefix pattern such as `datafusion.metrics.*`.
    pub key: String,
    /// `string`, `int`, `double`, `bool` or `array`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The crate that records it.
    pub emitted_by: String,
    /// The configuration that turns it on.
    pub config: String,
    /// An example value.
    pub example: String,
    /// What it means.
    pub description: String,
    /// Runs in which every span of the kind must carry it.
    pub required_in: Vec<String>,
}

impl AttributeSpec {
    fn matches(&self, key: &str) -> bool {
        match self.key.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => self.key == key,
        }
    }

    fn new_undocumented(key: &str, ty: &str) -> AttributeSpec {
        AttributeSpec {
            key: key.to_owned(),
            ty: ty.to_owned(),
            emitted_by: TODO.to_owned(),
            config: TODO.to_owned(),
            example: TODO.to_owned(),
            description: TODO.to_owned(),
            required_in: Vec::new(),
        }
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// The schema type of an attribute value.
pub fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "bool",
        Value::I64(_) => "int",
        Value::F64(_) => "double",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        _ => "unknown",
    }
}

fn target_of(span: &SpanData) -> String {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "target")
        .map(|kv| kv.value.as_str().into_owned())
        .unwrap_or_default()
}

impl SpanSchema {
    /// Reads the schema from JSON text.
    pub fn from_json(text: &str) -> Result<SpanSchema, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The schema as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).map_or_else(|e| format!("{e}"), |json| json + "\n")
    }

    /// The index of the kind `span` belongs to.
    pub fn classify(&self, span: &SpanData) -> Option<usize> {
        let target = target_of(span);
        self.kinds.iter().position(|kind| {
            kind.target == target
                && kind.names.iter().any(|p| glob(p, &span.name))
                && kind
                    .marker
                    .as_ref()
                    .is_none_or(|marker| span.attributes.iter().any(|kv| kv.key.as_str() == marker))
        })
    }

    /// Entries someone still has to document, as readable paths.
    pub fn undocumented(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let is_todo = |spec: &AttributeSpec| {
            [
                &spec.emitted_by,
                &spec.config,
                &spec.example,
                &spec.description,
            ]
            .iter()
            .any(|text| text.as_str() == TODO)
        };
        for spec in &self.common_attributes {
            if is_todo(spec) {
                missing.push(format!("common attribute `{}`", spec.key));
            }
        }
        for kind in &self.kinds {
            if [
                &kind.emitted_by,
                &kind.config,
                &kind.description,
                &kind.example,
            ]
            .iter()
            .any(|text| text.as_str() == TODO)
            {
                missing.push(format!("span kind `{}`", kind.kind));
            }
            for spec in &kind.attributes {
                if is_todo(spec) {
                    missing.push(format!("attribute `{}` of `{}`", spec.key, kind.kind));
                }
            }
        }
        missing
    }
}

/// Where an attribute spec lives: the common list or a kind's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SpecRef {
    Common(usize),
    Kind(usize, usize),
}

/// What the workload produced, measured against a schema.
#[derive(Debug, Default)]
pub struct Observation {
    /// Spans per (kind, run).
    spans: BTreeMap<(usize, String), usize>,
    /// Spans carrying a spec'd attribute per (spec, kind, run).
    carried: BTreeMap<(SpecRef, usize, String), usize>,
    /// Spans that match no kind: (target, name) → runs.
    unknown_spans: BTreeMap<(String, String), BTreeSet<String>>,
    /// Keys no spec covers: (kind, key, type) → runs.
    unknown_keys: BTreeMap<(usize, String, String), BTreeSet<String>>,
    /// Keys of the wrong type: (spec, kind, observed type) → an example key.
    wrong_types: BTreeMap<(SpecRef, usize, String), String>,
}

impl Observation {
    /// Measures `spans` (all from run `run`) against `schema`.
    pub fn record(&mut self, schema: &SpanSchema, run: &str, spans: &[SpanData]) {
        for span in spans {
            let Some(kind_index) = schema.classify(span) else {
                self.unknown_spans
                    .entry((target_of(span), span.name.to_string()))
                    .or_default()
                    .insert(run.to_owned());
                continue;
            };
            *self.spans.entry((kind_index, run.to_owned())).or_default() += 1;
            let kind = &schema.kinds[kind_index];
            let mut seen = BTreeSet::new();
            for kv in &span.attributes {
                let key = kv.key.as_str();
                let ty = type_of(&kv.value);
                let spec = kind
                    .attributes
                    .iter()
                    .position(|s| s.matches(key))
                    .map(|i| SpecRef::Kind(kind_index, i))
                    .or_else(|| {
                        schema
                            .common_attributes
                            .iter()
                            .position(|s| s.matches(key))
                            .map(SpecRef::Common)
                    });
                let Some(spec) = spec else {
                    self.unknown_keys
                        .entry((kind_index, key.to_owned(), ty.to_owned()))
                        .or_default()
                        .insert(run.to_owned());
                    continue;
                };
                let expected = match spec {
                    SpecRef::Common(i) => &schema.common_attributes[i].ty,
                    SpecRef::Kind(k, i) => &schema.kinds[k].attributes[i].ty,
                };
                if expected != ty {
                    self.wrong_types
                        .insert((spec, kind_index, ty.to_owned()), key.to_owned());
                }
                seen.insert(spec);
            }
            for spec in seen {
                *self
                    .carried
                    .entry((spec, kind_index, run.to_owned()))
                    .or_default() += 1;
            }
        }
    }

    fn spans_of(&self, kind: usize, run: &str) -> usize {
        self.spans
            .get(&(kind, run.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn carried_by(&self, spec: SpecRef, kind: usize, run: &str) -> usize {
        self.carried
            .get(&(spec, kind, run.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Every difference between `schema` and what was observed, one line
    /// each: `+` is produced but not in the schema, `-` is required by the
    /// schema but missing, `~` has another type. Empty means no drift.
    pub fn diff(&self, schema: &SpanSchema) -> Vec<String> {
        let mut lines = Vec::new();
        for ((target, name), runs) in &self.unknown_spans {
            lines.push(format!(
                "+ span `{name}` (target `{target}`) in {runs:?}: matches no span kind"
            ));
        }
        for ((kind, key, ty), runs) in &self.unknown_keys {
            lines.push(format!(
                "+ attribute `{key}` ({ty}) on `{}` spans in {runs:?}: not in the schema",
                schema.kinds[*kind].kind
            ));
        }
        for ((spec, kind, ty), key) in &self.wrong_types {
            let expected = match *spec {
                SpecRef::Common(i) => &schema.common_attributes[i].ty,
                SpecRef::Kind(k, i) => &schema.kinds[k].attributes[i].ty,
            };
            lines.push(format!(
                "~ attribute `{key}` on `{}` spans: schema says {expected}, spans carry {ty}",
                schema.kinds[*kind].kind
            ));
        }
        for (kind_index, kind) in schema.kinds.iter().enumerate() {
            for run in &kind.required_in {
                if self.spans_of(kind_index, run) == 0 {
                    lines.push(format!(
                        "- span kind `{}` is required in {run} but none was produced",
                        kind.kind
                    ));
                }
            }
            let specs = kind
                .attributes
                .iter()
                .enumerate()
                .map(|(i, spec)| (SpecRef::Kind(kind_index, i), spec))
                .chain(
                    schema
                        .common_attributes
                        .iter()
                        .enumerate()
                        .map(|(i, spec)| (SpecRef::Common(i), spec)),
                );
            for (spec_ref, spec) in specs {
                for run in &spec.required_in {
                    let total = self.spans_of(kind_index, run);
                    let carried = self.carried_by(spec_ref, kind_index, run);
                    if carried < total {
                        lines.push(format!(
                            "- attribute `{}` is required on `{}` spans in {run} but {} of {total} lack it",
                            spec.key,
                            kind.kind,
                            total - carried
                        ));
                    }
                }
            }
        }
        lines
    }

    /// `schema` with what was observed folded in: new kinds and keys added
    /// (marked [`TODO`]), types and `required_in` set from what the runs
    /// produced. Specs never observed are kept: they may be conditional.
    pub fn update(&self, schema: &SpanSchema) -> SpanSchema {
        let mut updated = schema.clone();
        for (spec, _, ty) in self.wrong_types.keys() {
            match *spec {
                SpecRef::Common(i) => updated.common_attributes[i].ty = ty.clone(),
                SpecRef::Kind(k, i) => updated.kinds[k].attributes[i].ty = ty.clone(),
            }
        }
        for (kind_index, kind) in updated.kinds.iter_mut().enumerate() {
            kind.required_in = schema
                .runs
                .iter()
                .filter(|run| self.spans_of(kind_index, run) > 0)
                .cloned()
                .collect();
            for (i, spec) in kind.attributes.iter_mut().enumerate() {
                spec.required_in =
                    self.always_carried(SpecRef::Kind(kind_index, i), &[kind_index], schema);
            }
        }
        for (i, spec) in updated.common_attributes.iter_mut().enumerate() {
            let kinds: Vec<usize> = (0..schema.kinds.len()).collect();
            spec.required_in = self.always_carried(SpecRef::Common(i), &kinds, schema);
        }
        for (kind, key, ty) in self.unknown_keys.keys() {
            let attributes = &mut updated.kinds[*kind].attributes;
            if !attributes.iter().any(|s| s.matches(key)) {
                attributes.push(AttributeSpec::new_undocumented(key, ty));
            }
        }
        for ((target, name), runs) in &self.unknown_spans {
            updated.kinds.push(SpanKind {
                kind: format!("{TODO}: {name}"),
                target: target.clone(),
                names: vec![name.clone()],
                marker: None,
                emitted_by: TODO.to_owned(),
                config: TODO.to_owned(),
                description: TODO.to_owned(),
                example: name.clone(),
                required_in: runs.iter().cloned().collect(),
                attributes: Vec::new(),
            });
        }
        updated
    }

    /// Runs in which every span of `kinds` that appeared carried `spec`.
    fn always_carried(&self, spec: SpecRef, kinds: &[usize], schema: &SpanSchema) -> Vec<String> {
        schema
            .runs
            .iter()
            .filter(|run| {
                let total: usize = kinds.iter().map(|k| self.spans_of(*k, run)).sum();
                let carried: usize = kinds.iter().map(|k| self.carried_by(spec, *k, run)).sum();
                total > 0 && carried == total
            })
            .cloned()
            .collect()
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn runs_cell(required_in: &[String], runs: &[String]) -> String {
    if required_in.is_empty() {
        "optional".to_owned()
    } else if required_in.len() == runs.len() {
        "always".to_owned()
    } else {
        required_in.join(", ")
    }
}

fn attribute_table(out: &mut String, specs: &[AttributeSpec], runs: &[String]) {
    out.push_str("| key | type | required in | emitted by | config | example | meaning |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for spec in specs {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | `{}` | {} |",
            spec.key,
            spec.ty,
            runs_cell(&spec.required_in, runs),
            escape(&spec.emitted_by),
            escape(&spec.config),
            escape(&spec.example),
            escape(&spec.description)
        );
    }
}

/// `docs/span-schema.md`, rendered from the schema so the two cannot differ.
pub fn render_markdown(schema: &SpanSchema) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "# Span schema (version {})\n\n\
         <!-- Generated from docs/span-schema.json by `cargo xtask schema --update`; \
         edit the JSON, not this file. -->\n\n\
         Every span dftrace produces or relies on, and every attribute key, with its \
         OpenTelemetry type. Dashboards and alerts can depend on these names: the \
         `span_schema` test runs a representative workload (scan, filter, hash join, \
         aggregate, sort, limit, union, recursive CTE, `file://` parquet, S3 through a \
         real endpoint, a failing query) under each configuration below and fails on \
         any span or attribute this file does not list, on a type change, and on a \
         required attribute that went missing.\n\n\
         Configurations (the \"required in\" column): {}. \"always\" means every one of \
         them; \"optional\" means the attribute appears only when there is something to \
         record (a plan that changed, a storage error, ...).\n\n\
         A span is matched to the first kind whose `target` equals its `target` \
         attribute, one of whose name patterns matches (`*` is a wildcard) and, when \
         the kind names a marker, that carries the marker attribute.\n\n\
         Hosts may add their own root-span attributes (`rules.custom_fields`, \
         `QueryOptions::attribute`); those keys are theirs and are not listed here.\n\n",
        schema.version,
        schema
            .runs
            .iter()
            .map(|run| format!("`{run}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out.push_str("## Span kinds\n\n| kind | names | target | marker | emitted by | config | required in |\n|---|---|---|---|---|---|---|\n");
    for kind in &schema.kinds {
        let _ = writeln!(
            out,
            "| [{}](#{}) | {} | `{}` | {} | {} | {} | {} |",
            kind.kind,
            kind.kind.replace('_', "-"),
            kind.names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            kind.target,
            kind.marker
                .as_ref()
                .map_or_else(|| "–".to_owned(), |marker| format!("`{marker}`")),
            escape(&kind.emitted_by),
            escape(&kind.config),
            runs_cell(&kind.required_in, &schema.runs)
        );
    }
    for kind in &schema.kinds {
        let _ = write!(
            out,
            "\n## {}\n\n{}\n\nExample name: `{}`.\n\n",
            kind.kind, kind.description, kind.example
        );
        if kind.attributes.is_empty() {
            out.push_str("Only the common attributes.\n");
        } else {
            attribute_table(&mut out, &kind.attributes, &schema.runs);
        }
    }
    out.push_str(
        "\n## Common attributes\n\nSet by the `tracing-opentelemetry` layer as dftrace-bootstrap \
         configures it, on every span above that is made through `tracing`. Deferred operator \
         spans are built through OpenTelemetry directly and carry only `target`, which is why \
         the others are required only where every span is a `tracing` span.\n\n",
    );
    attribute_table(&mut out, &schema.common_attributes, &schema.runs);
    out
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_like_shell_stars() {
        assert!(glob("*Exec", "HashJoinExec"));
        assert!(glob("*.*", "s3.get_opts"));
        assert!(!glob("*.*", "Instrument"));
        assert!(glob("dftrace.query", "dftrace.query"));
        assert!(!glob("*Exec", "ExecX"));
        assert!(glob("*", ""));
    }
}
