//! Helpers shared by the fuzz targets.

/// The text a masked URL shows in place of a password.
pub use dbfailover_core::url::MASK;

/// Panics if `shown` reveals a fragment of `password`: any run of 6 characters of it (the whole
/// password when shorter, if at least 4 long) that `unmasked` (the same text with the password
/// replaced by [`MASK`]) does not hold anyway. Runs holding `*` are not checked (the mask is made
/// of them).
pub fn assert_hidden(password: &str, unmasked: &str, shown: &str, what: &str) {
    let chars: Vec<char> = password.chars().collect();
    if chars.len() < 4 {
        return;
    }
    let width = chars.len().min(6);
    for window in chars.windows(width) {
        let fragment: String = window.iter().collect();
        if fragment.contains('*') || unmasked.contains(&fragment) {
            continue;
        }
        assert!(
            !shown.contains(&fragment),
            "{what} shows `{fragment}` of the password {password:?}: {shown:?}"
        );
    }
}

/// Panics if `shown` holds `password` when the raw `text` holds it exactly once, right between a
/// `:` and an `@` (so the one occurrence is the password itself).
pub fn assert_not_shown_once(password: &str, text: &str, shown: &str, what: &str) {
    if password.chars().count() < 4 || password.contains('*') {
        return;
    }
    let Some(at) = text.find(&format!(":{password}@")) else {
        return;
    };
    // Free text is searched for URLs by their `scheme://`; a special scheme without `//`
    // (`https:u:p@h`) is masked when given as one URL (`mask_password`), not inside a sentence.
    if text.matches(password).count() != 1 || !text[..at].contains("://")
    {
        return;
    }
    assert!(
        !shown.contains(password),
        "{what} shows the password {password:?} of {text:?}: {shown:?}"
    );
}

/// Percent-encodes every byte of `text` but those `keep` allows.
pub fn encode(text: &[u8], keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &byte in text {
        if byte.is_ascii() && keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// RFC 3986 unreserved characters.
pub fn unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// What a user-info password may hold unencoded (RFC 3986: unreserved, sub-delims, `:`).
pub fn password_char(byte: u8) -> bool {
    unreserved(byte) || b"!$&'()*+,;=:".contains(&byte)
}

