//! Database URLs that never show their password.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// The text that replaces a password wherever a URL is shown.
pub const MASK: &str = "****";

/// Returns `url` with its password masked: the password of the user-info part
/// (`scheme://user:secret@host`) and the value of every query parameter that names a secret
/// (`password=`, `sslpassword=`, `pass=`, `pwd=`, `secret=`, `token=`, any case).
///
/// The whole input is taken as one URL and split by structure, never by scanning for where a URL
/// seems to end: the user-info runs from `://` to the **last** `@` of the input, because a password
/// may hold any character (`/`, `?`, `#`, `@`, spaces, quotes, control characters) unencoded. When
/// that guess is wrong (an `@` in the query), more is masked than needed: the safe side.
/// For free text that may hold URLs among other words (an error message), use [`mask_text`].
pub fn mask_password(url: &str) -> String {
    let (password, tail) = userinfo(url);
    let mut out = String::with_capacity(url.len());
    match password {
        Some(range) => {
            out.push_str(&url[..range.start]);
            out.push_str(MASK);
            out.push_str(&url[range.end..tail]);
        }
        None => out.push_str(&url[..tail]),
    }
    out.push_str(&mask_query(&url[tail..]));
    // A `?` inside what was taken for the user-info (`h/db?x=a@b&password=s`) leaves the query's
    // parameters in the tail without their `?`: mask any `password=` value left.
    mask_password_words(&out)
}

/// Where `url`'s password lies, read by structure, and where the part after its user-info starts
/// (after the `@`, else after the scheme).
///
/// - `scheme://user:secret@host`: the user-info runs from `://` to the **last** `@`, and the password
///   from its first `:`.
/// - Without `//` (`https:user:secret@host`, `ws:/user:secret@host`), the same after the scheme's
///   `:` and slashes.
/// - A user-info without `:` there, or no scheme at all, means the password may sit before it: a
///   DSN such as `user:secret@tcp(host)/db` reads as the scheme `user`. Everything from the first `:`
///   to the last `@` is then taken for the password (more than needed, the safe side).
fn userinfo(url: &str) -> (Option<std::ops::Range<usize>>, usize) {
    let (start, authority) = match url.find("://") {
        Some(at) => (at + 3, true),
        None => match scheme_end(url) {
            Some(colon) => {
                let after = &url[colon + 1..];
                let slashes = after.len() - after.trim_start_matches('/').len();
                (colon + 1 + slashes, false)
            }
            None => (0, false),
        },
    };
    let Some(at) = url[start..].rfind('@').map(|at| start + at) else {
        return (None, start);
    };
    let colon = match url[start..at].find(':') {
        Some(colon) => Some(start + colon),
        None if authority => None,
        None => url[..at].find(':'),
    };
    (colon.map(|colon| colon + 1..at), at + 1)
}

/// Where a URL's scheme ends (the index of its `:`), for a text that starts with one
/// (`[A-Za-z][A-Za-z0-9+.-]*:`).
fn scheme_end(text: &str) -> Option<usize> {
    let colon = text.find(':')?;
    let scheme = &text[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(colon)
}

/// Masks the values of secret-naming parameters in the query of `rest` (the URL after its
/// user-info). Parameters end at `&`, `;` or the fragment's `#`, as a driver splits them.
fn mask_query(rest: &str) -> String {
    let Some(question) = rest.find('?') else {
        return rest.to_owned();
    };
    let (path, query) = rest.split_at(question + 1);
    let (query, fragment) = match query.find('#') {
        Some(hash) => query.split_at(hash),
        None => (query, ""),
    };
    let mut out = String::with_capacity(rest.len());
    out.push_str(path);
    let mut pair_start = 0;
    for (end, separator) in query
        .char_indices()
        .filter(|(_, c)| matches!(c, '&' | ';'))
        .map(|(i, c)| (i, Some(c)))
        .chain(std::iter::once((query.len(), None)))
    {
        let pair = &query[pair_start..end];
        match pair.split_once('=') {
            Some((key, value)) if names_a_secret(key) && !value.is_empty() => {
                out.push_str(key);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
        if let Some(separator) = separator {
            out.push(separator);
        }
        pair_start = end + 1;
    }
    out.push_str(fragment);
    out
}

/// The values of secret-naming parameters in the query of `rest` (the URL after its user-info).
fn query_secrets(rest: &str) -> impl Iterator<Item = &str> {
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split(['&', ';']).filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (names_a_secret(key) && !value.is_empty()).then_some(value)
    })
}

/// Whether a query parameter's name says its value is a secret.
fn names_a_secret(key: &str) -> bool {
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    key.ends_with("password")
        || matches!(
            key.as_str(),
            "pass" | "pwd" | "secret" | "token" | "auth" | "sslkey" | "passfile"
        )
}

/// Masks every URL password in free text (an error message, a configuration file's text): each
/// `://` starts a URL whose user-info may run to the last `@` before the next `://`, so a password
/// is masked whatever it holds. Masks too much rather than too little. Query secrets are masked
/// within the word that holds them.
///
/// Text from a driver may also echo a known password outside any URL: [`Redactor`] removes those by
/// value.
pub fn mask_text(text: &str) -> String {
    let starts = url_starts(text);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (i, &(_, authority)) in starts.iter().enumerate() {
        out.push_str(&text[copied..authority]);
        let next = starts.get(i + 1).map_or(text.len(), |&(s, _)| s);
        let segment = &text[authority..next];
        let userinfo_end = segment.rfind('@').filter(|at| segment[..*at].contains(':'));
        let tail = match userinfo_end {
            Some(at) => {
                let colon = segment[..at].find(':').unwrap_or(at);
                out.push_str(&segment[..=colon]);
                out.push_str(MASK);
                &segment[at..]
            }
            None => segment,
        };
        // The rest of the segment up to where the URL's word ends, query secrets masked.
        let word_end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        out.push_str(&mask_query(&tail[..word_end]));
        out.push_str(&tail[word_end..]);
        copied = next;
    }
    out.push_str(&text[copied..]);
    mask_password_words(&out)
}

/// Where the URLs of free text start: each `scheme://` whose scheme begins a word (at the start of
/// the text or after a space, a quote, `=`, `(`, `<`, `,`, `[`, `{` or `;`), as `(scheme start, index
/// after "://")`. A `://` inside a password (`app:///x@h`, `pw:a://b@h`) follows no such word start,
/// so it never cuts a URL short.
fn url_starts(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        let mut scheme_start = sep;
        while scheme_start > 0
            && (bytes[scheme_start - 1].is_ascii_alphanumeric()
                || matches!(bytes[scheme_start - 1], b'+' | b'-' | b'.'))
        {
            scheme_start -= 1;
        }
        let begins_word = scheme_start == 0
            || bytes[scheme_start - 1].is_ascii_whitespace()
            || matches!(
                bytes[scheme_start - 1],
                b'"' | b'\'' | b'`' | b'=' | b'(' | b'<' | b',' | b'[' | b'{' | b';'
            );
        if scheme_start < sep && bytes[scheme_start].is_ascii_alphabetic() && begins_word {
            starts.push((scheme_start, sep + 3));
        }
        from = sep + 3;
    }
    starts
}

/// Masks `password=value` words outside URLs (`host=h password=secret`), as libpq's key/value
/// connection strings and some driver messages write them.
fn mask_password_words(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("password=") {
        let begin = from + found;
        let value_start = begin + "password=".len();
        let value_end = lower[value_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';' | '#'))
            .map_or(lower.len(), |e| value_start + e);
        if value_end > value_start && !text[value_start..].starts_with(MASK) {
            ranges.push(value_start..value_end);
        }
        from = value_end.max(value_start);
    }
    let mut out = text.to_owned();
    for range in ranges.into_iter().rev() {
        out.replace_range(range, MASK);
    }
    out
}

/// Removes known secrets from text by value: every password of a configuration, as written, as
/// a driver decodes it (percent-decoded), percent-encoded and JSON-escaped. For text that may echo
/// a secret outside any URL (a driver's error, a server's message). Also masks URLs as
/// [`mask_text`] does.
///
/// Secrets shorter than [`Redactor::MIN_SECRET`] characters are not searched for by value (they
/// would blank out ordinary words); the URL masking still hides them.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.needles.len())
    }
}

impl Redactor {
    /// The shortest secret searched for by value, in characters.
    pub const MIN_SECRET: usize = 4;

    /// A redactor that knows no secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the password (and secret query parameters) of `url`.
    pub fn add_url(&mut self, url: &DatabaseUrl) {
        for secret in url.secrets() {
            self.add_secret(&secret);
        }
    }

    /// Adds one secret, in every form it may be shown in.
    pub fn add_secret(&mut self, secret: &str) {
        let decoded = percent_encoding::percent_decode_str(secret)
            .decode_utf8_lossy()
            .into_owned();
        for form in [secret.to_owned(), decoded] {
            let encoded =
                percent_encoding::utf8_percent_encode(&form, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            let json = json_escaped(&form);
            let escaped = form.escape_debug().to_string();
            // `{:?}` escapes more than `escape_debug` (combining marks anywhere, not only first).
            let quoted = format!("{form:?}");
            let debug = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or(&quoted)
                .to_owned();
            for needle in [form.clone(), encoded, json, escaped, debug] {
                if needle.chars().count() >= Self::MIN_SECRET && !self.needles.contains(&needle) {
                    self.needles.push(needle);
                }
            }
        }
        // Longest first, so a secret that holds another is replaced whole.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `text` with URLs masked and every known secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        // Known secrets first: masking by structure could rewrite part of one (a secret holding
        // `password=` or a URL) so that it no longer matches.
        let mut out = text.to_owned();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        mask_text(&out)
    }
}

/// `text` as it stands inside a JSON string, without the quotes.
fn json_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
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

    /// The secrets this URL holds, split by structure as [`mask_password`] does: the user-info's
    /// password and the values of secret-naming query parameters. For a [`Redactor`].
    pub fn secrets(&self) -> Vec<String> {
        let text = self.0.as_str();
        let (password, tail) = userinfo(text);
        password
            .map(|range| &text[range])
            .into_iter()
            .chain(query_secrets(&text[tail..]))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
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
            mask_text("url = \"postgres://a:x@h1/db\"\nurl = \"postgres://a:y@h2/db\""),
            "url = \"postgres://a:****@h1/db\"\nurl = \"postgres://a:****@h2/db\"",
            "every URL of a text, each on its own"
        );
        assert_eq!(mask_password("mysql://app@h/db"), "mysql://app@h/db");
        assert_eq!(mask_password("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }

    #[test]
    fn a_password_holding_any_character_is_masked_whole() {
        for password in [
            "a b c",
            "a\"b",
            "a'b",
            "a`b",
            "a<b>c",
            "a\tb",
            "a\nb",
            "p@ss@word",
            "a/b?c#d",
            "ü ß 密码",
            "\u{0}\u{1f}\u{7f}",
            "x:y:z",
            "a%20b",
        ] {
            let url = format!("postgres://app:{password}@db.example:5432/app?sslmode=disable");
            let masked = mask_password(&url);
            assert_eq!(
                masked, "postgres://app:****@db.example:5432/app?sslmode=disable",
                "{password:?}"
            );
            let text = format!("connect failed url={url} (timed out)");
            assert!(!mask_text(&text).contains(password), "{password:?}");
            let parsed = DatabaseUrl::parse(&url);
            if let Ok(parsed) = parsed {
                assert_eq!(parsed.secrets(), vec![password.to_owned()]);
                assert!(!format!("{parsed} {parsed:?}").contains(password));
            }
        }
    }

    #[test]
    fn the_redactor_removes_known_secrets_in_every_form() {
        let url = DatabaseUrl::parse("postgres://app:pa%20ss%22word@db/app?sslpassword=keyphrase")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut redactor = Redactor::new();
        redactor.add_url(&url);
        for leak in [
            "pa%20ss%22word",
            "pa ss\"word",
            "pa ss\\\"word",
            "keyphrase",
            "pa%20ss%22word".replace('%', "%25").as_str(),
        ] {
            let out = redactor.redact(&format!("server said: {leak}!"));
            assert!(!out.contains(leak), "{out}");
            assert!(out.contains(MASK), "{out}");
        }
        assert_eq!(redactor.redact("nothing here"), "nothing here");
        // A secret holding what URL masking rewrites is still removed whole.
        for secret in [
            "Tr0ub4dor&password=x&Horse-Battery",
            " postgres://a:INNERpw@h ",
        ] {
            let mut redactor = Redactor::new();
            redactor.add_secret(secret);
            let out = redactor.redact(&format!("warning: value={secret} ignored"));
            assert!(!out.contains("Horse") && !out.contains("Tr0ub"), "{out}");
            assert!(!out.contains("INNER"), "{out}");
        }
        assert!(!format!("{redactor:?}").contains("keyphrase"));
    }

    #[test]
    fn masks_password_query_parameter() {
        assert_eq!(
            mask_password("postgres://h/db?user=a&password=xyz&sslmode=disable"),
            "postgres://h/db?user=a&password=****&sslmode=disable"
        );
        assert_eq!(
            mask_password("mysql://h/db?Password=a;b&x=1#frag"),
            "mysql://h/db?Password=****;b&x=1#frag"
        );
        assert_eq!(
            mask_text("host=h password=top-secret dbname=x"),
            "host=h password=**** dbname=x"
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
