//! Reads the configuration file and the environment, and hands both to the one parser
//! (`dbfailover::core::load`).

use crate::error::CliError;
use dbfailover::Config;
use dbfailover::core::load::{self, EnvOverride};
use dbfailover::core::url::mask_text;
use std::path::{Path, PathBuf};

/// The file read when `--config` is not given.
pub(crate) const DEFAULT_FILE: &str = "dbfailover.toml";

/// The variable naming the file when `--config` is not given.
pub(crate) const CONFIG_VARIABLE: &str = "DBFAILOVER_CONFIG";

/// Which file to read: `--config`, else `DBFAILOVER_CONFIG`, else `dbfailover.toml` (which may be
/// missing: then the environment alone is the configuration).
#[derive(Debug, Clone)]
pub(crate) struct ConfigSource {
    /// The file.
    pub(crate) path: PathBuf,
    /// Whether the user named it (a named file must exist).
    pub(crate) explicit: bool,
}

impl ConfigSource {
    /// From the `--config` option and the environment.
    pub(crate) fn new(option: Option<PathBuf>) -> Self {
        match option {
            Some(path) => Self {
                path,
                explicit: true,
            },
            None => match std::env::var_os(CONFIG_VARIABLE) {
                Some(path) if !path.is_empty() => Self {
                    path: PathBuf::from(path),
                    explicit: true,
                },
                _ => Self {
                    path: PathBuf::from(DEFAULT_FILE),
                    explicit: false,
                },
            },
        }
    }
}

/// A loaded configuration and where it came from.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The validated configuration.
    pub(crate) config: Config,
    /// The file read, `None` when there was none and the environment alone configured.
    pub(crate) file: Option<PathBuf>,
    /// The settings taken from `DBFAILOVER_*` variables.
    pub(crate) overrides: Vec<EnvOverride>,
}

/// Reads the file (when there is one) and the process's variables, and validates the result.
pub(crate) fn load(source: &ConfigSource) -> Result<Loaded, CliError> {
    load_with_env(source, std::env::vars().collect())
}

fn load_with_env(source: &ConfigSource, env: Vec<(String, String)>) -> Result<Loaded, CliError> {
    let shown = source.path.display().to_string();
    let (text, file) = match std::fs::read_to_string(&source.path) {
        Ok(text) => (text, Some(source.path.clone())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !source.explicit => {
            (String::new(), None)
        }
        Err(error) => {
            return Err(CliError::Config(format!(
                "cannot read configuration file {shown}: {error}"
            )));
        }
    };
    let pairs = || env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for variable in load::ignored_variables(pairs()) {
        crate::output::print_error(&format!(
            "warning: {variable} names no setting (the levels of a setting are separated by `__`, as in \
             DBFAILOVER_HEALTH_CHECK__TIMEOUT); ignored"
        ));
    }
    let overrides = load::env_overrides(pairs());
    let config = load::load(&text, pairs()).map_err(|error| {
        let place = if file.is_some() {
            shown.clone()
        } else {
            format!("configuration (no {shown}; from DBFAILOVER_* variables only)")
        };
        CliError::Config(mask_text(&format!("{place}: {error}")))
    })?;
    crate::output::remember_secrets(&config);
    Ok(Loaded {
        config,
        file,
        overrides,
    })
}

/// The configured connection names, comma separated, for messages.
pub(crate) fn configured_names(config: &Config) -> String {
    let names: Vec<&str> = config.databases.keys().map(String::as_str).collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Whether `path` exists (for `init`).
pub(crate) fn exists(path: &Path) -> bool {
    path.try_exists().unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, explicit: bool) -> ConfigSource {
        ConfigSource {
            path: PathBuf::from(path),
            explicit,
        }
    }

    #[test]
    fn a_named_file_must_exist_and_a_default_one_may_be_missing() {
        let missing = "/nonexistent/dbfailover.toml";
        let error = load_with_env(&source(missing, true), Vec::new()).err();
        assert!(
            matches!(&error, Some(CliError::Config(m)) if m.contains("cannot read")),
            "{error:?}"
        );
        let env = vec![
            ("DBFAILOVER_FAILOVER__PRIMARY".to_owned(), "a".to_owned()),
            ("DBFAILOVER_FAILOVER__FAILOVER".to_owned(), "b".to_owned()),
            (
                "DBFAILOVER_DATABASES__A__URL".to_owned(),
                "sqlite:///tmp/a.db".to_owned(),
            ),
            (
                "DBFAILOVER_DATABASES__B__URL".to_owned(),
                "sqlite:///tmp/b.db".to_owned(),
            ),
        ];
        let loaded = load_with_env(&source(missing, false), env);
        assert!(
            matches!(&loaded, Ok(l) if l.file.is_none() && l.overrides.len() == 4),
            "{loaded:?}"
        );
    }
}
