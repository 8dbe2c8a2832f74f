//! Environment strings read as the type of the field they set: booleans,
//! numbers, lists (comma-separated) and tables (`key=value` pairs,
//! percent-decoded, as `OTEL_EXPORTER_OTLP_HEADERS` writes them).

use crate::error::{ConfigError, Result};
use crate::secrets::shown_setting;
use serde_json::{Map, Value};

/// `raw`, the value of the variable `var`, read as the type `current` (the
/// field's value below this layer) has.
pub(crate) fn coerce_env(current: &Value, var: &str, raw: &str) -> Result<Value> {
    let invalid = |expected: &str| ConfigError::InvalidEnv {
        var: var.to_owned(),
        value: shown_setting(var, raw),
        expected: expected.to_owned(),
    };
    let trimmed = raw.trim();
    Ok(match current {
        Value::Bool(_) => match trimmed.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(invalid("`true` or `false`")),
        },
        Value::Number(number) if number.is_f64() => trimmed
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| invalid("a finite number"))?,
        Value::Number(_) => {
            if let Ok(int) = trimmed.parse::<u64>() {
                Value::from(int)
            } else if let Ok(int) = trimmed.parse::<i64>() {
                Value::from(int)
            } else {
                return Err(invalid("a whole number"));
            }
        }
        Value::Array(items) => {
            let element = items
                .first()
                .cloned()
                .unwrap_or(Value::String(String::new()));
            let mut out = Vec::new();
            for item in trimmed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                out.push(coerce_env(&element, var, item)?);
            }
            Value::Array(out)
        }
        Value::Object(_) => {
            // The W3C-baggage-like list the OpenTelemetry specification uses
            // for OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS.
            let mut map = Map::new();
            for pair in trimmed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| invalid("a comma-separated list of key=value pairs"))?;
                let key = percent_decode(key.trim())
                    .ok_or_else(|| invalid("valid percent-encoding in keys and values"))?;
                let value = percent_decode(value.trim())
                    .ok_or_else(|| invalid("valid percent-encoding in keys and values"))?;
                if key.is_empty() {
                    return Err(invalid("non-empty keys in key=value pairs"));
                }
                map.insert(key, Value::String(value));
            }
            Value::Object(map)
        }
        // Optional fields (null default): a number if it reads as one,
        // otherwise the string itself; the section's type then decides.
        Value::Null => {
            if let Ok(int) = trimmed.parse::<i64>() {
                Value::from(int)
            } else if let Some(float) = trimmed
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Value::Number(float)
            } else {
                Value::String(raw.to_owned())
            }
        }
        Value::String(_) => Value::String(raw.to_owned()),
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}
