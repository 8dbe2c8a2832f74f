//! Which fields a preview masks, from glob patterns over field names and
//! dotted paths.

use crate::config::{Policy, PreviewConfig};

/// What to do with one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Mask the field and everything under it.
    Mask,
    /// Keep the field and everything under it.
    Keep,
    /// Decide field by field below (only for nested types); a leaf that
    /// reaches this is masked under `allow-list` and kept otherwise.
    Descend,
}

/// A compiled case-insensitive glob (`*` any run, `?` one character).
#[derive(Debug, Clone)]
struct Pattern {
    glob: Vec<char>,
    /// Patterns with a dot match the full path; others match the name alone.
    by_path: bool,
}

impl Pattern {
    fn new(text: &str) -> Self {
        Pattern {
            glob: text.to_lowercase().chars().collect(),
            by_path: text.contains('.'),
        }
    }

    fn matches(&self, name: &str, path: &str) -> bool {
        let subject: Vec<char> = if self.by_path {
            path.to_lowercase()
        } else {
            name.to_lowercase()
        }
        .chars()
        .collect();
        glob_match(&self.glob, &subject)
    }
}

/// Iterative glob matching with single-star backtracking: linear in practice
/// and never recursive, whatever the pattern.
fn glob_match(glob: &[char], text: &[char]) -> bool {
    let (mut g, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, t));
                g += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((star_g, star_t)) => {
                    g = star_g + 1;
                    t = star_t + 1;
                    star = Some((star_g, star_t + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == '*')
}

/// The compiled column policy.
#[derive(Debug, Clone)]
pub(crate) struct ColumnPolicy {
    policy: Policy,
    patterns: Vec<Pattern>,
}

impl ColumnPolicy {
    pub(crate) fn new(config: &PreviewConfig) -> Self {
        let patterns = match config.policy {
            Policy::None => &[][..],
            Policy::DenyList => &config.deny[..],
            Policy::AllowList => &config.allow[..],
        };
        ColumnPolicy {
            policy: config.policy,
            patterns: patterns.iter().map(|p| Pattern::new(p)).collect(),
        }
    }

    /// The decision for the field `name` at dotted `path`.
    pub(crate) fn decide(&self, name: &str, path: &str) -> Decision {
        let matched = || self.patterns.iter().any(|p| p.matches(name, path));
        match self.policy {
            Policy::None => Decision::Keep,
            Policy::DenyList if matched() => Decision::Mask,
            Policy::AllowList if matched() => Decision::Keep,
            Policy::DenyList | Policy::AllowList => Decision::Descend,
        }
    }

    /// What a leaf that reached [`Decision::Descend`] becomes.
    pub(crate) fn leaf_default(&self) -> Decision {
        match self.policy {
            Policy::AllowList => Decision::Mask,
            Policy::None | Policy::DenyList => Decision::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str, text: &str) -> bool {
        glob_match(
            &pattern.chars().collect::<Vec<_>>(),
            &text.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn globs() {
        assert!(glob("*token*", "refresh_token_v2"));
        assert!(glob("secret_*", "secret_"));
        assert!(!glob("secret_*", "my_secret_x"));
        assert!(glob("s?n", "ssn"));
        assert!(glob("*", ""));
        assert!(!glob("a*b*c", "aXbXd"));
        assert!(glob("a*b*c", "aXbXbc"));
    }

    #[test]
    fn names_match_at_any_depth_paths_match_exactly_and_case_is_ignored() {
        let config = PreviewConfig {
            deny: vec!["Password".into(), "user.email".into()],
            ..PreviewConfig::default()
        };
        let policy = ColumnPolicy::new(&config);
        assert_eq!(policy.decide("PASSWORD", "PASSWORD"), Decision::Mask);
        assert_eq!(
            policy.decide("password", "account.password"),
            Decision::Mask
        );
        assert_eq!(policy.decide("email", "User.Email"), Decision::Mask);
        assert_eq!(policy.decide("email", "contact.email"), Decision::Descend);
    }
}
