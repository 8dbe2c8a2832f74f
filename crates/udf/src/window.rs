//! The window function wrapper: every method passes through to the wrapped
//! function; the partition evaluators it makes are wrapped so that their
//! `evaluate*` calls are timed and counted for the query they run in.

use crate::counters::{FunctionCell, FunctionKind, RecentCell, type_list};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::function::{
    ExpressionArgs, PartitionEvaluatorArgs, WindowFunctionSimplification, WindowUDFFieldArgs,
};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::window_state::WindowAggState;
use datafusion::logical_expr::{
    Documentation, LimitEffect, PartitionEvaluator, ReversedUDWF, Signature, WindowUDF,
    WindowUDFImpl,
};
use datafusion::physical_plan::PhysicalExpr;
use std::ops::Range;
use std::sync::Arc;

/// A window function whose evaluators' calls are recorded per query.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ObservedWindow {
    inner: UdfEq<Arc<dyn WindowUDFImpl>>,
    /// The query's cell, kept while one operator makes its instances.
    recent: RecentCell,
}

impl ObservedWindow {
    /// `function`, observed (a function already observed is returned as it
    /// is).
    pub(crate) fn wrap(function: &WindowUDF) -> WindowUDF {
        if function.inner().is::<ObservedWindow>() {
            return function.clone();
        }
        WindowUDF::new_from_shared_impl(Arc::new(ObservedWindow {
            inner: Arc::clone(function.inner()).into(),
            recent: RecentCell::default(),
        }))
    }

    /// The query's cell for this function, with the evaluator's argument
    /// types noted; `None` outside a query.
    fn cell(&self, args: &PartitionEvaluatorArgs<'_>) -> Option<Arc<FunctionCell>> {
        // Types only: a value of the data never reaches the figures.
        self.recent
            .get(self.inner.name(), FunctionKind::Window, |cell| {
                cell.note_argument_types(type_list(
                    args.input_fields().iter().map(|field| field.data_type()),
                ))
            })
    }
}

#[deny(clippy::missing_trait_methods)]
impl WindowUDFImpl for ObservedWindow {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn expressions(&self, expr_args: ExpressionArgs<'_>) -> Vec<Arc<dyn PhysicalExpr>> {
        self.inner.expressions(expr_args)
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs<'_>,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let cell = self.cell(&args);
        let evaluator = self.inner.partition_evaluator(args)?;
        Ok(match cell {
            Some(cell) => Box::new(ObservedEvaluator {
                inner: evaluator,
                cell,
            }),
            None => evaluator,
        })
    }

    fn simplify(&self) -> Option<WindowFunctionSimplification> {
        self.inner.simplify()
    }

    fn field(&self, field_args: WindowUDFFieldArgs<'_>) -> Result<FieldRef> {
        self.inner.field(field_args)
    }

    fn sort_options(&self) -> Option<SortOptions> {
        self.inner.sort_options()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn reverse_expr(&self) -> ReversedUDWF {
        match self.inner.reverse_expr() {
            ReversedUDWF::Reversed(reversed) => {
                ReversedUDWF::Reversed(Arc::new(ObservedWindow::wrap(&reversed)))
            }
            other => other,
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn limit_effect(&self, args: &[Arc<dyn PhysicalExpr>]) -> LimitEffect {
        self.inner.limit_effect(args)
    }
}

/// A partition evaluator whose `evaluate*` calls count for its query's
/// function figures.
#[derive(Debug)]
struct ObservedEvaluator {
    inner: Box<dyn PartitionEvaluator>,
    cell: Arc<FunctionCell>,
}

#[deny(clippy::missing_trait_methods)]
impl PartitionEvaluator for ObservedEvaluator {
    fn memoize(&mut self, state: &mut WindowAggState) -> Result<()> {
        self.inner.memoize(state)
    }

    fn get_range(&self, idx: usize, n_rows: usize) -> Result<Range<usize>> {
        self.inner.get_range(idx, n_rows)
    }

    fn is_causal(&self) -> bool {
        self.inner.is_causal()
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let inner = &mut self.inner;
        self.cell
            .time(num_rows as u64, || inner.evaluate_all(values, num_rows))
    }

    fn evaluate(&mut self, values: &[ArrayRef], range: &Range<usize>) -> Result<ScalarValue> {
        // One output row per call.
        let inner = &mut self.inner;
        self.cell.time(1, || inner.evaluate(values, range))
    }

    fn evaluate_all_with_rank(
        &self,
        num_rows: usize,
        ranks_in_partition: &[Range<usize>],
    ) -> Result<ArrayRef> {
        self.cell.time(num_rows as u64, || {
            self.inner
                .evaluate_all_with_rank(num_rows, ranks_in_partition)
        })
    }

    fn supports_bounded_execution(&self) -> bool {
        self.inner.supports_bounded_execution()
    }

    fn uses_window_frame(&self) -> bool {
        self.inner.uses_window_frame()
    }

    fn include_rank(&self) -> bool {
        self.inner.include_rank()
    }
}
