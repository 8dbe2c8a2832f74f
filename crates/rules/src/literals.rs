//! A query's literal values, collected for `dftrace_registry::literals` so
//! the export pipeline can mask them: from the SQL text, and from the
//! logical and physical plans (after coercion and constant folding: the
//! values as the plans display them).

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use dftrace_registry::literals;
use opentelemetry::trace::TraceContextExt;
use std::sync::Arc;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The watched trace of `span`, if any (a sampled query whose literals are
/// not recorded).
pub(crate) fn watched_trace(span: &Span) -> Option<u128> {
    let context = span.context();
    let trace = context.span().span_context().trace_id();
    let key = u128::from_be_bytes(trace.to_bytes());
    literals::is_watched(key).then_some(key)
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

/// Adds the literals of a logical plan (and its subqueries) to `trace`.
pub(crate) fn add_logical(trace: u128, plan: &LogicalPlan) {
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
    literals::add(trace, values);
}

/// Adds the literals of a physical plan's expressions to `trace`.
pub(crate) fn add_physical(trace: u128, plan: &Arc<dyn ExecutionPlan>) {
    let mut values = Vec::new();
    let _ = plan.apply(|node| {
        node.apply_expressions(&mut |expr: &Arc<dyn PhysicalExpr>| {
            expr.apply(|e| {
                if let Some(literal) = e.downcast_ref::<Literal>() {
                    shown(literal.value(), &mut values);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        Ok(TreeNodeRecursion::Continue)
    });
    literals::add(trace, values);
}

/// `message` with the values it quotes masked, unless literals are kept.
pub(crate) fn error_text(message: String, record_literals: bool) -> String {
    if record_literals {
        return message;
    }
    literals::mask_quoted(&message).unwrap_or(message)
}
