//! The scalar function wrapper: every method passes through to the wrapped
//! function; `invoke_with_args` is also timed and counted for the query it
//! runs in.

use crate::counters::{FunctionKind, RecentCell, type_list};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{ExprSchema, Result, ScalarValue};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use std::sync::Arc;

/// A scalar function whose calls are recorded per query.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct ObservedScalar {
    inner: UdfEq<Arc<dyn ScalarUDFImpl>>,
    /// The query's cell, kept while the function runs in one operator.
    recent: RecentCell,
}

impl ObservedScalar {
    /// `function`, observed. A function already observed, and one the
    /// plugin leaves alone ([`crate::can_observe`]: async functions, the
    /// built-ins DataFusion recognises by type), is returned as it is.
    pub(crate) fn wrap(function: &ScalarUDF) -> ScalarUDF {
        if function.inner().is::<ObservedScalar>() || !crate::can_observe(function) {
            return function.clone();
        }
        ScalarUDF::new_from_impl(ObservedScalar {
            inner: Arc::clone(function.inner()).into(),
            recent: RecentCell::default(),
        })
    }
}

#[expect(deprecated, reason = "passes through the deprecated methods as well")]
#[deny(clippy::missing_trait_methods)]
impl ScalarUDFImpl for ObservedScalar {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        // A function rebuilt for the session's config stays observed.
        self.inner
            .with_updated_config(config)
            .map(|updated| ObservedScalar::wrap(&updated))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs<'_>) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn ExprSchema) -> bool {
        self.inner.is_nullable(args, schema)
    }

    fn is_strict(&self) -> bool {
        self.inner.is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(cell) = self
            .recent
            .get(self.inner.name(), FunctionKind::Scalar, |_| {})
        else {
            return self.inner.invoke_with_args(args);
        };
        // Types only: a value of the data never reaches the figures.
        cell.note_argument_types(type_list(
            args.arg_fields.iter().map(|field| field.data_type()),
        ));
        let rows = args.number_rows as u64;
        cell.time(rows, || self.inner.invoke_with_args(args))
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.placement(args)
    }
}
