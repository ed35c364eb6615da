//! The URL masker: no input panics; a URL built with a password never shows it (`mask_password`,
//! `DatabaseUrl`'s `Display`, `Debug`, `masked` and serialized form, and the error of a bad URL).
#![no_main]

use dbfailover_core::DatabaseUrl;
use dbfailover_core::url::mask_password;
use dbfailover_fuzz::{
    MASK, assert_hidden, assert_not_shown_once, encode, password_char, unreserved,
};
use libfuzzer_sys::fuzz_target;

const SCHEMES: [&str; 8] = [
    "postgres",
    "postgresql",
    "mysql",
    "mariadb",
    "redis",
    "rediss",
    "memcache",
    "sqlite",
];

/// Every form of `text` a user can see.
fn shown(text: &str) -> Vec<(String, &'static str)> {
    let mut forms = vec![(mask_password(text), "mask_password")];
    match DatabaseUrl::parse(text) {
        Ok(url) => {
            forms.push((url.to_string(), "Display"));
            forms.push((format!("{url:?}"), "Debug"));
            forms.push((url.masked(), "masked"));
            forms.push((
                serde_json::to_string(&url).unwrap_or_default(),
                "serialized",
            ));
            let _ = url.scheme();
        }
        Err(error) => forms.push((error, "the parse error")),
    }
    forms
}

fuzz_target!(|data: &[u8]| {
    // Any text: nothing panics; a password the URL parser finds, standing once between `:` and `@`,
    // is never shown.
    let text = String::from_utf8_lossy(data);
    let forms = shown(&text);
    if let Ok(url) = url::Url::parse(&text)
        && let Some(password) = url.password()
    {
        let decoded = percent_encoding::percent_decode_str(password)
            .decode_utf8_lossy()
            .into_owned();
        for (form, what) in &forms {
            assert_not_shown_once(password, &text, form, what);
            assert_not_shown_once(&decoded, &text, form, what);
        }
    }

    // A URL built from the input with a password: none of its fragments is shown.
    let Some((&layout, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |b| *b == 0);
    let (user, password, host, tail) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let scheme = SCHEMES[usize::from(layout) % SCHEMES.len()];
    let user = encode(user, unreserved);
    let mut host: String = host
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        .map(|b| char::from(*b))
        .collect();
    if host.is_empty() {
        host.push_str("localhost");
    }
    // The path and query: printable, no character that cannot stand in a URL.
    let in_query = layout & 0x10 != 0;
    let mut tail: String = tail
        .iter()
        .filter(|b| b.is_ascii_graphic() && !b"\"'`<>\\{}|^".contains(b))
        .filter(|b| !in_query || **b != b'#')
        .map(|b| char::from(*b))
        .collect();
    if !tail.is_empty() && !tail.starts_with(['/', '?', '#']) {
        tail.insert(0, '/');
    }
    let (url, unmasked, password) = if in_query {
        // `?password=` (or `&password=`) in the query.
        let password = encode(password, |b| password_char(b) && !matches!(b, b'&' | b';'));
        let join = if tail.contains('?') { '&' } else { '?' };
        let base = format!("{scheme}://{user}@{host}{tail}{join}password=");
        (
            format!("{base}{password}"),
            format!("{base}{MASK}"),
            password,
        )
    } else {
        let password = encode(password, password_char);
        (
            format!("{scheme}://{user}:{password}@{host}{tail}"),
            format!("{scheme}://{user}:{MASK}@{host}{tail}"),
            password,
        )
    };
    // Also inside a sentence, as an error message shows it.
    let (url, unmasked) = if layout & 0x20 != 0 {
        (
            format!("connecting to `{url}` failed"),
            format!("connecting to `{unmasked}` failed"),
        )
    } else {
        (url, unmasked)
    };
    // What may be shown: every form of the same text with the mask for the password (the
    // `DatabaseUrl(...)` wrapper, a parse error's words).
    let mut allowed = unmasked.clone();
    for (form, _) in shown(&unmasked) {
        allowed.push('\n');
        allowed.push_str(&form);
    }
    for (form, what) in shown(&url) {
        assert_hidden(&password, &allowed, &form, what);
    }
});
