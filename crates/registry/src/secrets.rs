//! Settings that can hold a credential (OTLP headers, the user info of an
//! endpoint URL), shown masked wherever a message or `Debug` output shows
//! them.

/// The mask that stands for a secret in messages and `Debug` output.
pub const SECRET_MASK: &str = "***";

/// Whether the setting `name` (a variable or a dotted field) can hold a
/// credential: headers (`authorization`), and endpoints (user info).
pub fn may_hold_credentials(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("headers") || name.contains("endpoint")
}

/// `value` of the setting `name` (a variable or a dotted field) as it may be
/// shown in an error message or `Debug` output: header values masked
/// (`authorization=***`), the password in a URL's user info masked
/// (`http://user:***@host`), any other value as it is.
pub fn shown_setting(name: &str, value: &str) -> String {
    if !may_hold_credentials(name) {
        return value.to_owned();
    }
    if name.to_ascii_lowercase().contains("headers") {
        return value
            .split(',')
            .map(|entry| match entry.split_once('=') {
                Some((key, _)) => format!("{key}={SECRET_MASK}"),
                None if entry.trim().is_empty() => entry.to_owned(),
                None => SECRET_MASK.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",");
    }
    shown_url(value)
}

/// `message` with what its double quotes and backticks hold masked.
pub(crate) fn quoted_masked(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside: Option<char> = None;
    for c in message.chars() {
        match inside {
            Some(q) if c == q => {
                out.push_str(SECRET_MASK);
                out.push(c);
                inside = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    inside = Some(c);
                }
            }
        }
    }
    out
}

/// `url` with the password of its user info masked.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = user_info
        .split_once(':')
        .map_or(user_info, |(user, _)| user);
    let masked = if user_info.contains(':') {
        format!("{user}:{SECRET_MASK}")
    } else {
        SECRET_MASK.to_owned()
    };
    format!("{scheme}://{masked}@{host}{}", &rest[authority_end..])
}
