//! No password shows in anything the command prints, whatever characters it holds: every ASCII
//! punctuation and control character, spaces, quotes and non-ASCII text, in the databases' URLs (raw
//! and percent-encoded) and in the Redis store's URL. `check-config` (text and JSON), `health-check`
//! (lines and JSON) and `status --json` run with the trace log on; their stdout and stderr are
//! searched for any fragment of 4 characters or more of the password, raw, percent-encoded or escaped.
//! Nothing listens at the URLs' addresses, so each database check and store call fails and its error
//! is printed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{run, write_config};
use std::net::TcpListener;

/// A loopback port where nothing listens.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn encoded(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Every fragment of 4 characters or more of `password`, in every form an output could hold it.
fn fragments(password: &str) -> Vec<String> {
    let chars: Vec<char> = password.chars().collect();
    let mut out = Vec::new();
    for len in 4..=chars.len() {
        for window in chars.windows(len) {
            let raw: String = window.iter().collect();
            let json = serde_json::to_string(&raw).expect("a string serializes");
            let quoted = format!("{raw:?}");
            out.extend([
                encoded(&raw),
                json[1..json.len() - 1].to_owned(),
                quoted[1..quoted.len() - 1].to_owned(),
                raw,
            ]);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Everything the commands print for a configuration whose passwords are `password`: first with
/// the password written raw in the primary's URL (a URL that may not parse: the error is printed),
/// then percent-encoded everywhere (a valid configuration: every command runs).
fn everything_printed(password: &str, db_port: u16, redis_port: u16) -> String {
    let mut printed = String::new();
    for raw_primary in [true, false] {
        let primary_password = if raw_primary {
            password.to_owned()
        } else {
            encoded(password)
        };
        let text = format!(
            "[failover]\nprimary = \"main\"\nfailover = \"standby\"\n\
             [databases.main]\nurl = {}\n\
             [databases.standby]\nurl = {}\n\
             [health_check]\ntimeout = \"300ms\"\ninterval = \"100ms\"\n\
             [state]\nstore = \"redis\"\nurl = {}\ntimeout = \"200ms\"\n",
            toml_string(&format!(
                "postgres://app:{primary_password}@127.0.0.1:{db_port}/app"
            )),
            toml_string(&format!(
                "mysql://app:{}@127.0.0.1:{db_port}/app",
                encoded(password)
            )),
            toml_string(&format!(
                "redis://:{}@127.0.0.1:{redis_port}/0",
                encoded(password)
            )),
        );
        let (dir, _) = write_config(&text);
        for args in [
            &["check-config"][..],
            &["check-config", "--json"],
            &["health-check"],
            &["health-check", "--json", "--dispatch-events"],
            &["status", "--json"],
        ] {
            let (output, _) = run(dir.path(), args, &[("DBFAILOVER_LOG", "trace")]);
            printed.push_str(&String::from_utf8_lossy(&output.stdout));
            printed.push_str(&String::from_utf8_lossy(&output.stderr));
        }
    }
    printed
}

#[test]
fn no_output_shows_a_password_whatever_characters_it_holds() {
    let db_port = closed_port();
    let redis_port = closed_port();
    let specials: Vec<char> = (0u8..128)
        .map(char::from)
        .filter(|c| c.is_ascii_punctuation() || c.is_ascii_control() || *c == ' ')
        .filter(|c| *c != '\0')
        .collect();
    let mut passwords: Vec<String> = specials
        .chunks(specials.len().div_ceil(4))
        .map(|chunk| format!("Zq{}ж9 密码", chunk.iter().collect::<String>()))
        .collect();
    passwords.push("correct horse \"battery\" <staple>".to_owned());
    for password in passwords {
        let printed = everything_printed(&password, db_port, redis_port);
        let baseline =
            everything_printed(&"Q".repeat(password.chars().count()), db_port, redis_port);
        assert!(
            printed.contains("Checking health of connection: main"),
            "the commands ran: {printed}"
        );
        let leaks: Vec<String> = fragments(&password)
            .into_iter()
            .filter(|f| printed.matches(f.as_str()).count() > baseline.matches(f.as_str()).count())
            .collect();
        assert!(
            leaks.is_empty(),
            "password {password:?} shows as {leaks:?} in:\n{printed}"
        );
    }
}
