//! Checks on text: the message of an error, the words it must contain.
//!
//! Nothing here depends on another crate, so a test binary that must not
//! link this library (linking it links the dftrace plugins it depends on)
//! can include the file by path instead.

/// The message of `result`'s error, or an empty string when it is `Ok` (which
/// then fails whatever the test expects the message to say).
pub fn error_text<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    result
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default()
}

/// Fails the test unless `text` contains each of `words`, naming the first
/// one missing and showing the whole text.
#[track_caller]
pub fn assert_contains_all(text: &str, words: &[&str]) {
    for word in words {
        assert!(text.contains(word), "`{word}` is missing from: {text}");
    }
}
