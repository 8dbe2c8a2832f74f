//! W3C trace context in, as a remote parent: the one parser dftrace uses
//! (the root query span's `traceparent` option, the workers' request
//! headers). The OpenTelemetry `TraceContextPropagator` reads the headers,
//! `tracestate` included; the checks in front of it say what is wrong with
//! a header it would refuse, or accept only by being lenient (a short
//! field, uppercase hex), so a caller's mistake gets a reason.

use crate::error::RulesError;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The W3C `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";

/// Parses a W3C `traceparent` (and, when given, its `tracestate`, kept on
/// the returned context) into a remote span context. A version above `00`
/// is read as the specification asks: its first four fields. An invalid
/// `tracestate` is dropped, as the specification asks, keeping the parent.
pub fn parse_trace_context(
    traceparent: &str,
    tracestate: Option<&str>,
) -> Result<SpanContext, RulesError> {
    let invalid = |reason| RulesError::InvalidTraceparent {
        value: traceparent.to_owned(),
        reason,
    };
    check_traceparent(traceparent.trim()).map_err(invalid)?;
    let headers = Headers {
        traceparent,
        tracestate,
    };
    let context = TraceContextPropagator::new().extract(&headers);
    let parent = context.span().span_context().clone();
    if parent.is_valid() {
        Ok(parent)
    } else {
        Err(invalid("the W3C propagator refused it"))
    }
}

/// The specification's syntax, with the reason for the first violation.
fn check_traceparent(value: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = value.split('-').collect();
    let is_hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let Some(version) = parts.first() else {
        return Err("it is empty");
    };
    if !is_hex(version, 2) {
        return Err("the version is not 2 lowercase hex digits");
    }
    if *version == "ff" {
        return Err("version ff is forbidden");
    }
    // Version 00 has exactly four fields; later versions may append more.
    let fields_ok = if *version == "00" {
        parts.len() == 4
    } else {
        parts.len() >= 4
    };
    if !fields_ok {
        return Err("it does not have four dash-separated parts");
    }
    let (trace_id, parent_id, flags) = (parts[1], parts[2], parts[3]);
    if !is_hex(trace_id, 32) {
        return Err("the trace id is not 32 lowercase hex digits");
    }
    if !is_hex(parent_id, 16) {
        return Err("the parent id is not 16 lowercase hex digits");
    }
    if !is_hex(flags, 2) {
        return Err("the flags are not 2 lowercase hex digits");
    }
    if trace_id.bytes().all(|b| b == b'0') {
        return Err("the trace id is all zeros");
    }
    if parent_id.bytes().all(|b| b == b'0') {
        return Err("the parent id is all zeros");
    }
    Ok(())
}

struct Headers<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(self.traceparent),
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = vec![TRACEPARENT];
        if self.tracestate.is_some() {
            keys.push(TRACESTATE);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_w3c_form_parses_with_its_tracestate() {
        let context = match parse_trace_context(PARENT, Some("vendor=abc,other=1")) {
            Ok(context) => context,
            Err(error) => panic!("{error}"),
        };
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(context.trace_state().get("vendor"), Some("abc"));

        // A later version is read by its first four fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        let context = parse_trace_context(later, None).map_err(|e| e.to_string());
        assert!(context.is_ok_and(|c| !c.is_sampled()));
        // A malformed tracestate is dropped; the parent stays.
        let context = parse_trace_context(PARENT, Some("not a list member"));
        assert!(context.is_ok_and(|c| c.trace_state().header().is_empty()));
    }

    #[test]
    fn each_problem_is_named() {
        let cases = [
            ("", "version is not 2"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "four dash-separated",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                "four dash-separated",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace id is not 32",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9é2b7-01",
                "parent id is not 16",
            ),
        ];
        for (value, expected) in cases {
            let message = parse_trace_context(value, None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(expected), "{value:?}: {message}");
        }
    }
}
