//! The literal values of a query and the masking of plan text, error
//! messages and previews that keeps them from leaving the process.
//!
//! `dftrace-rules` gives each query a [`QueryLiterals`] when its root span
//! starts (kept in the root span's extensions, see
//! [`query_state`](crate::query_state)) and adds the values as it learns
//! them: from the SQL text, and from the logical and physical plans (after
//! coercion and constant folding: the values as the plans display them).
//! Every text dftrace records — operator descriptions, plan diffs, planner
//! plans, error messages, previews — goes through [`QueryLiterals::mask`]
//! or [`QueryLiterals::mask_error`] before it reaches a span, so the values
//! never reach any subscriber or exporter, whoever installed them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// The literal values of one query, as its plans show them, and whether its
/// host keeps them (`rules.record_literals`).
#[derive(Debug, Default)]
pub struct QueryLiterals {
    keep: bool,
    /// Rebuilt when values are added; shared with the maskings in progress.
    values: Mutex<Arc<Values>>,
}

/// A query's values, arranged for masking.
#[derive(Debug, Default)]
pub struct Values {
    /// Every value, longest first and without repeats (so a value inside
    /// another is masked after it).
    all: Vec<String>,
    /// The values made only of word characters (`40`, `alice`, `BUILDING`:
    /// most of them), looked up once per word of a text.
    words: Words,
    /// The others (`1998-09-02`, `%BRASS`, `it's`), longest first, searched
    /// for one by one.
    others: Vec<String>,
}

impl Values {
    fn new(mut all: Vec<String>) -> Self {
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        let (words, others): (Vec<&String>, Vec<&String>) =
            all.iter().partition(|value| value.chars().all(is_word));
        Values {
            words: Words::new(words.into_iter().cloned().collect()),
            others: others.into_iter().cloned().collect(),
            all,
        }
    }

    /// Every value, longest first.
    pub fn all(&self) -> &[String] {
        &self.all
    }

    /// `text` with every value masked where it stands as a token of its own
    /// (see [`mask_values`]); `None` when nothing changed.
    pub fn mask(&self, text: &str) -> Option<String> {
        if self.all.is_empty() {
            return None;
        }
        let others = mask_values(text, &self.others);
        let current = others.as_deref().unwrap_or(text);
        mask_words(current, &self.words).or(others)
    }
}

impl QueryLiterals {
    /// An empty set; with `keep`, texts are left as they are.
    pub fn new(keep: bool) -> Self {
        QueryLiterals {
            keep,
            values: Mutex::new(Arc::default()),
        }
    }

    /// Whether the host keeps the query's literals (nothing is masked).
    pub fn keeps(&self) -> bool {
        self.keep
    }

    /// Adds values (as plan text shows them); a kept set ignores them.
    pub fn add(&self, values: impl IntoIterator<Item = String>) {
        if self.keep {
            return;
        }
        let mut added: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        if added.is_empty() {
            return;
        }
        let mut current = self.values.lock().unwrap_or_else(PoisonError::into_inner);
        added.retain(|value| !current.all.contains(value));
        if added.is_empty() {
            return;
        }
        added.extend(current.all.iter().cloned());
        *current = Arc::new(Values::new(added));
    }

    /// The values known so far.
    pub fn values(&self) -> Arc<Values> {
        Arc::clone(&self.values.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// `text` with the known values and DataFusion's literal syntax masked
    /// (as [`mask_text`] does); `None` when nothing changed or the host
    /// keeps its literals.
    pub fn mask(&self, text: &str) -> Option<String> {
        if self.keep {
            return None;
        }
        let by_value = self.values().mask(text);
        let current = by_value.as_deref().unwrap_or(text);
        mask_literal_syntax(current).or(by_value)
    }

    /// [`QueryLiterals::mask`], owned: `text` itself when nothing changed.
    pub fn masked(&self, text: String) -> String {
        self.mask(&text).unwrap_or(text)
    }

    /// An error message with what its quotes hold masked too
    /// ([`mask_quoted`]): error messages quote the values they are about,
    /// values of the data among them.
    pub fn mask_error(&self, message: String) -> String {
        if self.keep {
            return message;
        }
        let message = mask_quoted(&message).unwrap_or(message);
        self.masked(message)
    }
}

/// The ASCII bytes that are word characters (letters, digits, `_`).
static WORD_BYTES: [bool; 128] = {
    let mut table = [false; 128];
    let mut byte = 0;
    while byte < 128 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric() || b == b'_';
        byte += 1;
    }
    table
};

/// Word values, for one lookup per word of a text: most words of a plan's
/// text (column names, operator names) have a length no value has, and are
/// dismissed without hashing.
#[derive(Debug, Default)]
struct Words {
    set: HashSet<String>,
    /// Bit `n` set when a value of `n` bytes exists (`n` < 64; longer
    /// values set bit 63).
    lengths: u64,
}

impl Words {
    fn new(set: HashSet<String>) -> Self {
        let lengths = set
            .iter()
            .fold(0, |bits, word| bits | Words::bit(word.len()));
        Words { set, lengths }
    }

    fn bit(len: usize) -> u64 {
        1 << len.min(63)
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    fn contains(&self, word: &str) -> bool {
        self.lengths & Words::bit(word.len()) != 0 && self.set.contains(word)
    }
}

/// `text` with each word (a maximal run of word characters) that is one of
/// `words` replaced by [`PLACEHOLDER`], unless an `@` precedes it (`id@40`
/// is a column index): one pass, one lookup per word. `None` when nothing
/// changed.
fn mask_words(text: &str, words: &Words) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut rest = 0;
    let mut at = 0;
    // Plan text is ASCII almost always: bytes are classified directly, and
    // only a non-ASCII character is decoded.
    let char_at = |at: usize| -> (bool, usize) {
        let byte = bytes[at];
        if byte.is_ascii() {
            (WORD_BYTES[usize::from(byte)], 1)
        } else {
            text[at..]
                .chars()
                .next()
                .map_or((false, 1), |c| (is_word(c), c.len_utf8()))
        }
    };
    while at < bytes.len() {
        let (word, len) = char_at(at);
        if !word {
            at += len;
            continue;
        }
        let from = at;
        while at < bytes.len() {
            let (word, len) = char_at(at);
            if !word {
                break;
            }
            at += len;
        }
        let after_at_sign = from > 0 && bytes[from - 1] == b'@';
        if !after_at_sign && words.contains(&text[from..at]) {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[rest..from]);
            out.push_str(PLACEHOLDER);
            rest = at;
        }
    }
    out.map(|mut out| {
        out.push_str(&text[rest..]);
        out
    })
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
    fn the_word_lookup_masks_exactly_what_the_search_does() {
        let values: Vec<String> = [
            "40",
            "0",
            "alice",
            "x140",
            "1998-09-02",
            "%BRASS",
            "it's",
            "BUILDING",
            "abc",
        ]
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
        let set = Values::new(values.clone());
        for text in [
            "FilterExec: v@2 > 40 AND id@40 = x140 AND name@1 = alice",
            "Filter: t.d = Date32(\"1998-09-02\") AND p LIKE Utf8(\"%BRASS\")",
            "RoundRobinBatch(0), it's BUILDING, BUILDINGS, abc_def, abc-def, @abc abc",
            "«alice» café:alice über40 40é é40",
            "",
            "40",
            "no value here",
        ] {
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            assert_eq!(set.mask(text), mask_values(text, &sorted), "{text}");
        }
    }

    #[test]
    fn a_query_set_masks_what_it_knows_unless_kept() {
        let literals = QueryLiterals::new(false);
        literals.add([
            "abc".to_owned(),
            "abcdef".to_owned(),
            String::new(),
            "abc".to_owned(),
        ]);
        assert_eq!(literals.values().all(), ["abcdef", "abc"]);
        assert_eq!(
            literals.mask("Filter: a = abcdef OR b = abc").as_deref(),
            Some("Filter: a = ? OR b = ?")
        );
        assert_eq!(
            literals.mask_error("Cannot cast 'zz' near abc".to_owned()),
            "Cannot cast '?' near ?"
        );
        let kept = QueryLiterals::new(true);
        kept.add(["abc".to_owned()]);
        assert!(kept.values().all().is_empty());
        assert_eq!(kept.mask("a = abc"), None);
        assert_eq!(kept.mask_error("'abc'".to_owned()), "'abc'");
    }
}
