//! Content detectors: mask a value by what it looks like, whatever its column.

use crate::config::Detectors;
use regex::Regex;

/// The compiled detectors that are on.
#[derive(Debug, Clone, Default)]
pub(crate) struct ValueDetectors {
    patterns: Vec<Regex>,
    card_numbers: Option<Regex>,
}

impl ValueDetectors {
    pub(crate) fn new(config: &Detectors) -> Result<Self, regex::Error> {
        let mut patterns = Vec::new();
        if config.email {
            patterns.push(Regex::new(
                r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}",
            )?);
        }
        if config.bearer_token {
            patterns.push(Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*")?);
            patterns.push(Regex::new(
                r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
            )?);
        }
        if config.aws_access_key {
            patterns.push(Regex::new(
                r"\b(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b",
            )?);
        }
        let card_numbers = if config.card_number {
            Some(Regex::new(r"\b\d(?:[ \-]?\d){12,18}\b")?)
        } else {
            None
        };
        Ok(ValueDetectors {
            patterns,
            card_numbers,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.card_numbers.is_none()
    }

    /// Whether `value` contains anything a detector flags.
    pub(crate) fn flags(&self, value: &str) -> bool {
        self.patterns.iter().any(|p| p.is_match(value))
            || self
                .card_numbers
                .as_ref()
                .is_some_and(|cards| cards.find_iter(value).any(|m| luhn_valid(m.as_str())))
    }
}

/// The Luhn checksum over the digits of `text` (separators ignored).
pub(crate) fn luhn_valid(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_detector_flags_its_kind_and_nothing_else() {
        let all = ValueDetectors::new(&Detectors {
            email: true,
            bearer_token: true,
            aws_access_key: true,
            card_number: true,
        })
        .unwrap();
        for flagged in [
            "contact: jane.doe@example.co.uk",
            "Authorization: Bearer abc.DEF-123_xyz",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
            "key AKIAIOSFODNN7EXAMPLE here",
            "card 4111 1111 1111 1111",
            "4111-1111-1111-1111",
        ] {
            assert!(all.flags(flagged), "{flagged}");
        }
        for clean in [
            "plain text",
            "order 1234567890123",
            "4111 1111 1111 1112",
            "a@b",
            "bearer",
        ] {
            assert!(!all.flags(clean), "{clean}");
        }
        assert!(
            ValueDetectors::new(&Detectors::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("378282246310005"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("1234"));
    }
}
