//! The configuration reference (`docs/configuration.md`) kept true by
//! construction: each section's table of fields, preset values and
//! environment variables is generated from the linked plugins' own defaults,
//! while the hand-written type and description columns are carried over from
//! the current file by field name.
//!
//! `cargo xtask schema --update` rewrites the tables; the `docs` test fails
//! when the file differs from what the code generates, or when a field still
//! lacks its type or description.

use dftrace_registry::{Plugin, Preset};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The placeholder a new field gets until someone documents it.
pub const TODO: &str = "TODO";

/// Preset columns, in table order: the default first.
const COLUMNS: [Preset; 3] = [
    Preset::ProductionLean,
    Preset::MaximalNoData,
    Preset::Maximal,
];

/// One documented field: what the code says, and what people wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRow {
    /// The dotted path inside the section, e.g. `otlp.endpoint`.
    pub path: String,
    /// Hand-written: the field's type as a user writes it.
    pub ty: String,
    /// The value under each preset: production-lean, maximal-no-data, maximal.
    pub values: [String; 3],
    /// `DFTRACE_…` variable plus any standard alias.
    pub env: String,
    /// Hand-written: what the field does.
    pub description: String,
}

fn begin_marker(section: &str) -> String {
    format!("<!-- BEGIN GENERATED: [{section}] -->")
}

fn end_marker(section: &str) -> String {
    format!("<!-- END GENERATED: [{section}] -->")
}

/// Fields are the leaves of the serialized defaults: objects with keys are
/// structs and are descended into; objects empty under every preset are
/// free-form maps (`resource_attributes`, `custom_fields`) and are one field.
fn leaf_paths(values: &[Value], prefix: &str, out: &mut Vec<String>) {
    let keys: BTreeSet<String> = values
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|object| object.keys().cloned())
        .collect();
    if keys.is_empty() {
        out.push(prefix.to_owned());
        return;
    }
    for key in keys {
        let children: Vec<Value> = values
            .iter()
            .map(|value| value.get(&key).cloned().unwrap_or(Value::Null))
            .collect();
        let path = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        leaf_paths(&children, &path, out);
    }
}

fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |value, key| value.get(key))
}

fn render_value(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "unset".to_owned(),
        Some(value) => format!("`{value}`"),
    }
}

/// Every field of `plugin`'s section, as dotted paths (`otlp.endpoint`).
pub fn field_paths(plugin: &Plugin) -> Vec<String> {
    let defaults: Vec<Value> = COLUMNS.iter().map(|p| plugin.defaults(*p)).collect();
    let mut paths = Vec::new();
    leaf_paths(&defaults, "", &mut paths);
    paths
}

/// The `DFTRACE_<SECTION>__<FIELD>` variable that sets `path`.
pub fn env_var(plugin: &Plugin, path: &str) -> String {
    format!(
        "DFTRACE_{}__{}",
        plugin.name().to_uppercase(),
        path.replace('.', "__").to_uppercase()
    )
}

fn env_column(plugin: &Plugin, path: &str) -> String {
    let mut column = format!("`{}`", env_var(plugin, path));
    for alias in plugin.env_aliases() {
        if alias.field == path {
            column.push_str(&format!(", `{}`", alias.var));
        }
    }
    column
}

/// The rows the code dictates for one section, with hand-written columns
/// taken from `existing` (by path) or set to [`TODO`].
pub fn section_rows(plugin: &Plugin, existing: &BTreeMap<String, FieldRow>) -> Vec<FieldRow> {
    let defaults: Vec<Value> = COLUMNS.iter().map(|p| plugin.defaults(*p)).collect();
    field_paths(plugin)
        .into_iter()
        .map(|path| {
            let written = existing.get(&path);
            FieldRow {
                ty: written.map_or_else(|| TODO.to_owned(), |row| row.ty.clone()),
                description: written.map_or_else(|| TODO.to_owned(), |row| row.description.clone()),
                values: [0, 1, 2].map(|i| render_value(lookup(&defaults[i], &path))),
                env: env_column(plugin, &path),
                path,
            }
        })
        .collect()
}

fn render_table(rows: &[FieldRow]) -> String {
    let mut table = format!(
        "| field | type | {} (default) | {} | {} | environment | description |\n\
         |---|---|---|---|---|---|---|\n",
        COLUMNS[0], COLUMNS[1], COLUMNS[2]
    );
    for row in rows {
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            row.path, row.ty, row.values[0], row.values[1], row.values[2], row.env, row.description
        ));
    }
    table
}

/// Splits a table row on unescaped `|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = Vec::new();
    let mut current = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                current.push_str("\\|");
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut current).trim().to_owned()),
            c => current.push(c),
        }
    }
    cells.push(current.trim().to_owned());
    cells
}

/// The rows of one generated block of `document`, by path.
pub fn parse_rows(document: &str, section: &str) -> BTreeMap<String, FieldRow> {
    let Some((_, rest)) = document.split_once(&begin_marker(section)) else {
        return BTreeMap::new();
    };
    let block = rest.split(&end_marker(section)).next().unwrap_or_default();
    block
        .lines()
        .filter(|line| line.starts_with("| `"))
        .filter_map(|line| {
            let cells = cells(line);
            let [path, ty, v0, v1, v2, env, description] = cells.as_slice() else {
                return None;
            };
            let path = path.trim_matches('`').to_owned();
            Some((
                path.clone(),
                FieldRow {
                    path,
                    ty: ty.clone(),
                    values: [v0.clone(), v1.clone(), v2.clone()],
                    env: env.clone(),
                    description: description.clone(),
                },
            ))
        })
        .collect()
}

/// `document` with every linked section's generated block rewritten. A
/// section without a block yet gets a heading and a block at the end.
pub fn regenerate(document: &str, plugins: &[&Plugin]) -> String {
    let mut document = document.to_owned();
    for plugin in plugins {
        let section = plugin.name();
        let rows = section_rows(plugin, &parse_rows(&document, section));
        let block = format!(
            "{}\n{}{}",
            begin_marker(section),
            render_table(&rows),
            end_marker(section)
        );
        let begin = begin_marker(section);
        let end = end_marker(section);
        match (document.find(&begin), document.find(&end)) {
            (Some(start), Some(stop)) if stop > start => {
                document.replace_range(start..stop + end.len(), &block);
            }
            _ => {
                document.push_str(&format!("\n## `[{section}]`\n\n{block}\n"));
            }
        }
    }
    document
}

/// Fields whose type or description is still [`TODO`], as `section.field`.
pub fn undocumented(document: &str, plugins: &[&Plugin]) -> Vec<String> {
    plugins
        .iter()
        .flat_map(|plugin| {
            parse_rows(document, plugin.name())
                .into_values()
                .filter(|row| row.ty == TODO || row.description == TODO)
                .map(move |row| format!("{}.{}", plugin.name(), row.path))
        })
        .collect()
}
