//! Text forms an operator reads or writes: masked URLs, durations in files and JSON, setting errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dbfailover_core::url::{Redactor, mask_password, mask_text};
use dbfailover_core::{ConfigError, DatabaseUrl};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[test]
fn a_password_parameter_is_masked_wherever_it_stands() {
    assert_eq!(
        mask_password("password=secret host=db"),
        "password=**** host=db"
    );
    assert_eq!(
        mask_password("host=db PASSWORD=secret"),
        "host=db PASSWORD=****"
    );
    assert_eq!(
        mask_password("postgres://h/db?password=a;b=c"),
        "postgres://h/db?password=****;b=c"
    );
    assert_eq!(
        mask_password("postgres://h/db?sslmode=x&password=abc#frag"),
        "postgres://h/db?sslmode=x&password=****"
    );
    assert_eq!(
        mask_password("postgres://h/db?password=a&password=b"),
        "postgres://h/db?password=****&password=****"
    );
}

#[test]
fn only_a_parameter_naming_a_password_with_a_value_is_masked() {
    // Any parameter whose name ends in `password` is a secret (`sslpassword`, `oldpassword`).
    assert_eq!(
        mask_password("postgres://h/db?oldpassword=abc&user=u"),
        "postgres://h/db?oldpassword=****&user=u"
    );
    assert_eq!(
        mask_password("postgres://h/db?password=&x=1"),
        "postgres://h/db?password=&x=1"
    );
    assert_eq!(mask_password("no url here"), "no url here");
}

#[test]
fn user_info_passwords_are_masked_up_to_the_end_of_each_url() {
    assert_eq!(
        mask_text("failed: postgres://a:pw@h1/db, then mysql://b:pw2@h2/db"),
        "failed: postgres://a:****@h1/db, then mysql://b:****@h2/db"
    );
    assert_eq!(
        mask_text("<postgres://a:pw@h/db>"),
        "<postgres://a:****@h/db>"
    );
}

#[test]
fn a_database_url_shows_itself_masked_everywhere_but_to_the_driver() {
    let url = DatabaseUrl::parse("MySQL://app:hunter2@db:3306/app").unwrap();
    assert_eq!(url.scheme(), "mysql");
    assert_eq!(url.expose(), "MySQL://app:hunter2@db:3306/app");
    assert_eq!(url.masked(), "MySQL://app:****@db:3306/app");
    assert_eq!(url.to_string(), "MySQL://app:****@db:3306/app");
    assert_eq!(
        format!("{url:?}"),
        "DatabaseUrl(\"MySQL://app:****@db:3306/app\")"
    );
    assert_eq!(
        serde_json::to_string(&url).unwrap(),
        "\"MySQL://app:****@db:3306/app\""
    );
    let read: DatabaseUrl = serde_json::from_str("\"postgres://a:b@h/db\"").unwrap();
    assert_eq!(read.expose(), "postgres://a:b@h/db");
    let err = serde_json::from_str::<DatabaseUrl>("\"not a url, pw:x@\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not a URL"), "{err}");
    assert!(DatabaseUrl::parse("sqlite:///tmp/a.db").is_ok());
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Timings {
    #[serde(with = "dbfailover_core::duration::human")]
    interval: Duration,
    #[serde(with = "dbfailover_core::duration::option_human", default)]
    fast: Option<Duration>,
    #[serde(with = "dbfailover_core::duration::option_millis", default)]
    latency: Option<Duration>,
}

#[test]
fn durations_are_read_as_words_or_whole_seconds_and_written_as_words() {
    let read: Timings =
        serde_json::from_str(r#"{"interval": "1m 30s", "fast": 2, "latency": 2.5}"#).unwrap();
    assert_eq!(
        read,
        Timings {
            interval: Duration::from_secs(90),
            fast: Some(Duration::from_secs(2)),
            latency: Some(Duration::from_micros(2500)),
        }
    );
    let json = serde_json::to_value(&read).unwrap();
    assert_eq!(json["interval"], "1m 30s");
    assert_eq!(json["fast"], "2s");
    assert_eq!(json["latency"], 2.5);

    let none: Timings = serde_json::from_str(r#"{"interval": 3}"#).unwrap();
    assert_eq!(
        (none.interval, none.fast, none.latency),
        (Duration::from_secs(3), None, None)
    );
    let json = serde_json::to_value(&none).unwrap();
    assert!(json["fast"].is_null());
    assert!(json["latency"].is_null());

    // TOML integers are signed.
    let read: Timings = toml::from_str("interval = 5\nfast = \"250ms\"").unwrap();
    assert_eq!(read.interval, Duration::from_secs(5));
    assert_eq!(read.fast, Some(Duration::from_millis(250)));
}

#[test]
fn a_duration_that_is_not_one_says_what_would_be() {
    let err = |json: &str| {
        serde_json::from_str::<Timings>(json)
            .unwrap_err()
            .to_string()
    };
    let negative = err(r#"{"interval": -1}"#);
    assert!(negative.contains("`-1` is negative"), "{negative}");
    let words = err(r#"{"interval": "soon"}"#);
    assert!(words.contains("`soon` is not a duration"), "{words}");
    assert!(words.contains("write e.g. \"2s\""), "{words}");
    let wrong_type = err(r#"{"interval": true}"#);
    assert!(
        wrong_type.contains("a duration such as \"2s\" or \"250ms\", or a whole number of seconds"),
        "{wrong_type}"
    );
}

#[test]
fn a_latency_that_cannot_be_one_is_unknown() {
    let read: Timings = serde_json::from_str(r#"{"interval": 1, "latency": -3}"#).unwrap();
    assert_eq!(read.latency, None);
    let read: Timings = serde_json::from_str(r#"{"interval": 1, "latency": 0}"#).unwrap();
    assert_eq!(read.latency, Some(Duration::ZERO));
    let read: Timings = serde_json::from_str(r#"{"interval": 1, "latency": 1500}"#).unwrap();
    assert_eq!(read.latency, Some(Duration::from_millis(1500)));
}

#[test]
fn a_setting_error_names_the_key_the_value_and_the_rule() {
    let err = ConfigError::invalid("health_check.failure_threshold", 0, "must be at least 1");
    assert_eq!(err.key(), "health_check.failure_threshold");
    assert_eq!(
        err.to_string(),
        "invalid setting `health_check.failure_threshold` = `0`: must be at least 1"
    );
}

/// Without `//`, a password may stand after a scheme (`https:user:secret@host`) or be all there is
/// before the `@` of a DSN pasted where a URL belongs (`user:secret@tcp(host)/db`, which reads as the
/// scheme `user`): masked either way, from the first `:` to the `@` (the user name too).
#[test]
fn a_password_without_slashes_is_masked_too() {
    let cases = [
        ("https:user:S3cret@host", "https:****@host"),
        ("https::S3cret@host", "https:****@host"),
        ("ws:/:S3cret@h", "ws:****@h"),
        ("ws:///u:S3cret@h", "ws:///u:****@h"),
        ("app:S3cret@tcp(db:3306)/app", "app:****@tcp(db:3306)/app"),
        (":S3cret@host", ":****@host"),
        ("1x:S3cret@h", "1x:****@h"),
        ("x1:u:S3cret@h?password=S3cret", "x1:****@h?password=****"),
        ("redis://S3cret@h", "redis://S3cret@h"),
    ];
    for (url, masked) in cases {
        assert_eq!(mask_password(url), masked, "{url}");
    }
}

/// The secrets a URL holds, for redaction by value, are read by the same structure as the masking.
#[test]
fn a_url_s_secrets_are_read_as_the_masking_reads_them() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "postgres://u:S3cret@h/db?sslpassword=K3y&x=1",
            &["S3cret", "K3y"],
        ),
        ("https:user:S3cret@host", &["user:S3cret", "S3cret"]),
        ("app:S3cret@tcp(db:3306)/app", &["S3cret"]),
        ("redis://:S3cret@h:6379/0", &["S3cret"]),
        ("redis://S3cret@h", &[]),
        ("postgres://h/db?password=&token=T0ken", &["T0ken"]),
    ];
    for (url, secrets) in cases {
        let parsed = DatabaseUrl::parse(url).unwrap();
        assert_eq!(parsed.secrets(), secrets, "{url}");
    }
    let mut redactor = dbfailover_core::url::Redactor::new();
    redactor.add_url(&DatabaseUrl::parse("app:S3cret@tcp(db:3306)/app").unwrap());
    assert_eq!(
        redactor.redact("Access denied (using password: S3cret)"),
        "Access denied (using password: ****)"
    );
}

/// Every parameter that names a secret is masked, not only those ending in `password`.
#[test]
fn every_secret_naming_parameter_is_masked() {
    assert_eq!(
        mask_password("postgres://h/db?pwd=S3cret&token=T0ken;pass=P4ss&secret=X&auth=A&x=1"),
        "postgres://h/db?pwd=****&token=****;pass=****&secret=****&auth=****&x=1"
    );
    assert_eq!(
        mask_password("mysql://h/db?sslkey=K&passfile=F#pwd=fragment"),
        "mysql://h/db?sslkey=****&passfile=****#pwd=****"
    );
    assert_eq!(
        mask_text("at the start: see postgres://h/db?token=T0ken"),
        "at the start: see postgres://h/db?token=****"
    );
}

/// Free text that is nothing but a URL, or starts with one.
#[test]
fn a_text_that_starts_with_a_url_is_masked() {
    assert_eq!(
        mask_text("postgres://u:S3cret@h/db"),
        "postgres://u:****@h/db"
    );
    assert_eq!(
        mask_text("redis://:S3cret@h:6379/0 refused"),
        "redis://:****@h:6379/0 refused"
    );
}

/// A redactor shows how many forms of secrets it knows, never one of them; a secret shorter than
/// four characters is not searched for by value (it would blank out ordinary words).
#[test]
fn a_redactor_shows_no_secret_and_leaves_short_ones_to_the_url_masking() {
    let mut redactor = dbfailover_core::url::Redactor::new();
    redactor.add_secret("S3cret");
    redactor.add_secret("S3cret");
    let shown = format!("{redactor:?}");
    assert!(shown.starts_with("Redactor("), "{shown}");
    assert!(!shown.contains("S3cret"), "{shown}");
    let mut short = dbfailover_core::url::Redactor::new();
    short.add_secret("ab");
    assert_eq!(format!("{short:?}"), "Redactor(0 secrets)");
    assert_eq!(short.redact("tab stop, ab"), "tab stop, ab");
    assert_eq!(
        short.redact("redis://:ab@h refused"),
        "redis://:****@h refused"
    );
    assert_eq!(redactor.redact("pw S3cret, S3cret"), "pw ****, ****");
}

// ---------------------------------------------------------------------------------------------
// Inputs an attacker or a careless operator would try (each was shown in part before).

#[test]
fn a_query_password_holding_an_at_sign_is_masked_whole() {
    for (url, secret) in [
        ("sqlite:data.db?password=p@ssw0rd", "ssw0rd"),
        ("https:h/db?password=p@ssw0rd", "ssw0rd"),
        ("postgres://h:5432/db?password=p@ssw0rd", "ssw0rd"),
        ("postgres://u:pw@h/db?sslpassword=p@ssw0rd", "ssw0rd"),
        ("postgres://u:pw@h/db?token=tok@abcd1234", "abcd1234"),
        (
            "postgres://h/db?token=longtoken123&password=p@ss",
            "longtoken123",
        ),
    ] {
        let shown = mask_password(url);
        assert!(!shown.contains(secret), "{url:?} shown as {shown:?}");
        let shown = mask_text(&format!("connect to {url} failed"));
        assert!(!shown.contains(secret), "{url:?} shown as {shown:?}");
        let parsed = DatabaseUrl::parse(url).unwrap();
        assert!(!parsed.to_string().contains(secret), "{parsed}");
    }
}

#[test]
fn the_redactor_knows_a_password_when_the_query_holds_an_at_sign() {
    for (url, password) in [
        (
            "postgres://u:longsecret@h/db?application_name=me@host",
            "longsecret",
        ),
        (
            "postgres://u:pw@h/db?application_name=a@b&password=secretpw",
            "secretpw",
        ),
        ("postgres://h/db?password=a@bcdefg", "a@bcdefg"),
        ("postgres://h/db?token=ab@cdefgh", "ab@cdefgh"),
        ("sqlite:data.db?password=p@ssw0rd", "p@ssw0rd"),
    ] {
        let mut redactor = Redactor::new();
        redactor.add_url(&DatabaseUrl::parse(url).unwrap());
        let out = redactor.redact(&format!("auth failed for password {password}"));
        assert!(!out.contains(password), "{url:?}: {out:?}");
    }
}

#[test]
fn a_url_after_a_colon_or_other_punctuation_in_text_is_masked() {
    for text in [
        "jdbc:postgresql://u:secretpw@h/db",
        "error:postgres://u:secretpw@h/db",
        "url->postgres://u:secretpw@h/db",
        "url|postgres://u:secretpw@h/db",
        "«postgres://u:secretpw@h/db»",
        "connecting ...postgres://u:secretpw@h/db",
        "postgres://u:pw:a://secretpw@h/db",
    ] {
        let shown = mask_text(text);
        assert!(!shown.contains("secretpw"), "{text:?} shown as {shown:?}");
    }
}

#[test]
fn a_dsn_password_holding_a_colon_is_masked_whole() {
    let url = "app:secret:more@tcp(db:3306)/app";
    assert_eq!(mask_password(url), "app:****@tcp(db:3306)/app");
    let secrets = DatabaseUrl::parse(url).unwrap().secrets();
    assert_eq!(secrets[0], "secret:more");
}

#[test]
fn a_password_holding_a_scheme_separator_is_masked() {
    for url in [
        "https:user:a://secretpw@h",
        "https:user:secretpw@h/?next=http://x",
        "app:secretpw@tcp(h:3306)/db?loc=http://x",
    ] {
        let shown = mask_password(url);
        assert!(!shown.contains("secretpw"), "{url:?} shown as {shown:?}");
        if let Ok(parsed) = DatabaseUrl::parse(url) {
            assert!(!parsed.to_string().contains("secretpw"), "{parsed}");
            assert!(parsed.secrets().iter().any(|s| s.contains("secretpw")));
        }
    }
}

#[test]
fn key_value_passwords_are_masked() {
    for (text, secret) in [
        ("host=h password = secretpw dbname=x", "secretpw"),
        ("host=h password='my secret pw' dbname=x", "secret pw"),
        ("host=h password=\"my secret pw\" dbname=x", "secret pw"),
        ("host=h password=****hunter2 dbname=x", "hunter2"),
        ("Server=h;Uid=u;Pwd=secretpw;", "secretpw"),
        ("Server=h;Password={a;secretpw};", "secretpw"),
        ("user=u passwd=secretpw", "secretpw"),
    ] {
        for shown in [mask_text(text), mask_password(text)] {
            assert!(!shown.contains(secret), "{text:?} shown as {shown:?}");
        }
    }
    assert_eq!(
        mask_text("host=h password='a b' dbname=x"),
        "host=h password=**** dbname=x"
    );
}

#[test]
fn the_redactor_removes_the_forms_a_driver_may_echo() {
    let url = "postgres://app:my secret-pw:x@db/app";
    let mut redactor = Redactor::new();
    redactor.add_url(&DatabaseUrl::parse(url).unwrap());
    for echoed in [
        "my secret-pw:x",
        "my%20secret-pw%3Ax",
        "my%20secret%2dpw%3ax",
        "my+secret%2Dpw%3Ax",
        "\"my secret-pw:x\"",
    ] {
        let out = redactor.redact(&format!("auth failed, password {echoed}"));
        assert!(!out.contains("secret"), "{echoed}: {out}");
    }
}

#[test]
fn overlapping_secrets_leave_no_fragment() {
    let mut redactor = Redactor::new();
    redactor.add_secret("abcdXYZW");
    redactor.add_secret("XYZW1234");
    assert_eq!(redactor.redact("got abcdXYZW1234!"), "got ****!");
}

#[test]
fn more_parameter_names_are_secrets() {
    for key in [
        "passwd",
        "access_token",
        "client_secret",
        "api_key",
        "apikey",
        "password ",
    ] {
        let url = format!("postgres://h/db?{key}=S3cretValue&x=1");
        let shown = mask_password(&url);
        assert!(!shown.contains("S3cretValue"), "{shown}");
    }
}

#[test]
fn the_redactor_knows_the_password_of_a_jdbc_url() {
    let url = DatabaseUrl::parse("jdbc:postgresql://app:Secr3tPw@db/app").unwrap();
    assert_eq!(url.to_string(), "jdbc:postgresql://app:****@db/app");
    let mut redactor = Redactor::new();
    redactor.add_url(&url);
    let out = redactor.redact("FATAL: password authentication failed (password Secr3tPw)");
    assert!(!out.contains("Secr3tPw"), "{out}");
}

#[test]
fn a_password_word_is_masked_whole_when_a_colon_before_it_and_an_at_sign_in_it() {
    for text in [
        "jdbc:sqlserver://db.example:1433;user=app;password=P@ssw0rd;encrypt=true",
        "Server=tcp:db.example.net,1433;Database=app;User ID=app;Password=P@ssw0rd;",
        "db:1433;user=app;password=P@ssw0rd;encrypt=true",
        "jdbc:postgresql://db/app?sslmode=require#password=P@ssw0rd",
        "jdbc:mysql://db:3306/app;password=P@ssw0rd",
    ] {
        for shown in [
            mask_password(text),
            mask_text(text),
            mask_text(&format!("connect failed: {text}")),
        ] {
            assert!(!shown.contains("ssw0rd"), "{text}: {shown}");
        }
        match DatabaseUrl::parse(text) {
            Ok(url) => {
                assert!(!format!("{url} {url:?}").contains("ssw0rd"), "{text}");
                assert!(url.secrets().iter().any(|s| s == "P@ssw0rd"), "{text}");
            }
            Err(error) => assert!(!error.contains("ssw0rd"), "{error}"),
        }
    }
}

#[test]
fn escaped_quotes_and_braces_do_not_end_a_password_value() {
    for (text, secret) in [
        ("host=db password='it\\'s a secret' dbname=app", "a secret"),
        ("host=db password='it''s a secret' dbname=app", "a secret"),
        (
            "Driver={ODBC Driver 18};Uid=app;Pwd={ab}}cd;ef};Database=app",
            "cd;ef",
        ),
        ("host=db password=abc#def dbname=app", "def"),
    ] {
        let shown = mask_text(text);
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.ends_with("app"), "the rest is kept: {shown}");
    }
    // An unterminated quote masks one word, not the rest of the text.
    assert_eq!(
        mask_text("password = \"unterminated\nnext line"),
        "password = ****\nnext line"
    );
}

#[test]
fn words_that_only_look_like_a_password_setting_are_kept() {
    for text in [
        "Access denied for user 'app'@'10.0.0.5' (using password: YES)",
        "if pwd == expected",
        "the password was changed",
        "cwd=/tmp pwdx=1",
        "GET /a?b=c@d HTTP/1.1",
    ] {
        assert_eq!(mask_text(text), text);
    }
    assert_eq!(
        mask_text(r#"{"user":"app","password":"S3cret"}"#),
        r#"{"user":"app","password":****}"#
    );
}

#[test]
fn the_redactor_knows_form_and_path_encodings_and_overlaps() {
    let mut redactor = Redactor::new();
    redactor.add_secret("Tr0ub-4dor!x y~z");
    for echoed in [
        url::form_urlencoded::byte_serialize("Tr0ub-4dor!x y~z".as_bytes()).collect::<String>(),
        "Tr0ub-4dor%21x%20y~z".to_owned(),
    ] {
        let out = redactor.redact(&format!("echo {echoed} end"));
        assert!(!out.contains("Tr0ub"), "{out}");
    }
    let mut redactor = Redactor::new();
    redactor.add_secret("abcXabc");
    assert_eq!(redactor.redact("got abcXabcXabc."), "got ****.");
}

#[test]
fn a_scheme_glued_inside_a_password_does_not_cut_the_url_in_text() {
    for text in [
        "postgres://app:Pa,x://Secret99@db/app",
        "see jdbc:postgresql://app:Secret99x://@db/app now",
    ] {
        let shown = mask_text(text);
        assert!(!shown.contains("Secret99"), "{text}: {shown}");
    }
}

#[test]
fn a_password_value_starting_with_equals_is_masked() {
    assert_eq!(
        mask_password("host=db user=u password==Qz7Kx9Wv dbname=app"),
        "host=db user=u password=**** dbname=app"
    );
    assert_eq!(
        mask_password("Server=db;User Id=u;Password==Qz7Kx9Wv;"),
        "Server=db;User Id=u;Password=****;"
    );
    assert!(!mask_text("error: host=db password==Qz7Kx9Wv: refused").contains("Qz7K"));
}

#[test]
fn a_password_value_whose_leading_quotes_close_early_is_masked_whole() {
    for text in [
        "host=db user=u password=''Qz7Kx9Wv dbname=app",
        "host=db user=u password=\"Qz7K\"x9Wv dbname=app",
    ] {
        let shown = mask_password(text);
        assert!(
            !shown.contains("Qz7K") && !shown.contains("x9Wv"),
            "{shown}"
        );
        assert!(shown.ends_with(" dbname=app"), "{shown}");
    }
    for text in [
        "error connecting to postgres://user@db/app?password=\"Qz7K\"x9Wv: refused",
        "error connecting to postgres://user@db/app?password=''Qz7Kx9Wv: refused",
        "error connecting to jdbc:postgresql://db/app?user=u&password=\"\"Qz7Kx9Wv: refused",
    ] {
        let shown = mask_text(text);
        assert!(
            !shown.contains("Qz7K") && !shown.contains("x9Wv"),
            "{shown}"
        );
    }
    assert_eq!(
        mask_text("PWD=/home/app OLDPWD=/tmp SHELL=/bin/bash"),
        "PWD=**** OLDPWD=/tmp SHELL=/bin/bash"
    );
}

/// Only `jdbc:` wraps a URL: in another `scheme:x://` the `x://` belongs to the password.
#[test]
fn only_jdbc_wraps_a_url() {
    assert_eq!(
        mask_password("jdbc:mysql://app:S3cret@db/app"),
        "jdbc:mysql://app:****@db/app"
    );
    assert_eq!(mask_password("app:s3://bucketpw@h/db"), "app:****@h/db");
}

/// A scheme starts with a letter: `1x://` is no scheme, so no authority, and everything from the
/// first `:` to the `@` is taken for the password.
#[test]
fn a_scheme_that_does_not_start_with_a_letter_makes_no_authority() {
    assert_eq!(mask_password("1x://u:S3cret@h/db"), "1x:****@h/db");
    assert_eq!(mask_password("9p://S3cret@h"), "9p:****@h");
    assert_eq!(mask_password("x9://S3cret@h"), "x9://S3cret@h");
}

/// In free text, a query secret ends with the URL's word; what follows is left as written.
#[test]
fn a_query_secret_in_text_ends_with_the_url_s_word() {
    assert_eq!(
        mask_text("connect postgres://h/db?password=S3cret refused, retrying"),
        "connect postgres://h/db?password=**** refused, retrying"
    );
}

/// A URL after `=` (a token start, not a space) whose password holds a `scheme://` glued to a
/// character that starts no token: read whole by the token reading.
#[test]
fn a_url_after_an_equals_sign_keeps_a_glued_scheme_in_its_password() {
    let shown = mask_text("url=postgres://u:p_x://S3cret@h/db");
    assert!(!shown.contains("S3cret"), "{shown}");
    assert_eq!(mask_text(".postgres://u:S3cret@h"), ".postgres://u:****@h");
}
