//! A query's literal values, collected from its plans into the query's
//! [`QueryLiterals`] so that every text dftrace records about the query is
//! masked before it reaches a span: from the logical and physical plans
//! (after coercion and constant folding: the values as the plans display
//! them). The SQL text's own literals are added when its root starts.

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use dftrace_registry::literals::QueryLiterals;
use std::sync::Arc;

/// The literal set of the query enclosing the current span: the root's
/// own, or (outside any root, which only a host driving the rules without
/// the planner instrumentation gets) an empty one that still masks
/// DataFusion's literal syntax.
pub(crate) fn current() -> Arc<QueryLiterals> {
    dftrace_registry::current_query_state::<QueryLiterals>().unwrap_or_default()
}

/// The ways plan text shows `value`: its display (`40`, `abc`,
/// `1998-09-02`) and, for strings, the escaped form logical plans quote.
fn shown(value: &ScalarValue, out: &mut Vec<String>) {
    if value.is_null() {
        return;
    }
    match value {
        ScalarValue::List(_)
        | ScalarValue::LargeList(_)
        | ScalarValue::FixedSizeList(_)
        | ScalarValue::Struct(_)
        | ScalarValue::Map(_) => {
            // Shown element by element inside brackets: the whole display
            // plus the elements' texts.
            out.push(value.to_string());
        }
        _ => {
            let text = value.to_string();
            if let Some(Some(s)) = value.try_as_str() {
                let escaped = format!("{s:?}");
                let escaped = escaped.trim_matches('"');
                if escaped != s {
                    out.push(escaped.to_owned());
                }
            }
            out.push(text);
        }
    }
}

/// Adds the literals of a logical plan (and its subqueries) to `literals`.
pub(crate) fn add_logical(literals: &QueryLiterals, plan: &LogicalPlan) {
    if literals.keeps() {
        return;
    }
    let mut values = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Literal(value, _) = e {
                    shown(value, &mut values);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
    literals.add(values);
}

/// Adds the literals of a physical plan's expressions to `literals`.
pub(crate) fn add_physical(literals: &QueryLiterals, plan: &Arc<dyn ExecutionPlan>) {
    if literals.keeps() {
        return;
    }
    let mut values = Vec::new();
    let _ = plan.apply(|node| {
        add_node_values(node.as_ref(), &mut values);
        Ok(TreeNodeRecursion::Continue)
    });
    literals.add(values);
}

/// Adds the literals of one physical node's expressions to `literals`.
pub(crate) fn add_node(literals: &QueryLiterals, node: &dyn ExecutionPlan) {
    if literals.keeps() {
        return;
    }
    let mut values = Vec::new();
    add_node_values(node, &mut values);
    literals.add(values);
}

fn add_node_values(node: &dyn ExecutionPlan, values: &mut Vec<String>) {
    let _ = node.apply_expressions(&mut |expr: &Arc<dyn PhysicalExpr>| {
        expr.apply(|e| {
            if let Some(literal) = e.downcast_ref::<Literal>() {
                shown(literal.value(), values);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
}

/// `message` with the values it quotes masked, unless literals are kept.
pub(crate) fn error_text(message: String, record_literals: bool) -> String {
    if record_literals {
        return message;
    }
    dftrace_registry::literals::mask_quoted(&message).unwrap_or(message)
}
