//! Inputs the `url_mask` fuzz target (`fuzz/`) found showing a password.

use dbfailover_core::DatabaseUrl;
use dbfailover_core::url::mask_password;

/// Found by the `url_mask` fuzz target: a user-info (password or user name) holding a space, a tab,
/// a quote, a backquote or `<`/`>` unencoded: the URL parser accepts the URL (percent-encoding or
/// dropping them), but the masker took the character for the end of the URL and showed the password.
#[test]
fn a_password_holding_a_space_or_a_quote_is_masked() {
    for (url, password) in [
        ("postgres://app:pa ss word@h/db", "ss word"),
        ("postgres://app:pa\tss-word@h/db", "ss-word"),
        ("mysql://u:pass\"word@h/d", "word"),
        ("postgres://app:pass`word@h/db", "word"),
        ("postgres://app:pass<word>@h/db", "word"),
        ("redis://:secret 'pass'@cache:6379/0", "pass"),
        // `'` may even stand unencoded in a URL's user-info (RFC 3986).
        ("mysql://root:it's-secret@h/x", "s-secret"),
        // In the user name, before the password.
        ("postgres://a`p:secretpw@h/db", "secretpw"),
    ] {
        let shown = mask_password(url);
        assert!(!shown.contains(password), "{url:?} shown as {shown:?}");
        if let Ok(parsed) = DatabaseUrl::parse(url) {
            for shown in [parsed.to_string(), format!("{parsed:?}"), parsed.masked()] {
                assert!(!shown.contains(password), "{url:?} shown as {shown:?}");
            }
        }
    }
}

/// Found by the `config_load` fuzz target: a URL in the configuration file with a tab in its
/// password. The URL parser drops tabs, so the password runs to the last `@`; the masker stopped at
/// the tab and the loaded configuration showed the rest.
#[test]
fn a_configured_password_holding_a_tab_is_masked() {
    let text = "[failover]\nprimary = \"a\"\nfailover = \"b\"\n\
        [databases.a]\nurl = \"mysql://root:top\\tsecret@db1/x\"\n\
        [databases.b]\nurl = \"sqlite:///tmp/x.db\"\n";
    let config = dbfailover_core::load::parse(text).unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{config:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

/// Found by the `url_mask` fuzz target: a `password=` that is not a query parameter (here in the
/// path) made the masker skip to the end of its value, past the real `?password=` after it.
#[test]
fn a_query_password_after_another_password_text_is_masked() {
    for url in [
        "postgres://u@localhost/apapassword=999:?password=secretpw",
        "postgres://u@h/db?sslkey=/etc/xpassword=k?password=secretpw",
    ] {
        let shown = mask_password(url);
        assert!(!shown.contains("secretpw"), "{url:?} shown as {shown:?}");
        if let Ok(parsed) = DatabaseUrl::parse(url) {
            for shown in [parsed.to_string(), format!("{parsed:?}"), parsed.masked()] {
                assert!(!shown.contains("secretpw"), "{url:?} shown as {shown:?}");
            }
        }
    }
}

/// Found by the `url_mask` fuzz target: a special scheme (`http`, `https`, `ws`, `wss`, `ftp`) with
/// no `//` or one `/` before the user-info. The URL parser still reads a user name and a password
/// there; the masker looked for `://` only.
#[test]
fn a_password_after_a_special_scheme_without_two_slashes_is_masked() {
    for url in ["https:user:secretpw@host/x", "ws:/user:secretpw@host"] {
        assert_eq!(
            url::Url::parse(url)
                .ok()
                .as_ref()
                .and_then(url::Url::password),
            Some("secretpw")
        );
        let shown = mask_password(url);
        assert!(!shown.contains("secretpw"), "{url:?} shown as {shown:?}");
        if let Ok(parsed) = DatabaseUrl::parse(url) {
            for shown in [parsed.to_string(), format!("{parsed:?}"), parsed.masked()] {
                assert!(!shown.contains("secretpw"), "{url:?} shown as {shown:?}");
            }
        }
    }
}

/// Found by the `url_mask` fuzz target: an `@` in the query makes the user-info run to it (the safe
/// side), which leaves the query's `password=` in the tail with no `?` before it.
#[test]
fn a_query_password_after_an_at_sign_in_the_query_is_masked() {
    let url = "postgres://op%3A@localhost/a?pp:\u{17}@h/4bb&password=%1E%DF%8Cd%40e";
    let shown = mask_password(url);
    assert!(!shown.contains("%1E%DF"), "{shown}");
    let sentence = format!("connecting to `{url}` failed");
    assert!(!mask_password(&sentence).contains("%1E%DF"));
    assert!(!dbfailover_core::url::mask_text(&sentence).contains("%1E%DF"));
}
