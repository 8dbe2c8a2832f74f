//! Counts, bytes and times as the Int64 that OpenTelemetry attributes and
//! Arrow's `Int64` columns hold.

/// `value` as an `i64`, saturating at `i64::MAX` (a count past it is not a
/// count any query reaches; a wrapped negative number would mislead).
///
/// ```
/// assert_eq!(dftrace_registry::saturating_i64(7_u64), 7);
/// assert_eq!(dftrace_registry::saturating_i64(u64::MAX), i64::MAX);
/// assert_eq!(dftrace_registry::saturating_i64(u128::MAX), i64::MAX);
/// ```
pub fn saturating_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}
