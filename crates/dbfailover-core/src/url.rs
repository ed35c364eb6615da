//! Database URLs that never show their password.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::ops::Range;

/// The text that replaces a password wherever a URL is shown.
pub const MASK: &str = "****";

/// Returns `url` with its password masked: the password of the user-info part
/// (`scheme://user:secret@host`) and the value of every query parameter that names a secret
/// (`password=`, `sslpassword=`, `pass=`, `pwd=`, `secret=`, `token=`, any case).
///
/// The whole input is taken as one URL and split by structure, never by scanning for where a URL
/// seems to end. A password may hold any character (`/`, `?`, `#`, `@`, spaces, quotes) unencoded,
/// and so may a query value, so the input is read two ways, and whatever either reading calls a
/// secret is masked:
/// - the user-info runs to the **last** `@` (a password holding `/`, `?` or `@`);
/// - the user-info ends before the first `?` or `#` (a query value holding `@`).
///
/// Without `//` after the scheme (`https:user:pw@host`), or with no scheme at all (a DSN such as
/// `user:pw@tcp(host)/db`, which reads as the scheme `user`), everything from the first `:` to the
/// `@` is taken for the password. More is masked than needed rather than less.
/// For free text that may hold URLs among other words (an error message), use [`mask_text`].
pub fn mask_password(url: &str) -> String {
    let mut ranges = Vec::new();
    for reading in readings(url) {
        ranges.extend(reading.password);
        ranges.extend(query_secret_ranges(url, reading.tail));
    }
    ranges.extend(password_word_ranges(url));
    mask_ranges(url, ranges)
}

/// One reading of a URL's structure: where its password lies and where the part after it starts
/// (the user-info's `@`, else the authority; what follows holds the host, path and query).
struct Reading {
    password: Option<Range<usize>>,
    tail: usize,
}

/// The two readings of `url` (see [`mask_password`]): user-info to the last `@`, and user-info
/// ending before the query.
fn readings(url: &str) -> [Reading; 2] {
    // JDBC wraps a URL: `jdbc:postgresql://user:pw@host/db` (where its inner scheme ends).
    let jdbc = scheme_end(url)
        .filter(|&colon| url[..colon].eq_ignore_ascii_case("jdbc"))
        .and_then(|colon| scheme_end(&url[colon + 1..]).map(|inner| colon + 1 + inner))
        .filter(|&inner| url[inner..].starts_with("://"));
    // A `://` right after the scheme makes an authority; one further on belongs to a password or a
    // query, and says nothing of the structure.
    let (start, authority) = match scheme_end(url) {
        Some(colon) if url[colon..].starts_with("://") => (colon + 3, true),
        Some(_) if let Some(inner) = jdbc => (inner + 3, true),
        // No authority: the password is taken from the first `:` (below), and a scheme holds no `@`
        // and no `?`, so their search starts at the beginning.
        _ => (0, false),
    };
    let query = url[start..]
        .find(['?', '#'])
        .map_or(url.len(), |at| start + at);
    [url.len(), query].map(|end| {
        let Some(at) = url[start..end].rfind('@').map(|at| start + at) else {
            return Reading {
                password: None,
                tail: start,
            };
        };
        let colon = if authority {
            url[start..at].find(':').map(|colon| start + colon)
        } else {
            url[..at].find(':')
        };
        Reading {
            password: colon.map(|colon| colon + 1..at),
            tail: at,
        }
    })
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

/// The ranges of the values of secret-naming parameters in the query of `text[from..]` (the URL
/// after its user-info). Parameters end at `&`, `;` or the fragment's `#`, as a driver splits them.
fn query_secret_ranges(text: &str, from: usize) -> Vec<Range<usize>> {
    let Some(question) = text[from..].find('?') else {
        return Vec::new();
    };
    let start = from + question + 1;
    let end = text[start..]
        .find('#')
        .map_or(text.len(), |hash| start + hash);
    let mut ranges = Vec::new();
    let mut pair_start = start;
    for (offset, _) in text[start..end]
        .match_indices(['&', ';'])
        .chain(std::iter::once((end - start, "")))
    {
        let pair_end = start + offset;
        let pair = &text[pair_start..pair_end];
        if let Some((key, value)) = pair.split_once('=')
            && names_a_secret(key)
            && !value.is_empty()
        {
            ranges.push(pair_start + key.len() + 1..pair_end);
        }
        pair_start = pair_end + 1;
    }
    ranges
}

/// `text` with every range replaced by [`MASK`] (overlapping and touching ranges as one).
fn mask_ranges(text: &str, mut ranges: Vec<Range<usize>>) -> String {
    ranges.sort_by_key(|r| (r.start, r.end));
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut current: Option<Range<usize>> = None;
    for range in ranges {
        match &mut current {
            Some(open) if range.start <= open.end => open.end = open.end.max(range.end),
            _ => {
                if let Some(open) = current.take() {
                    out.push_str(&text[copied..open.start]);
                    out.push_str(MASK);
                    copied = open.end;
                }
                current = Some(range);
            }
        }
    }
    if let Some(open) = current {
        out.push_str(&text[copied..open.start]);
        out.push_str(MASK);
        copied = open.end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Whether a query parameter's name says its value is a secret.
fn names_a_secret(key: &str) -> bool {
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .trim()
        .to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "apikey", "api_key"]
        .iter()
        .any(|end| key.ends_with(end))
        || matches!(
            key.as_str(),
            "pass" | "pwd" | "auth" | "sslkey" | "passfile"
        )
}

/// Masks every URL password in free text (an error message, a configuration file's text). Each
/// `scheme://` starts a URL whose user-info may run to the last `@` before the next URL, so a
/// password is masked whatever it holds. Text is read three ways and what any masks is masked: URLs
/// start only after a space (so a `scheme://` glued to anything inside a password never cuts it
/// short), where a word begins (after a quote, `=`, `,`, ...), or at every `scheme://`
/// (`jdbc:postgresql://`, `error:mysql://`). Each URL is itself read two ways, as by
/// [`mask_password`]. Query secrets are masked within the word that holds them, and `password=`
/// words anywhere. Masks too much rather than too little.
///
/// Text from a driver may also echo a known password outside any URL: [`Redactor`] removes those by
/// value.
pub fn mask_text(text: &str) -> String {
    let mut ranges = Vec::new();
    for mode in [Starts::Words, Starts::Tokens, Starts::Anywhere] {
        let starts = url_starts(text, mode);
        for (i, &(_, authority)) in starts.iter().enumerate() {
            let next = starts.get(i + 1).map_or(text.len(), |&(s, _)| s);
            let segment = &text[authority..next];
            // Both readings: the user-info to the last `@`, or to the last `@` before the query.
            let query = segment.find(['?', '#']).unwrap_or(segment.len());
            for end in [segment.len(), query] {
                let tail = match segment[..end]
                    .rfind('@')
                    .filter(|at| segment[..*at].contains(':'))
                {
                    Some(at) => {
                        let colon = segment[..at].find(':').unwrap_or(at);
                        ranges.push(authority + colon + 1..authority + at);
                        authority + at
                    }
                    None => authority,
                };
                // The rest of the segment up to where the URL's word ends, query secrets masked.
                let word_end = text[tail..next]
                    .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
                    .map_or(next, |end| tail + end);
                ranges.extend(query_secret_ranges(&text[..word_end], tail));
            }
        }
    }
    ranges.extend(password_word_ranges(text));
    mask_ranges(text, ranges)
}

/// Which `scheme://` of free text starts a URL (see [`mask_text`]).
#[derive(Clone, Copy)]
enum Starts {
    /// Only after a space or at the start of the text (the scheme may be `jdbc:postgresql`): a
    /// `scheme://` glued to anything inside a password never cuts it.
    Words,
    /// Where a word begins: after a space, a quote, `=`, `(`, `<`, `,`, `[`, `{` or `;`.
    Tokens,
    /// Every `scheme://` (`error:mysql://`, `...postgres://`).
    Anywhere,
}

/// Where the URLs of free text start, as `(scheme start, index after "://")`; the scheme is the
/// longest run of letters, digits, `+`, `-`, `.` (and with [`Starts::Words`], `:`) before `://`
/// that starts with a letter.
fn url_starts(text: &str, mode: Starts) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let sep = from + found;
        let mut scheme_start = sep;
        while scheme_start > 0
            && (bytes[scheme_start - 1].is_ascii_alphanumeric()
                || matches!(bytes[scheme_start - 1], b'+' | b'-' | b'.')
                || (matches!(mode, Starts::Words) && bytes[scheme_start - 1] == b':'))
        {
            scheme_start -= 1;
        }
        let before = scheme_start.checked_sub(1).map(|at| bytes[at]);
        let begins = match mode {
            Starts::Words => before.is_none_or(|b| b.is_ascii_whitespace()),
            Starts::Tokens => before.is_none_or(|b| {
                b.is_ascii_whitespace()
                    || matches!(
                        b,
                        b'"' | b'\'' | b'`' | b'=' | b'(' | b'<' | b',' | b'[' | b'{' | b';'
                    )
            }),
            Starts::Anywhere => {
                while scheme_start < sep && !bytes[scheme_start].is_ascii_alphabetic() {
                    scheme_start += 1;
                }
                true
            }
        };
        if begins && scheme_start < sep && bytes[scheme_start].is_ascii_alphabetic() {
            starts.push((scheme_start, sep + 3));
        }
        from = sep + 3;
    }
    starts
}

/// The values of `password=value` words (`host=h password=secret`, `Pwd=secret;`), as libpq's
/// key/value connection strings, ODBC strings, JDBC URLs and some driver messages write them: spaces
/// around `=` are allowed, `password`, `passwd` and `pwd` quoted also take `:` (`"password":"x"`,
/// not `using password: YES`), and `token`, `secret`, `apikey`, `api_key` take `=`. A quoted value (`'...'`,
/// `"..."`, with `\'` or `''` inside) or a braced one (`{...}`, with `}}` inside) is taken whole; an
/// unquoted one ends at a space, `&` or `;`.
fn password_word_ranges(text: &str) -> Vec<Range<usize>> {
    let lower = text.to_ascii_lowercase();
    let mut ranges = Vec::new();
    let keys = [
        ("password", true),
        ("passwd", true),
        ("pwd", true),
        ("token", false),
        ("secret", false),
        ("apikey", false),
        ("api_key", false),
    ];
    for (key, colon) in keys {
        for (begin, _) in lower.match_indices(key) {
            // A key begins a word (`OLDPWD=` is not `PWD=`), except `password` ending a longer
            // name (`sslpassword=`, `db_password=`).
            if key != "password" && begin > 0 && lower.as_bytes()[begin - 1].is_ascii_alphanumeric()
            {
                continue;
            }
            let rest = &lower[begin + key.len()..];
            // A quoted key (JSON, a dictionary): `"password": "x"`.
            let quoted = begin > 0
                && matches!(lower.as_bytes()[begin - 1], b'"' | b'\'')
                && rest.starts_with(['"', '\'']);
            let rest = if quoted { &rest[1..] } else { rest };
            let spaced = rest.starts_with([' ', '\t']);
            let rest = rest.trim_start_matches([' ', '\t']);
            let value = match rest.strip_prefix('=') {
                // `pwd == x` compares, it does not set (`password==x` sets `=x`).
                Some(value) if spaced && value.starts_with('=') => continue,
                Some(value) => value,
                // Only a quoted key takes `:`: MySQL's "(using password: YES)" is no secret.
                None => match rest.strip_prefix(':') {
                    Some(value) if colon && quoted => value,
                    _ => continue,
                },
            };
            let value = value.trim_start_matches([' ', '\t']);
            let value_start = lower.len() - value.len();
            let value_end = value_start + word_value_len(value);
            if value_end > value_start {
                ranges.push(value_start..value_end);
            }
        }
    }
    ranges
}

/// The length of the value that starts `value`: a quoted or braced value whole (when it closes on
/// its line), else up to a space, `&` or `;`.
fn word_value_len(value: &str) -> usize {
    // A quote closes with itself (`\'` and a doubled quote inside), a brace with `}` (`}}` inside).
    let (close, backslash) = match value.chars().next() {
        Some(quote @ ('\'' | '"')) => (quote, true),
        Some('{') => ('}', false),
        _ => return word_value_len_unquoted(value),
    };
    let line = &value[..value.find('\n').unwrap_or(value.len())];
    let mut chars = line.char_indices().skip(1).peekable();
    let mut closed = None;
    while let Some((at, c)) = chars.next() {
        if backslash && c == '\\' {
            chars.next();
        } else if c == close && chars.next_if(|&(_, next)| next == close).is_none() {
            closed = Some(at + c.len_utf8());
            break;
        }
    }
    match closed {
        // A value that goes on after its closing quote (`''abc`, `"ab"cd`) runs to the word's end;
        // one closed before a separator (`"pw"}` in JSON, `'pw',`) ends there.
        Some(end)
            if value[end..].is_empty()
                || value[end..].starts_with(|c: char| {
                    c.is_whitespace() || matches!(c, '&' | ';' | ',' | '}' | ']' | ')')
                }) =>
        {
            end
        }
        Some(end) => end + word_value_len_unquoted(&value[end..]),
        None => word_value_len_unquoted(value),
    }
}

/// The length of an unquoted value at the start of `value`: up to a space, `&` or `;`.
fn word_value_len_unquoted(value: &str) -> usize {
    value
        .find(|c: char| c.is_whitespace() || matches!(c, '&' | ';'))
        .unwrap_or(value.len())
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
            let mut needles = vec![form.clone(), json_escaped(&form)];
            // Percent-encoded as a whole, and as the url crate encodes a user-info (which leaves
            // `-`, `.`, `_`, `~` and more as they are); with upper and lower case hex digits, and
            // with `+` for a space as a form would send it.
            for set in [percent_encoding::NON_ALPHANUMERIC, USERINFO, FORM, PATH] {
                let encoded = percent_encoding::utf8_percent_encode(&form, set).to_string();
                needles.push(lower_hex(&encoded));
                needles.push(encoded.replace("%20", "+"));
                needles.push(encoded);
            }
            needles.push(form.escape_debug().to_string());
            // `{:?}` escapes more than `escape_debug` (combining marks anywhere, not only first).
            let quoted = format!("{form:?}");
            needles.push(
                quoted
                    .strip_prefix('"')
                    .and_then(|q| q.strip_suffix('"'))
                    .unwrap_or(&quoted)
                    .to_owned(),
            );
            for needle in needles {
                if needle.chars().count() >= Self::MIN_SECRET && !self.needles.contains(&needle) {
                    self.needles.push(needle);
                }
            }
        }
    }

    /// `text` with URLs masked and every known secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        // Known secrets first: masking by structure could rewrite part of one (a secret holding
        // `password=` or a URL) so that it no longer matches. Every match of every secret is found
        // in the text as given, so that overlapping secrets leave no fragment.
        let mut ranges = Vec::new();
        for needle in &self.needles {
            let step = needle.chars().next().map_or(1, char::len_utf8);
            let mut from = 0;
            // Overlapping matches too (`abcXabc` twice in `abcXabcXabc`).
            while let Some(at) = text[from..].find(needle.as_str()) {
                ranges.push(from + at..from + at + needle.len());
                from += at + step;
            }
        }
        mask_text(&mask_ranges(text, ranges))
    }
}

/// The characters the url crate percent-encodes in a user-info (the WHATWG user-info set).
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// What `application/x-www-form-urlencoded` encodes (the url crate's `form_urlencoded`, with `+`
/// for a space): all but letters, digits and `*-._`.
const FORM: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// What a path encoder leaves (Python's `quote`): all but letters, digits and `/_.-~`.
const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// A percent-encoded text with its hex digits in lower case (`%2f` for `%2F`).
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut chars = encoded.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(hex) = chars.next() {
                    out.push(hex.to_ascii_lowercase());
                }
            }
        }
    }
    out
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

    /// The secrets this URL holds, read by structure as [`mask_password`] reads it (both readings):
    /// the user-info's password (and its part after a `:`, or the password of a URL inside it, when
    /// the password was taken to start at the scheme's `:`), the values of secret-naming query
    /// parameters and of `password=` words. For a [`Redactor`].
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        collect_secrets(&self.0, &mut secrets, true);
        secrets
    }
}

/// Adds the secrets of `text` (see [`DatabaseUrl::secrets`]) to `secrets`, each once; with `nested`,
/// also those of a URL found inside a password.
fn collect_secrets(text: &str, secrets: &mut Vec<String>, nested: bool) {
    let add = |secret: &str, secrets: &mut Vec<String>| {
        if !secret.is_empty() && !secrets.iter().any(|s| s == secret) {
            secrets.push(secret.to_owned());
        }
    };
    for reading in readings(text) {
        if let Some(range) = reading.password {
            let password = &text[range];
            add(password, secrets);
            if let Some((_, after)) = password.split_once(':') {
                add(after, secrets);
            }
            if nested && password.contains("://") {
                collect_secrets(password, secrets, false);
            }
        }
        for range in query_secret_ranges(text, reading.tail) {
            add(&text[range], secrets);
        }
    }
    for range in password_word_ranges(text) {
        add(&text[range], secrets);
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
                // The password first; a password holding `:` also yields its part after it.
                assert_eq!(parsed.secrets()[0], password);
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
