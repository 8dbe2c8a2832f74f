//! The aggregate function wrapper: every method passes through to the
//! wrapped function; the accumulators it makes are wrapped so that their
//! calls are timed and counted for the query they run in.

use crate::counters::{FunctionCell, FunctionKind, RecentCell, type_list};
use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::{
    AggregateFunction, AggregateFunctionParams, WindowFunctionParams,
};
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator,
    Operator, ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};
use std::sync::Arc;

/// An aggregate function whose accumulators' calls are recorded per query.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ObservedAggregate {
    inner: UdfEq<Arc<dyn AggregateUDFImpl>>,
    /// The query's cell, kept while one operator makes its instances.
    recent: RecentCell,
}

impl ObservedAggregate {
    /// `function`, observed (a function already observed is returned as it
    /// is).
    pub(crate) fn wrap(function: &AggregateUDF) -> AggregateUDF {
        if function.inner().is::<ObservedAggregate>() {
            return function.clone();
        }
        AggregateUDF::new_from_shared_impl(Self::wrap_impl(Arc::clone(function.inner())))
    }

    fn wrap_impl(inner: Arc<dyn AggregateUDFImpl>) -> Arc<dyn AggregateUDFImpl> {
        if inner.is::<ObservedAggregate>() {
            return inner;
        }
        Arc::new(ObservedAggregate {
            inner: inner.into(),
            recent: RecentCell::default(),
        })
    }

    /// The query's cell for this function, with the accumulator's argument
    /// types noted; `None` outside a query.
    fn cell(&self, args: &AccumulatorArgs<'_>) -> Option<Arc<FunctionCell>> {
        // Types only: a value of the data never reaches the figures.
        self.recent
            .get(self.inner.name(), FunctionKind::Aggregate, |cell| {
                cell.note_argument_types(type_list(
                    args.expr_fields.iter().map(|field| field.data_type()),
                ))
            })
    }

    fn observe(
        &self,
        args: &AccumulatorArgs<'_>,
        accumulator: Box<dyn Accumulator>,
    ) -> Box<dyn Accumulator> {
        match self.cell(args) {
            Some(cell) => Box::new(ObservedAccumulator {
                inner: accumulator,
                cell,
            }),
            None => accumulator,
        }
    }
}

fn first_len(values: &[ArrayRef]) -> u64 {
    values.first().map_or(0, |array| array.len() as u64)
}

#[deny(clippy::missing_trait_methods)]
impl AggregateUDFImpl for ObservedAggregate {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.schema_name(params)
    }

    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.human_display(params)
    }

    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_schema_name(params)
    }

    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.display_name(params)
    }

    fn window_function_display_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_display_name(params)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        self.inner.return_field(arg_fields)
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn accumulator(&self, acc_args: AccumulatorArgs<'_>) -> Result<Box<dyn Accumulator>> {
        let accumulator = self.inner.accumulator(acc_args.clone())?;
        Ok(self.observe(&acc_args, accumulator))
    }

    fn state_fields(&self, args: StateFieldsArgs<'_>) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs<'_>) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs<'_>,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let accumulator = self.inner.create_groups_accumulator(args.clone())?;
        Ok(match self.cell(&args) {
            Some(cell) => Box::new(ObservedGroupsAccumulator {
                inner: accumulator,
                cell,
            }),
            None => accumulator,
        })
    }

    fn create_sliding_accumulator(
        &self,
        args: AccumulatorArgs<'_>,
    ) -> Result<Box<dyn Accumulator>> {
        let accumulator = self.inner.create_sliding_accumulator(args.clone())?;
        Ok(self.observe(&args, accumulator))
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        // The function rewritten for its input's ordering stays observed.
        Ok(Arc::clone(&self.inner)
            .with_beneficial_ordering(beneficial_ordering)?
            .map(Self::wrap_impl))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner.simplify()
    }

    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> Result<Option<Expr>> {
        self.inner
            .simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_expr() {
            ReversedUDAF::Reversed(reversed) => {
                ReversedUDAF::Reversed(Arc::new(ObservedAggregate::wrap(&reversed)))
            }
            other => other,
        }
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs<'_>) -> Option<ScalarValue> {
        self.inner.value_from_stats(statistics_args)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner.supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.set_monotonicity(data_type)
    }
}

/// An accumulator whose calls count for its query's function figures.
#[derive(Debug)]
struct ObservedAccumulator {
    inner: Box<dyn Accumulator>,
    cell: Arc<FunctionCell>,
}

#[deny(clippy::missing_trait_methods)]
impl Accumulator for ObservedAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let inner = &mut self.inner;
        self.cell
            .time(first_len(values), || inner.update_batch(values))
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let inner = &mut self.inner;
        self.cell.time(0, || inner.evaluate())
    }

    fn size(&self) -> usize {
        // The inner accumulator's alone: memory accounting (and so when an
        // aggregate spills) stays as without the wrapper.
        self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let inner = &mut self.inner;
        self.cell.time(0, || inner.state())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let inner = &mut self.inner;
        self.cell.time(0, || inner.merge_batch(states))
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let inner = &mut self.inner;
        self.cell.time(0, || inner.retract_batch(values))
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

/// A groups accumulator whose calls count for its query's function figures.
struct ObservedGroupsAccumulator {
    inner: Box<dyn GroupsAccumulator>,
    cell: Arc<FunctionCell>,
}

#[deny(clippy::missing_trait_methods)]
impl GroupsAccumulator for ObservedGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        // Rows a `FILTER (WHERE ..)` clause rejects are not fed to it.
        let rows = opt_filter.map_or(group_indices.len(), BooleanArray::true_count);
        let inner = &mut self.inner;
        self.cell.time(rows as u64, || {
            inner.update_batch(values, group_indices, opt_filter, total_num_groups)
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let inner = &mut self.inner;
        self.cell.time(0, || inner.evaluate(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let inner = &mut self.inner;
        self.cell.time(0, || inner.state(emit_to))
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        let inner = &mut self.inner;
        self.cell.time(0, || {
            inner.merge_batch(values, group_indices, total_num_groups)
        })
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        // Input rows turned into partial state directly (partial
        // aggregation skipped): rows fed to the function.
        let rows = opt_filter.map_or(first_len(values), |filter| filter.true_count() as u64);
        self.cell
            .time(rows, || self.inner.convert_to_state(values, opt_filter))
    }

    fn size(&self) -> usize {
        // As above: the accounting of the function alone.
        self.inner.size()
    }
}
