//! Which fields a preview masks, from glob patterns over field names and
//! dotted paths.

use crate::config::{NameMatching, Policy, PreviewConfig};

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

/// A compiled glob (`*` any run, `?` one character), compared with names as
/// [`NameMatching`] says.
#[derive(Debug, Clone)]
struct Pattern {
    glob: Vec<char>,
    /// Patterns with a dot match the full path; others match the name alone.
    by_path: bool,
}

/// `text` as patterns and names are compared: lowercase, without the
/// separators `_`, `-` and spaces (dots, which separate path segments, and
/// glob characters stay).
fn normalized(text: &str, matching: NameMatching) -> Vec<char> {
    match matching {
        NameMatching::Exact => text.chars().collect(),
        NameMatching::Normalized => text
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' '))
            .flat_map(char::to_lowercase)
            .collect(),
    }
}

impl Pattern {
    fn new(text: &str, matching: NameMatching) -> Self {
        Pattern {
            glob: normalized(text, matching),
            by_path: text.contains('.'),
        }
    }

    /// Whether it matches the field whose normalized name and path are
    /// `name` and `path`.
    fn matches(&self, name: &[char], path: &[char]) -> bool {
        glob_match(&self.glob, if self.by_path { path } else { name })
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
    matching: NameMatching,
    patterns: Vec<Pattern>,
    /// Never reused: tells policies apart in the per-thread memo.
    id: u64,
}

impl ColumnPolicy {
    pub(crate) fn new(config: &PreviewConfig) -> Self {
        let patterns = match config.policy {
            Policy::None => &[][..],
            Policy::DenyList => &config.deny[..],
            Policy::AllowList => &config.allow[..],
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        ColumnPolicy {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            policy: config.policy,
            matching: config.name_matching,
            patterns: patterns
                .iter()
                .map(|p| Pattern::new(p, config.name_matching))
                .collect(),
        }
    }

    /// The decision for the field `name` at dotted `path`.
    pub(crate) fn decide(&self, name: &str, path: &str) -> Decision {
        let matched = || self.matched(name, path);
        match self.policy {
            Policy::None => Decision::Keep,
            Policy::DenyList if matched() => Decision::Mask,
            Policy::AllowList if matched() => Decision::Keep,
            Policy::DenyList | Policy::AllowList => Decision::Descend,
        }
    }

    /// Whether a pattern matches the field `name` at `path`: remembered per
    /// thread, since previews decide the same columns query after query.
    fn matched(&self, name: &str, path: &str) -> bool {
        type Memo = std::collections::HashMap<(u64, String, String), bool>;
        thread_local! {
            static MEMO: std::cell::RefCell<Memo> = std::cell::RefCell::default();
        }
        const REMEMBERED: usize = 4096;
        let key = (self.id, name.to_owned(), path.to_owned());
        if let Some(matched) = MEMO.with(|memo| memo.borrow().get(&key).copied()) {
            return matched;
        }
        // Normalized once for all the patterns.
        let normalized_name = normalized(name, self.matching);
        let normalized_path = normalized(path, self.matching);
        let matched = self
            .patterns
            .iter()
            .any(|p| p.matches(&normalized_name, &normalized_path));
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.len() >= REMEMBERED {
                memo.clear();
            }
            memo.insert(key, matched);
        });
        matched
    }

    /// Whether the scanned field at dotted `path` is denied: the first
    /// decision from its outermost segment inwards, as a nested column is
    /// decided (a leaf left undecided takes the policy's default).
    pub(crate) fn denies_source(&self, path: &str) -> bool {
        let mut prefix = String::new();
        for segment in path.split('.') {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(segment);
            match self.decide(segment, &prefix) {
                Decision::Mask => return true,
                Decision::Keep => return false,
                Decision::Descend => {}
            }
        }
        self.leaf_default() == Decision::Mask
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
    fn name_variants_match_after_normalising_and_exact_keeps_them_apart() {
        let normalized = ColumnPolicy::new(&PreviewConfig::default());
        for name in [
            "Pass_Word",
            "PASSWORD",
            "passWord",
            "pass-word",
            "user password",
        ] {
            assert_eq!(normalized.decide(name, name), Decision::Mask, "{name}");
        }
        assert_eq!(normalized.decide("apiKey", "apiKey"), Decision::Mask);
        assert_eq!(normalized.decide("nickname", "nickname"), Decision::Descend);
        let exact = ColumnPolicy::new(&PreviewConfig {
            name_matching: NameMatching::Exact,
            ..PreviewConfig::default()
        });
        assert_eq!(exact.decide("password", "password"), Decision::Mask);
        assert_eq!(exact.decide("Pass_Word", "Pass_Word"), Decision::Descend);
        // A source path is denied by its outermost decided segment.
        assert!(normalized.denies_source("creds.token"));
        assert!(normalized.denies_source("x.api_key.v"));
        assert!(!normalized.denies_source("x.name"));
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
