//! No output of the core shows a password, whatever characters it holds: generated passwords (any
//! Unicode, every ASCII punctuation and control character) go into a configuration, and every way
//! the core shows one (Display, Debug, JSON, TOML, errors, the redactor over a driver's text) is
//! searched for any fragment of 4 characters or more, raw, percent-encoded or JSON-escaped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_core::load;
use dbfailover_core::url::{DatabaseUrl, Redactor, mask_password, mask_text};
use proptest::prelude::*;

/// Every fragment of `password` of 4 characters or more, in every form an output could hold it.
fn fragments(password: &str) -> Vec<String> {
    let chars: Vec<char> = password.chars().collect();
    let mut out = Vec::new();
    for len in 4..=chars.len() {
        for window in chars.windows(len) {
            let raw: String = window.iter().collect();
            let encoded =
                percent_encoding::utf8_percent_encode(&raw, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            let json = serde_json::to_string(&raw).unwrap();
            let json = json[1..json.len() - 1].to_owned();
            let escaped = raw.escape_debug().to_string();
            let quoted = format!("{raw:?}");
            let debug = quoted[1..quoted.len() - 1].to_owned();
            out.extend([raw, encoded, json, escaped, debug]);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The fragments of `password` that `output` holds more often than `baseline` (the same output made
/// with another password of the same length): what the password itself put there.
fn leaks(password: &str, output: &str, baseline: &str) -> Vec<String> {
    fragments(password)
        .into_iter()
        .filter(|f| output.matches(f.as_str()).count() > baseline.matches(f.as_str()).count())
        .collect()
}

/// Everything the core shows of a configuration whose database, monitor and store URLs hold
/// `password` (raw in one URL, percent-encoded in another), and of the errors that such URLs cause.
fn outputs(password: &str) -> String {
    let encoded =
        percent_encoding::utf8_percent_encode(password, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let raw_url = format!("postgres://app:{password}@db.internal:5432/app?sslmode=disable");
    let encoded_url = format!("mysql://app:{encoded}@db2.internal/app");
    let store_url = format!("redis://:{encoded}@cache.internal:6379/0");
    let mut shown = String::new();
    let mut show = |text: String| {
        shown.push_str(&text);
        shown.push('\n');
    };
    show(mask_password(&raw_url));
    show(mask_password(&encoded_url));
    show(mask_text(&format!("connect to {raw_url} failed: timeout")));
    show(mask_text(&format!(
        "connect to {encoded_url} failed: timeout"
    )));
    for url in [&raw_url, &encoded_url, &store_url] {
        match DatabaseUrl::parse(url) {
            Ok(parsed) => {
                show(format!("{parsed} {parsed:?} {}", parsed.masked()));
                show(serde_json::to_string(&parsed).unwrap());
                let mut redactor = Redactor::new();
                redactor.add_url(&parsed);
                show(format!("{redactor:?}"));
                // A driver's error that echoes the password every way it could.
                show(redactor.redact(&format!(
                    "auth failed for {password:?}: {password} / {encoded} / {}",
                    serde_json::to_string(password).unwrap()
                )));
            }
            Err(error) => show(error),
        }
    }
    let toml_string = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let text = format!(
        "[failover]\nprimary = \"main\"\nfailover = \"standby\"\n\
         [databases.main]\nurl = {}\nmonitor_url = {}\n\
         [databases.standby]\nurl = {}\n\
         [state]\nstore = \"redis\"\nurl = {}\n",
        toml_string(&raw_url),
        toml_string(&encoded_url.replace("mysql://", "postgres://")),
        toml_string(&encoded_url),
        toml_string(&store_url),
    );
    match load::parse(&text) {
        Ok(config) => {
            show(format!("{config:?}"));
            show(serde_json::to_string(&config).unwrap());
            show(toml::to_string(&config).unwrap());
            // The same configuration with an invalid setting: the error shows the URL's key.
            let env = [(
                "DBFAILOVER_STATE__URL",
                format!("memcache://u:{password}@h"),
            )];
            show(match load::load(&text, env) {
                Ok(config) => format!("{config:?}"),
                Err(error) => format!("{error} {error:?}"),
            });
        }
        Err(error) => show(format!("{error} {error:?}")),
    }
    // A URL with a typo in its scheme, and one the TOML parser cannot read.
    for broken in [
        text.replace("postgres://app:", "postgress://app:"),
        text.replace("url = ", "url = \"\" "),
    ] {
        show(match load::parse(&broken) {
            Ok(config) => format!("{config:?}"),
            Err(error) => format!("{error} {error:?}"),
        });
    }
    shown
}

/// A password of the same length made of one character found nowhere else.
fn neutral(password: &str) -> String {
    "Q".repeat(password.chars().count())
}

fn check(password: &str) {
    let output = outputs(password);
    let baseline = outputs(&neutral(password));
    let found = leaks(password, &output, &baseline);
    assert!(
        found.is_empty(),
        "password {password:?} shows as {found:?} in:\n{output}"
    );
}

#[test]
fn every_ascii_punctuation_and_control_character_is_hidden() {
    let punctuation: String = (0u8..128)
        .map(char::from)
        .filter(|c| c.is_ascii_punctuation() || c.is_ascii_control() || *c == ' ')
        .collect();
    for chunk in punctuation.as_bytes().chunks(5) {
        let chunk: String = chunk.iter().map(|b| char::from(*b)).collect();
        check(&format!("Zq{chunk}9ж"));
        check(&format!("{chunk}{chunk}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_unicode_password_is_hidden(password in "\\PC{4,24}") {
        check(&password);
    }

    #[test]
    fn any_punctuation_heavy_password_is_hidden(
        password in "[ -/:-@\\[-`{-~\\x00-\\x1f\\x7fa-z0-9é密]{4,20}"
    ) {
        check(&password);
    }
}
