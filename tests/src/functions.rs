//! Host functions the tests register (one that works, one that fails), and
//! how a host adds its functions to a session.

use datafusion::arrow::array::PrimitiveArray;
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Int64Type};
use datafusion::common::cast::as_primitive_array;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use std::sync::Arc;

/// The scalar function `name` from one `data_type` argument to a
/// `data_type`, computed by `body`.
pub fn unary_function(
    name: &str,
    data_type: DataType,
    body: impl Fn(&[ColumnarValue]) -> Result<ColumnarValue> + Send + Sync + 'static,
) -> ScalarUDF {
    create_udf(
        name,
        vec![data_type.clone()],
        data_type,
        Volatility::Immutable,
        Arc::new(body),
    )
}

/// The scalar function `name` from a `BIGINT` to a `BIGINT`, computed by
/// `body`.
pub fn int64_function(
    name: &str,
    body: impl Fn(&[ColumnarValue]) -> Result<ColumnarValue> + Send + Sync + 'static,
) -> ScalarUDF {
    unary_function(name, DataType::Int64, body)
}

/// `f` applied to each value of the one argument in `args`, an array of
/// `T` (nulls stay null): the body of a [`unary_function`].
///
/// # Errors
///
/// When the argument is not of type `T`.
pub fn map_values<T: ArrowPrimitiveType>(
    args: &[ColumnarValue],
    f: impl Fn(T::Native) -> T::Native,
) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let output: PrimitiveArray<T> = as_primitive_array::<T>(&arrays[0])?
        .iter()
        .map(|v| v.map(&f))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(output)))
}

/// [`map_values`] over a `BIGINT`: the body of an [`int64_function`].
///
/// # Errors
///
/// When the argument is not a `BIGINT`.
pub fn map_int64(args: &[ColumnarValue], f: impl Fn(i64) -> i64) -> Result<ColumnarValue> {
    map_values::<Int64Type>(args, f)
}

/// `double(x)`: `2 * x`.
pub fn double() -> ScalarUDF {
    int64_function("double", |args| map_int64(args, |v| v * 2))
}

/// `explode(x)`: always fails, with "explode always fails".
pub fn explode() -> ScalarUDF {
    int64_function("explode", |_| {
        Err(DataFusionError::Execution(
            "explode always fails".to_owned(),
        ))
    })
}

/// Adds the host's scalar `functions` to `builder`, next to DataFusion's
/// own (which stay as they are).
pub fn add_scalar_functions(
    builder: &mut SessionStateBuilder,
    functions: impl IntoIterator<Item = ScalarUDF>,
) {
    builder
        .scalar_functions()
        .get_or_insert_with(Vec::new)
        .extend(functions.into_iter().map(Arc::new));
}
