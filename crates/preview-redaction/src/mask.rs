//! Masking a record batch by type, down through nested types.

use crate::detect::ValueDetectors;
use crate::policy::{ColumnPolicy, Decision};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryViewArray, BooleanArray, FixedSizeListArray,
    GenericListArray, LargeBinaryArray, LargeStringArray, MapArray, OffsetSizeTrait, StringArray,
    StringViewArray, StructArray, new_null_array,
};
use datafusion::arrow::compute::kernels::nullif::nullif;
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use dftrace_registry::ColumnSources;
use std::sync::Arc;

/// Applies a column policy, value detectors and a mask token to batches.
#[derive(Debug)]
pub(crate) struct Masker {
    pub(crate) policy: ColumnPolicy,
    pub(crate) detectors: ValueDetectors,
    pub(crate) mask: String,
}

impl Masker {
    /// The batch with every masked value replaced. Column names and types
    /// stay; fields become nullable, because masking turns values into nulls.
    ///
    /// With `sources` (one per column), a column is also masked whole when
    /// it comes from a denied field, from a literal, or from a derivation
    /// nobody followed; a wrong count of sources masks every column.
    pub(crate) fn redact_batch(
        &self,
        batch: &RecordBatch,
        sources: Option<&[ColumnSources]>,
    ) -> Result<RecordBatch, ArrowError> {
        let schema = batch.schema();
        let mut fields = Vec::with_capacity(schema.fields().len());
        let mut columns = Vec::with_capacity(schema.fields().len());
        let sources =
            sources.map(|sources| (sources.len() == schema.fields().len()).then_some(sources));
        for (index, (field, column)) in schema.fields().iter().zip(batch.columns()).enumerate() {
            let denied_source = match sources {
                None => false,
                Some(None) => true,
                Some(Some(sources)) => self.denies(&sources[index]),
            };
            let decision = if denied_source {
                Decision::Mask
            } else {
                self.policy.decide(field.name(), field.name())
            };
            let column = self.transform(column, field.name(), decision)?;
            fields.push(relaxed(field, column.data_type()));
            columns.push(column);
        }
        RecordBatch::try_new_with_options(
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
    }

    /// Whether a column with these sources must be masked whole.
    fn denies(&self, sources: &ColumnSources) -> bool {
        match sources {
            ColumnSources::Unknown => true,
            ColumnSources::Known {
                fields,
                literal,
                names_above,
            } => {
                *literal
                    || fields
                        .iter()
                        .chain(names_above)
                        .any(|path| self.policy.denies_source(path))
            }
        }
    }

    fn transform(
        &self,
        array: &ArrayRef,
        path: &str,
        decision: Decision,
    ) -> Result<ArrayRef, ArrowError> {
        match array.data_type() {
            DataType::Struct(_) => self.transform_struct(array.as_struct(), path, decision),
            DataType::List(_) => self.transform_list(array.as_list::<i32>(), path, decision),
            DataType::LargeList(_) => self.transform_list(array.as_list::<i64>(), path, decision),
            DataType::FixedSizeList(_, size) => {
                let list = array.as_fixed_size_list();
                let values = self.transform(list.values(), path, decision)?;
                let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
                Ok(Arc::new(FixedSizeListArray::try_new(
                    field,
                    *size,
                    values,
                    list.nulls().cloned(),
                )?))
            }
            DataType::Map(_, _) => self.transform_map(array.as_map(), path, decision),
            DataType::Dictionary(_, _) => {
                let dictionary = array.as_any_dictionary();
                let values = self.transform(dictionary.values(), path, decision)?;
                Ok(dictionary.with_values(values))
            }
            _ => {
                let decision = match decision {
                    Decision::Descend => self.policy.leaf_default(),
                    other => other,
                };
                match decision {
                    Decision::Mask => Ok(self.mask_leaf(array)),
                    Decision::Keep | Decision::Descend => Ok(self.detect_leaf(array)),
                }
            }
        }
    }

    fn transform_struct(
        &self,
        array: &StructArray,
        path: &str,
        decision: Decision,
    ) -> Result<ArrayRef, ArrowError> {
        let mut fields = Vec::with_capacity(array.num_columns());
        let mut columns = Vec::with_capacity(array.num_columns());
        for (field, column) in array.fields().iter().zip(array.columns()) {
            let child_path = format!("{path}.{}", field.name());
            let child_decision = match decision {
                Decision::Descend => self.policy.decide(field.name(), &child_path),
                other => other,
            };
            let column = self.transform(column, &child_path, child_decision)?;
            fields.push(relaxed(field, column.data_type()));
            columns.push(column);
        }
        if fields.is_empty() {
            return Ok(Arc::new(array.clone()));
        }
        Ok(Arc::new(StructArray::try_new(
            Fields::from(fields),
            columns,
            array.nulls().cloned(),
        )?))
    }

    /// List elements carry no name of their own: they share the list's path.
    fn transform_list<O: OffsetSizeTrait>(
        &self,
        array: &GenericListArray<O>,
        path: &str,
        decision: Decision,
    ) -> Result<ArrayRef, ArrowError> {
        let values = self.transform(array.values(), path, decision)?;
        let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
        Ok(Arc::new(GenericListArray::<O>::try_new(
            field,
            array.offsets().clone(),
            values,
            array.nulls().cloned(),
        )?))
    }

    /// Map keys may not be null: when a key must be masked and is not a
    /// string, the whole map value becomes null instead.
    fn transform_map(
        &self,
        array: &MapArray,
        path: &str,
        decision: Decision,
    ) -> Result<ArrayRef, ArrowError> {
        let entries = array.entries();
        let null_map = || -> ArrayRef { new_null_array(array.data_type(), array.len()) };
        if decision == Decision::Mask && !is_string_like(entries.column(0).data_type()) {
            return Ok(null_map());
        }
        let key_field = &entries.fields()[0];
        let key_path = format!("{path}.{}", key_field.name());
        let key_decision = match decision {
            Decision::Descend => match self.policy.decide(key_field.name(), &key_path) {
                Decision::Descend => self.policy.leaf_default(),
                other => other,
            },
            other => other,
        };
        if key_decision == Decision::Mask && !is_string_like(key_field.data_type()) {
            return Ok(null_map());
        }
        let keys = self.transform(entries.column(0), &key_path, key_decision)?;
        let value_field = &entries.fields()[1];
        let value_path = format!("{path}.{}", value_field.name());
        let value_decision = match decision {
            Decision::Descend => self.policy.decide(value_field.name(), &value_path),
            other => other,
        };
        let mut values = self.transform(entries.column(1), &value_path, value_decision)?;
        if decision == Decision::Descend {
            values = self.apply_entry_keys(entries.column(0), entries.column(1), values, path)?;
        }
        let entry_fields = Fields::from(vec![
            Arc::new(Field::new(
                key_field.name(),
                keys.data_type().clone(),
                false,
            )),
            relaxed(value_field, values.data_type()),
        ]);
        let entries = StructArray::try_new(entry_fields.clone(), vec![keys, values], None)?;
        let DataType::Map(map_field, ordered) = array.data_type() else {
            return Ok(null_map());
        };
        let map_field = Arc::new(Field::new(
            map_field.name(),
            DataType::Struct(entry_fields),
            false,
        ));
        Ok(Arc::new(MapArray::try_new(
            map_field,
            array.offsets().clone(),
            entries,
            array.nulls().cloned(),
            *ordered,
        )?))
    }

    /// A map entry whose string key matches the policy is treated like a
    /// field of that name: `{secret_note: x}` masks `x` under the default
    /// deny list, and an allow list can show single entries.
    fn apply_entry_keys(
        &self,
        keys: &ArrayRef,
        original: &ArrayRef,
        values: ArrayRef,
        path: &str,
    ) -> Result<ArrayRef, ArrowError> {
        let Some(key_strings) = string_values(keys) else {
            return Ok(values);
        };
        let decisions: Vec<Decision> = key_strings
            .iter()
            .map(|key| match key {
                Some(key) => self.policy.decide(key, &format!("{path}.{key}")),
                None => Decision::Descend,
            })
            .collect();
        let mut result = values;
        for (wanted, replacement) in [
            (Decision::Mask, Decision::Mask),
            (Decision::Keep, Decision::Keep),
        ] {
            if !decisions.contains(&wanted) {
                continue;
            }
            let replacement = self.transform(original, path, replacement)?;
            let select: BooleanArray = decisions.iter().map(|d| Some(*d == wanted)).collect();
            result = if replacement.data_type() == result.data_type() {
                zip(&select, &replacement, &result)?
            } else {
                // Masked nested values can differ in type from the rest (a
                // masked map becomes a null map): null those entries instead.
                nullif(&result, &select)?
            };
        }
        Ok(result)
    }

    fn mask_leaf(&self, array: &ArrayRef) -> ArrayRef {
        let mask = self.mask.as_str();
        if let Some(masked) = map_strings(array, |_| mask) {
            return masked;
        }
        match array.data_type() {
            DataType::Binary => Arc::new(
                array
                    .as_binary::<i32>()
                    .iter()
                    .map(|v| v.map(|_| mask.as_bytes()))
                    .collect::<BinaryArray>(),
            ),
            DataType::LargeBinary => Arc::new(
                array
                    .as_binary::<i64>()
                    .iter()
                    .map(|v| v.map(|_| mask.as_bytes()))
                    .collect::<LargeBinaryArray>(),
            ),
            DataType::BinaryView => Arc::new(
                array
                    .as_binary_view()
                    .iter()
                    .map(|v| v.map(|_| mask.as_bytes()))
                    .collect::<BinaryViewArray>(),
            ),
            other => new_null_array(other, array.len()),
        }
    }

    fn detect_leaf(&self, array: &ArrayRef) -> ArrayRef {
        if self.detectors.is_empty() {
            return Arc::clone(array);
        }
        let mask = self.mask.as_str();
        map_strings(array, |value| {
            if self.detectors.flags(value) {
                mask
            } else {
                value
            }
        })
        .unwrap_or_else(|| Arc::clone(array))
    }
}

/// `array` with each string replaced by `f(string)` (nulls stay null), for
/// the three string types; `None` for any other type.
fn map_strings<'a>(array: &'a ArrayRef, f: impl Fn(&'a str) -> &'a str) -> Option<ArrayRef> {
    Some(match array.data_type() {
        DataType::Utf8 => Arc::new(
            array
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(&f))
                .collect::<StringArray>(),
        ),
        DataType::LargeUtf8 => Arc::new(
            array
                .as_string::<i64>()
                .iter()
                .map(|v| v.map(&f))
                .collect::<LargeStringArray>(),
        ),
        DataType::Utf8View => Arc::new(
            array
                .as_string_view()
                .iter()
                .map(|v| v.map(&f))
                .collect::<StringViewArray>(),
        ),
        _ => return None,
    })
}

/// The values of a string array of any string type, by row.
fn string_values(array: &ArrayRef) -> Option<Vec<Option<&str>>> {
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().iter().collect()),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().iter().collect()),
        DataType::Utf8View => Some(array.as_string_view().iter().collect()),
        _ => None,
    }
}

fn is_string_like(data_type: &DataType) -> bool {
    match data_type {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => true,
        DataType::Dictionary(_, values) => is_string_like(values),
        _ => false,
    }
}

/// `field` with the type its redacted array has, nullable.
fn relaxed(field: &FieldRef, data_type: &DataType) -> FieldRef {
    Arc::new(
        Field::new(field.name(), data_type.clone(), true).with_metadata(field.metadata().clone()),
    )
}
