//! The literal values of the queries in flight, by trace, so that the export
//! pipeline can mask them wherever plan text, error messages or events show
//! them.
//!
//! `dftrace-rules` marks a query's trace when its root span starts and adds
//! the values as it learns them (from the SQL text, and from the logical
//! and physical plans: after coercion and constant folding, the values as
//! the plans display them). `dftrace-bootstrap`'s scrubbing span processor
//! holds the trace's spans until its root span ends, then masks every value
//! in them. A trace id is 16 bytes, here as a `u128`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// At most this many traces are tracked; past it the oldest is forgotten
/// (its spans are then masked only by the literal syntax of plan text).
const MAX_TRACES: usize = 4096;

#[derive(Debug, Default)]
struct Registry {
    /// The values of each watched trace (`None`: the host keeps them).
    values: HashMap<u128, Option<Vec<String>>>,
    order: VecDeque<u128>,
}

/// What the export pipeline does with a trace's spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    /// A query whose literals are masked: its spans wait for its root.
    Mask,
    /// A query whose host keeps its literals (`rules.record_literals`).
    Keep,
    /// Not a query dftrace knows: literal syntax is masked.
    Unknown,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    f(registry.get_or_insert_with(Registry::default))
}

/// Marks `trace`: its spans wait for its root span, then lose its literals.
pub fn watch(trace: u128) {
    insert(trace, Some(Vec::new()));
}

/// Marks `trace` as one whose literals its host keeps.
pub fn keep(trace: u128) {
    insert(trace, None);
}

fn insert(trace: u128, entry: Option<Vec<String>>) {
    with(|registry| {
        if registry.values.contains_key(&trace) {
            return;
        }
        // `order` may still name traces already forgotten: skip those.
        while registry.values.len() >= MAX_TRACES {
            match registry.order.pop_front() {
                Some(oldest) => {
                    registry.values.remove(&oldest);
                }
                None => break,
            }
        }
        if registry.order.len() > 2 * MAX_TRACES {
            let Registry { values, order } = registry;
            order.retain(|known| values.contains_key(known));
        }
        registry.values.insert(trace, entry);
        registry.order.push_back(trace);
    });
}

/// Adds literal values (as plan text shows them) to a watched trace; for a
/// trace nobody watches, does nothing.
pub fn add(trace: u128, values: impl IntoIterator<Item = String>) {
    with(|registry| {
        if let Some(Some(known)) = registry.values.get_mut(&trace) {
            known.extend(values.into_iter().filter(|value| !value.is_empty()));
        }
    });
}

/// Whether `trace`'s literals are masked (it is watched).
pub fn is_watched(trace: u128) -> bool {
    treatment(trace) == Treatment::Mask
}

/// What to do with `trace`'s spans.
pub fn treatment(trace: u128) -> Treatment {
    with(|registry| match registry.values.get(&trace) {
        Some(Some(_)) => Treatment::Mask,
        Some(None) => Treatment::Keep,
        None => Treatment::Unknown,
    })
}

/// The values known for `trace` so far, longest first and without repeats
/// (so a value inside another is masked after it).
pub fn values(trace: u128) -> Vec<String> {
    let mut values = with(|registry| {
        registry
            .values
            .get(&trace)
            .cloned()
            .flatten()
            .unwrap_or_default()
    });
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    values
}

/// Stops watching `trace` (its root span has ended and its spans are out).
pub fn forget(trace: u128) {
    with(|registry| {
        registry.values.remove(&trace);
    });
}

/// `text` with `values` masked ([`mask_values`]), then DataFusion's literal
/// syntax ([`mask_literal_syntax`]): what the export pipeline does to plan
/// text. `None` when nothing changed.
pub fn mask_text(text: &str, values: &[String]) -> Option<String> {
    let by_value = mask_values(text, values);
    let current = by_value.as_deref().unwrap_or(text);
    mask_literal_syntax(current).or(by_value)
}

/// What a masked value becomes.
pub const PLACEHOLDER: &str = "?";

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with every occurrence of each of `values` (longest first) that
/// stands as a token of its own replaced by [`PLACEHOLDER`]: `40` in
/// `v@2 > 40` or `Float64(40)`, never inside `id@40`, `x140` or a longer
/// word. `None` when nothing changed.
pub fn mask_values(text: &str, values: &[String]) -> Option<String> {
    let mut current: Option<String> = None;
    for value in values {
        let source = current.as_deref().unwrap_or(text);
        if let Some(masked) = mask_value(source, value) {
            current = Some(masked);
        }
    }
    current
}

fn mask_value(text: &str, value: &str) -> Option<String> {
    let (Some(first), Some(last)) = (value.chars().next(), value.chars().next_back()) else {
        return None;
    };
    let mut out = String::new();
    let mut rest = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find(value) {
        let start = search + found;
        let end = start + value.len();
        let before = text[..start].chars().next_back();
        let after = text[end..].chars().next();
        let left_ok = !is_word(first) || before.is_none_or(|c| !is_word(c) && c != '@');
        let right_ok = !is_word(last) || after.is_none_or(|c| !is_word(c));
        if left_ok && right_ok {
            out.push_str(&text[rest..start]);
            out.push_str(PLACEHOLDER);
            rest = end;
            search = end;
        } else {
            search = start + first.len_utf8();
        }
    }
    (rest > 0).then(|| {
        out.push_str(&text[rest..]);
        out
    })
}

/// The names DataFusion's logical plans show literals under, as in
/// `Utf8("abc")` or `Int64(40)`.
const SCALAR_NAMES: &[&str] = &[
    "Boolean",
    "Float16",
    "Float32",
    "Float64",
    "Decimal32",
    "Decimal64",
    "Decimal128",
    "Decimal256",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Utf8",
    "Utf8View",
    "LargeUtf8",
    "Binary",
    "BinaryView",
    "FixedSizeBinary",
    "LargeBinary",
    "FixedSizeList",
    "List",
    "LargeList",
    "ListView",
    "LargeListView",
    "Struct",
    "Map",
    "Date32",
    "Date64",
    "Time32Second",
    "Time32Millisecond",
    "Time64Microsecond",
    "Time64Nanosecond",
    "TimestampSecond",
    "TimestampMillisecond",
    "TimestampMicrosecond",
    "TimestampNanosecond",
    "IntervalYearMonth",
    "IntervalDayTime",
    "IntervalMonthDayNano",
    "DurationSecond",
    "DurationMillisecond",
    "DurationMicrosecond",
    "DurationNanosecond",
    "Union",
    "Dictionary",
    "RunEndEncoded",
];

/// `text` with the value inside each literal as DataFusion's logical plans
/// show it (`Utf8("abc")`, `Int64(40)`, `TimestampNanosecond(1, None)`)
/// replaced by [`PLACEHOLDER`]: `Utf8(?)`. For text whose literal values
/// are not known. `None` when nothing changed.
pub fn mask_literal_syntax(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = 0;
    let mut search = 0;
    let bytes = text.as_bytes();
    while let Some(found) = text[search..].find('(') {
        let open = search + found;
        search = open + 1;
        let name_start = text[..open]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric())
            .last()
            .map_or(open, |(i, _)| i);
        let name = &text[name_start..open];
        if !SCALAR_NAMES.contains(&name)
            || text[..name_start].chars().next_back().is_some_and(is_word)
        {
            continue;
        }
        let Some(close) = matching_paren(bytes, open) else {
            continue;
        };
        if close == open + 1 {
            continue;
        }
        out.push_str(&text[rest..=open]);
        out.push_str(PLACEHOLDER);
        rest = close;
        search = close;
    }
    (rest > 0).then(|| {
        out.push_str(&text[rest..]);
        out
    })
}

/// The index of the `)` closing the `(` at `open`, skipping quoted text.
fn matching_paren(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        if let Some(q) = quote {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                _ if b == q => quote = None,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' | b'\'' => quote = Some(b),
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `message` with what its quotes hold (`'…'`, `"…"`) replaced by
/// [`PLACEHOLDER`]: error messages quote the values they are about (`Cannot
/// cast string 'abc' to value of Int32 type`). `None` when nothing changed.
pub fn mask_quoted(message: &str) -> Option<String> {
    let mut out = String::with_capacity(message.len());
    let mut changed = false;
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '\'' && c != '"' {
            continue;
        }
        // Find the closing quote; without one, keep the text as it is.
        let quoted: String = chars.clone().take_while(|&d| d != c).collect();
        if chars.clone().nth(quoted.chars().count()) != Some(c) || quoted.is_empty() {
            continue;
        }
        for _ in 0..=quoted.chars().count() {
            chars.next();
        }
        out.push_str(PLACEHOLDER);
        out.push(c);
        changed = true;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_masked_where_they_stand_as_tokens() {
        let values = vec!["40".to_owned(), "secret".to_owned(), "%BRASS".to_owned()];
        assert_eq!(
            mask_values(
                "FilterExec: v@2 > 40 AND id@40 = x140 AND name@1 = secret",
                &values
            )
            .as_deref(),
            Some("FilterExec: v@2 > ? AND id@40 = x140 AND name@1 = ?")
        );
        assert_eq!(
            mask_values(
                "Filter: t.v > Float64(40) AND p LIKE Utf8(\"%BRASS\")",
                &values
            )
            .as_deref(),
            Some("Filter: t.v > Float64(?) AND p LIKE Utf8(\"?\")")
        );
        assert_eq!(mask_values("secretary", &values), None);
    }

    #[test]
    fn literal_syntax_is_masked_without_knowing_the_values() {
        assert_eq!(
            mask_literal_syntax(
                "Filter: t.a = Utf8(\"x(y)\\\"z\") AND t.b > Int64(40) AND count(t.c) > TimestampNanosecond(1, None)"
            )
            .as_deref(),
            Some("Filter: t.a = Utf8(?) AND t.b > Int64(?) AND count(t.c) > TimestampNanosecond(?)")
        );
        assert_eq!(mask_literal_syntax("MyUtf8(1) and count(x)"), None);
    }

    #[test]
    fn quoted_values_in_messages_are_masked() {
        assert_eq!(
            mask_quoted("Cannot cast string 'hunter2' to value of Int32 type").as_deref(),
            Some("Cannot cast string '?' to value of Int32 type")
        );
        assert_eq!(
            mask_quoted("field \"a b\" and 'c'").as_deref(),
            Some("field \"?\" and '?'")
        );
        assert_eq!(mask_quoted("it's fine"), None);
    }

    #[test]
    fn values_are_kept_per_watched_trace_until_forgotten() {
        add(1, ["ignored".to_owned()]);
        assert!(!is_watched(1));
        watch(2);
        add(
            2,
            [
                "abc".to_owned(),
                "abcdef".to_owned(),
                String::new(),
                "abc".to_owned(),
            ],
        );
        assert_eq!(values(2), ["abcdef", "abc"]);
        forget(2);
        assert!(!is_watched(2));
        assert!(values(2).is_empty());
        keep(3);
        assert_eq!(treatment(3), Treatment::Keep);
        add(3, ["kept".to_owned()]);
        assert!(values(3).is_empty());
        forget(3);
        assert_eq!(treatment(3), Treatment::Unknown);
    }
}
