//! The configuration loader (`load::load`: TOML text and `DBFAILOVER_*` variables): no input
//! panics; loading is deterministic; a configuration that loads shows none of its URLs' passwords
//! (`Debug`, serialized to TOML and JSON).
//!
//! Input: the TOML text, then a NUL byte, then `NAME=VALUE` lines (the environment).
#![no_main]

use dbfailover_core::load::{env_overrides, ignored_variables, load};
use dbfailover_core::{Config, DatabaseUrl};
use dbfailover_fuzz::{MASK, assert_hidden};
use libfuzzer_sys::fuzz_target;

fn urls(config: &mut Config) -> Vec<&mut DatabaseUrl> {
    let mut urls: Vec<&mut DatabaseUrl> = config.state.url.iter_mut().collect();
    for database in config.databases.values_mut() {
        urls.push(&mut database.url);
        urls.extend(database.monitor_url.iter_mut());
    }
    urls
}

/// Every form of `config` a user can see.
fn shown(config: &Config) -> String {
    format!(
        "{config:?}\n{}\n{}",
        toml::to_string(config).unwrap_or_default(),
        serde_json::to_string(config).unwrap_or_default()
    )
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (text, env_text) = input.split_once('\0').unwrap_or((&input, ""));
    let env: Vec<(String, String)> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = env_overrides(env.iter().cloned());
    let _ = ignored_variables(env.iter().cloned());
    let loaded = load(text, env.iter().cloned());
    let again = load(text, env.iter().cloned());
    match (&loaded, &again) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("two loads differ: {loaded:?} / {again:?}"),
    }
    match loaded {
        Err(error) => {
            let _ = error.to_string();
            let _ = error.key();
        }
        Ok(mut config) => {
            let shown = shown(&config);
            // The same configuration with every password replaced by the mask: what may be shown.
            let mut passwords = Vec::new();
            for url in urls(&mut config) {
                let Ok(mut parsed) = url::Url::parse(url.expose()) else {
                    panic!("{url:?} was accepted but does not parse");
                };
                let Some(password) = parsed.password().map(str::to_owned) else {
                    continue;
                };
                passwords.push(password);
                if parsed.set_password(Some(MASK)).is_ok()
                    && let Ok(masked) = DatabaseUrl::parse(parsed.as_str())
                {
                    *url = masked;
                }
            }
            let allowed = self::shown(&config);
            for password in passwords {
                assert_hidden(&password, &allowed, &shown, "the loaded configuration");
            }
        }
    }
});
