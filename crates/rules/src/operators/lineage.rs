//! Where each output column of an operator comes from: the scanned fields
//! (and literals) its values are computed from, following the executed
//! plan's expressions down to the scans. Previews mask a column derived from
//! a denied field, not only a column whose own name is denied.
//!
//! Followed: column references; struct field access (`get_field`, which
//! extends the source path: `x['creds']['token']` comes from `x.creds.token`);
//! any other function, cast, `CASE` or operator (the union of its inputs);
//! literals; projections and their aliases (DataFusion's extracted and
//! common-subexpression columns included, being projections); aggregates (the
//! group keys, and each aggregate's arguments, or its partial state by name
//! for a final aggregate); projections pushed into file scans; and every
//! other operator by output name (filters, sorts, limits, repartitions,
//! joins and unions pass their inputs' columns on under the same names). A
//! column no rule accounts for is [`ColumnSources::Unknown`], which the
//! redactor treats as denied.
//!
//! The other direction, [`NamesAbove`]: the names each column's values take
//! in the operators above it, by the same rules walked top-down, so a
//! column aliased to a denied name further up (`column3 AS password`) is
//! masked below the alias as well.

use super::wrapper::DftraceExec;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use dftrace_registry::ColumnSources;
use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The sources of each output column of `node` (an operator as it ran; its
/// children may be dftrace's wrappers). `record_literals` keeps literals
/// from counting as sources.
pub(crate) fn output_sources(
    node: &Arc<dyn ExecutionPlan>,
    record_literals: bool,
) -> Vec<ColumnSources> {
    Lineage { record_literals }.of(node.as_ref())
}

struct Lineage {
    record_literals: bool,
}

/// The node under dftrace's wrappers (and `datafusion-tracing`'s).
fn unwrapped(node: &dyn ExecutionPlan) -> &dyn ExecutionPlan {
    match DftraceExec::of(node) {
        Some(wrapper) => unwrapped(wrapper.inner().as_ref()),
        None => match node.downcast_delegate() {
            Some(inner) => unwrapped(inner),
            None => node,
        },
    }
}

fn union(parts: impl IntoIterator<Item = ColumnSources>) -> ColumnSources {
    let mut fields = BTreeSet::new();
    let mut literal = false;
    for part in parts {
        match part {
            ColumnSources::Unknown => return ColumnSources::Unknown,
            ColumnSources::Known {
                fields: more,
                literal: from_literal,
                ..
            } => {
                fields.extend(more);
                literal |= from_literal;
            }
        }
    }
    ColumnSources::Known {
        fields: fields.into_iter().collect(),
        literal,
        names_above: Vec::new(),
    }
}

fn field(name: &str) -> ColumnSources {
    ColumnSources::Known {
        fields: vec![name.to_owned()],
        literal: false,
        names_above: Vec::new(),
    }
}

impl Lineage {
    fn of(&self, node: &dyn ExecutionPlan) -> Vec<ColumnSources> {
        let node = unwrapped(node);
        let schema = node.schema();
        if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            let input = self.of(projection.input().as_ref());
            return projection
                .expr()
                .iter()
                .map(|projected| self.expr(&projected.expr, &input))
                .collect();
        }
        if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
            return self.aggregate(aggregate);
        }
        let children = node.children();
        if children.is_empty() {
            return self.scan(node);
        }
        // Every other operator passes its inputs' columns on by name.
        let inputs: Vec<(Vec<ColumnSources>, datafusion::arrow::datatypes::SchemaRef)> = children
            .iter()
            .map(|child| (self.of(child.as_ref()), child.schema()))
            .collect();
        schema
            .fields()
            .iter()
            .map(|output| {
                let matches: Vec<ColumnSources> = inputs
                    .iter()
                    .flat_map(|(sources, schema)| {
                        schema
                            .fields()
                            .iter()
                            .zip(sources)
                            .filter(|(input, _)| input.name() == output.name())
                            .map(|(_, sources)| sources.clone())
                    })
                    .collect();
                if matches.is_empty() {
                    ColumnSources::Unknown
                } else {
                    union(matches)
                }
            })
            .collect()
    }

    /// A scan: its columns are the table's fields, or expressions over them
    /// when a projection was pushed into the file source.
    fn scan(&self, node: &dyn ExecutionPlan) -> Vec<ColumnSources> {
        let file_scan = node.downcast_ref::<DataSourceExec>().and_then(|scan| {
            (scan.data_source().as_ref() as &dyn Any).downcast_ref::<FileScanConfig>()
        });
        if let Some(projection) = file_scan.and_then(|scan| scan.file_source().projection()) {
            let table =
                file_scan.map(|scan| scan.file_source().table_schema().table_schema().clone());
            let base: Vec<ColumnSources> = table
                .iter()
                .flat_map(|schema| {
                    schema
                        .fields()
                        .iter()
                        .map(|f| field(f.name()))
                        .collect::<Vec<_>>()
                })
                .collect();
            return projection
                .as_ref()
                .iter()
                .map(|projected| self.expr(&projected.expr, &base))
                .collect();
        }
        node.schema()
            .fields()
            .iter()
            .map(|f| field(f.name()))
            .collect()
    }

    fn aggregate(&self, aggregate: &AggregateExec) -> Vec<ColumnSources> {
        let input_node = aggregate.input();
        let input = self.of(input_node.as_ref());
        let input_schema = input_node.schema();
        let groups = aggregate.group_expr().expr();
        let mut out: Vec<ColumnSources> = groups
            .iter()
            .map(|(expr, _)| self.expr(expr, &input))
            .collect();
        let outputs = aggregate.schema();
        for output in outputs.fields().iter().skip(groups.len()) {
            let name = output.name();
            let Some(function) = aggregate_of_output(aggregate, name) else {
                out.push(ColumnSources::Unknown);
                continue;
            };
            // A final aggregate reads the partial one's state columns,
            // named after the function.
            let partial: Vec<ColumnSources> = input_schema
                .fields()
                .iter()
                .zip(&input)
                .filter(|(field, _)| {
                    field.name() == function.name()
                        || field.name().starts_with(&format!("{}[", function.name()))
                })
                .map(|(_, sources)| sources.clone())
                .collect();
            let sources = if partial.is_empty() {
                union(
                    function
                        .expressions()
                        .iter()
                        .map(|arg| self.expr(arg, &input)),
                )
            } else {
                union(partial)
            };
            // A count shows how many rows, never a value it was given.
            let counts = function.name().starts_with("count(");
            out.push(match sources {
                ColumnSources::Known { fields, .. } if counts => ColumnSources::Known {
                    fields,
                    literal: false,
                    names_above: Vec::new(),
                },
                other => other,
            });
        }
        out
    }

    /// The sources of `expr` evaluated over columns whose sources are
    /// `input`.
    fn expr(&self, expr: &Arc<dyn PhysicalExpr>, input: &[ColumnSources]) -> ColumnSources {
        if let Some(column) = expr.downcast_ref::<Column>() {
            return input
                .get(column.index())
                .cloned()
                .unwrap_or(ColumnSources::Unknown);
        }
        if expr.is::<Literal>() {
            return ColumnSources::Known {
                fields: Vec::new(),
                literal: !self.record_literals,
                names_above: Vec::new(),
            };
        }
        if let Some(function) = expr.downcast_ref::<ScalarFunctionExpr>()
            && function.name() == "get_field"
            && let Some((base, names)) = function.args().split_first()
        {
            // `get_field(x, 'creds', 'token')`: the path `x.creds.token`;
            // the names are part of the path, not values.
            let names: Option<Vec<String>> = names
                .iter()
                .map(|name| {
                    name.downcast_ref::<Literal>()
                        .and_then(|literal| literal.value().try_as_str().flatten())
                        .map(str::to_owned)
                })
                .collect();
            if let Some(names) = names {
                return match self.expr(base, input) {
                    ColumnSources::Known {
                        fields,
                        literal,
                        names_above,
                    } => ColumnSources::Known {
                        fields: fields
                            .into_iter()
                            .map(|path| {
                                std::iter::once(path)
                                    .chain(names.iter().cloned())
                                    .collect::<Vec<_>>()
                                    .join(".")
                            })
                            .collect(),
                        literal,
                        names_above,
                    },
                    ColumnSources::Unknown => ColumnSources::Unknown,
                };
            }
        }
        let children = expr.children();
        if children.is_empty() {
            // An expression that reads something other than columns and
            // literals (a scalar subquery's value, say): not followed.
            return ColumnSources::Unknown;
        }
        union(children.into_iter().map(|child| self.expr(child, input)))
    }
}

/// For each operator of a plan, the names each of its output columns'
/// values take in the operators above it (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct NamesAbove {
    by_node: HashMap<usize, Vec<BTreeSet<String>>>,
}

/// An operator's identity in [`NamesAbove`]: the address of the node under
/// the wrappers.
fn node_key(node: &dyn ExecutionPlan) -> usize {
    std::ptr::from_ref(unwrapped(node)).cast::<()>() as usize
}

impl NamesAbove {
    /// Walks the plan under `root` from the top.
    pub(crate) fn of(root: &Arc<dyn ExecutionPlan>) -> Self {
        let mut names = NamesAbove::default();
        let top = unwrapped(root.as_ref());
        names.visit(top, vec![BTreeSet::new(); top.schema().fields().len()]);
        names
    }

    /// `sources` of `node`'s output columns with their names above added.
    pub(crate) fn add_to(&self, node: &dyn ExecutionPlan, sources: &mut [ColumnSources]) {
        let Some(names) = self.by_node.get(&node_key(node)) else {
            return;
        };
        for (sources, names) in sources.iter_mut().zip(names) {
            if let ColumnSources::Known { names_above, .. } = sources {
                names_above.extend(names.iter().cloned());
            }
        }
    }

    /// Records `above` for `node` (already unwrapped), then passes each
    /// column's names (its own included) down to the columns it reads.
    fn visit(&mut self, node: &dyn ExecutionPlan, above: Vec<BTreeSet<String>>) {
        let schema = node.schema();
        let shown: Vec<BTreeSet<String>> = above
            .iter()
            .zip(schema.fields())
            .map(|(names, field)| {
                let mut names = names.clone();
                names.insert(field.name().clone());
                names
            })
            .collect();
        match self.by_node.entry(node_key(node)) {
            std::collections::hash_map::Entry::Occupied(mut seen) => {
                // Reached again (a shared subplan): more names, same walk.
                for (names, more) in seen.get_mut().iter_mut().zip(above) {
                    names.extend(more);
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(above);
            }
        }
        if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
            let input = unwrapped(projection.input().as_ref());
            let mut below = vec![BTreeSet::new(); input.schema().fields().len()];
            for (projected, names) in projection.expr().iter().zip(&shown) {
                mark_read(&mut below, &projected.expr, names);
            }
            return self.visit(input, below);
        }
        if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
            let input = unwrapped(aggregate.input().as_ref());
            let input_schema = input.schema();
            let mut below = vec![BTreeSet::new(); input_schema.fields().len()];
            let groups = aggregate.group_expr().expr();
            for ((expr, _), names) in groups.iter().zip(&shown) {
                mark_read(&mut below, expr, names);
            }
            for (output, names) in schema.fields().iter().zip(&shown).skip(groups.len()) {
                let name = output.name();
                let Some(function) = aggregate_of_output(aggregate, name) else {
                    continue;
                };
                // A count shows how many rows, never a value it was given.
                if function.name().starts_with("count(") {
                    continue;
                }
                for arg in function.expressions() {
                    mark_read(&mut below, &arg, names);
                }
                // A final aggregate reads the partial one's state columns.
                for (index, field) in input_schema.fields().iter().enumerate() {
                    if field.name() == function.name()
                        || field.name().starts_with(&format!("{}[", function.name()))
                    {
                        below[index].extend(names.iter().cloned());
                    }
                }
            }
            return self.visit(input, below);
        }
        // Every other operator passes its inputs' columns on by name.
        for child in node.children() {
            let child = unwrapped(child.as_ref());
            let below: Vec<BTreeSet<String>> = child
                .schema()
                .fields()
                .iter()
                .map(|input| {
                    schema
                        .fields()
                        .iter()
                        .zip(&shown)
                        .filter(|(output, _)| output.name() == input.name())
                        .flat_map(|(_, names)| names.iter().cloned())
                        .collect()
                })
                .collect();
            self.visit(child, below);
        }
    }
}

/// Adds `names` to each input column `expr` reads.
fn mark_read(
    below: &mut [BTreeSet<String>],
    expr: &Arc<dyn PhysicalExpr>,
    names: &BTreeSet<String>,
) {
    for column in collect_columns(expr) {
        if let Some(slot) = below.get_mut(column.index()) {
            slot.extend(names.iter().cloned());
        }
    }
}

/// The aggregate function whose output column is `name`: the function's own
/// name, or a state column of a partial aggregate (`sum(v)[sum]`).
fn aggregate_of_output<'a>(
    aggregate: &'a AggregateExec,
    name: &str,
) -> Option<&'a Arc<AggregateFunctionExpr>> {
    aggregate
        .aggr_expr()
        .iter()
        .find(|f| name == f.name() || name.starts_with(&format!("{}[", f.name())))
}
