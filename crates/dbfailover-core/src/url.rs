//! Database URLs that never show their password.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// The text that replaces a password wherever a URL is shown.
pub const MASK: &str = "****";

/// Returns `url` with its password masked: the password of the user-info part
/// (`scheme://user:secret@host`) and any `password=` query parameter.
///
/// Works on text that is not a valid URL too, so an error about a bad URL can show it safely.
pub fn mask_password(url: &str) -> String {
    // Every URL in the text (an error message may hold several), each up to the end of its token.
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(scheme_end) = rest.find("://") {
        let (before, after) = rest.split_at(scheme_end + 3);
        out.push_str(before);
        let token_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(after.len());
        let token = &after[..token_end];
        // The user-info ends at the token's last `@`: a password may hold `/`, `?` or `#` unencoded,
        // and masking too much is the safe side of a mistake.
        match token
            .rfind('@')
            .and_then(|at| Some((at, token[..at].find(':')?)))
        {
            Some((at, colon)) => {
                out.push_str(&token[..=colon]);
                out.push_str(MASK);
                out.push_str(&token[at..]);
            }
            None => out.push_str(token),
        }
        rest = &after[token_end..];
    }
    out.push_str(rest);
    let lower = out.to_ascii_lowercase();
    let mut search_from = 0;
    let mut ranges = Vec::new();
    while let Some(found) = lower[search_from..].find("password=") {
        let begin = search_from + found;
        let preceded_ok =
            begin == 0 || matches!(lower.as_bytes()[begin - 1], b'?' | b'&' | b';' | b' ');
        let value_start = begin + "password=".len();
        let value_end = lower[value_start..]
            .find(['&', '#', ';', ' '])
            .map_or(lower.len(), |e| value_start + e);
        if preceded_ok && value_end > value_start {
            ranges.push(value_start..value_end);
        }
        search_from = value_end.max(value_start);
    }
    for range in ranges.into_iter().rev() {
        out.replace_range(range, MASK);
    }
    out
}

/// A database URL. `Debug`, `Display` and `Serialize` show it with the password masked;
/// only [`DatabaseUrl::expose`] gives the real text, for the driver.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks that `text` parses as a URL and keeps it.
    pub fn parse(text: &str) -> Result<Self, String> {
        match ::url::Url::parse(text) {
            Ok(_) => Ok(Self(text.to_owned())),
            Err(e) => Err(format!("`{}` is not a URL ({e})", mask_password(text))),
        }
    }

    /// The URL with its password, for handing to a driver. Never log this.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The scheme, lower case (`postgres`, `mysql`, `sqlite`, ...).
    pub fn scheme(&self) -> String {
        self.0
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// The URL with its password masked.
    pub fn masked(&self) -> String {
        mask_password(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for DatabaseUrl {
    /// Serializes the masked form: serialized configuration is for showing, never for secrets.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_user_info_password() {
        assert_eq!(
            mask_password("postgres://app:s3cr:et@10.0.0.1:5432/app"),
            "postgres://app:****@10.0.0.1:5432/app"
        );
        assert_eq!(mask_password("redis://:pw@h/0"), "redis://:****@h/0");
        assert_eq!(mask_password("redis://:ab#c/d?e@h/0"), "redis://:****@h/0");
        assert_eq!(
            mask_password("url = \"postgres://a:x@h1/db\"\nurl = \"postgres://a:y@h2/db\""),
            "url = \"postgres://a:****@h1/db\"\nurl = \"postgres://a:****@h2/db\"",
            "every URL of a text, each on its own"
        );
        assert_eq!(mask_password("mysql://app@h/db"), "mysql://app@h/db");
        assert_eq!(mask_password("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }

    #[test]
    fn masks_password_query_parameter() {
        assert_eq!(
            mask_password("postgres://h/db?user=a&password=xyz&sslmode=disable"),
            "postgres://h/db?user=a&password=****&sslmode=disable"
        );
    }

    #[test]
    fn debug_and_display_never_show_the_password() {
        let url =
            DatabaseUrl::parse("postgres://app:hunter2@db/app").unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!format!("{url}").contains("hunter2"));
        assert_eq!(url.expose(), "postgres://app:hunter2@db/app");
        assert_eq!(url.scheme(), "postgres");
    }

    #[test]
    fn a_bad_url_error_masks_too() {
        let err = DatabaseUrl::parse("postgres://app:hunter2@[bad/app")
            .err()
            .unwrap_or_default();
        assert!(err.contains("not a URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
