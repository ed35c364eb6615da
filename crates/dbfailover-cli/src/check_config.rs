//! `dbfailover check-config`: validates the configuration and prints the effective one.

use crate::config_file::{self, ConfigSource};
use crate::error::CliError;
use crate::output;

/// Options of `dbfailover check-config`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckConfigArgs {
    /// Print the effective configuration as JSON instead of TOML.
    #[arg(long)]
    json: bool,
}

/// Loads, validates, and prints the effective configuration with every password masked.
pub(crate) fn run(source: &ConfigSource, args: CheckConfigArgs) -> Result<(), CliError> {
    let loaded = config_file::load(source)?;
    // Every check a start makes, short of starting: a probe for each database (the scheme's driver
    // compiled in, the URL accepted by it) and the store `[state]` names.
    dbfailover::builder(loaded.config.clone())
        .map_err(|error| CliError::Config(error.to_string()))?
        .build()
        .map_err(|error| CliError::Config(error.to_string()))?;
    if args.json {
        output::print_line(&output::json_line(&loaded.config));
        return Ok(());
    }
    let from = match &loaded.file {
        Some(path) => path.display().to_string(),
        None => "no file".to_owned(),
    };
    output::print_line(&format!("# configuration is valid ({from})"));
    for o in &loaded.overrides {
        output::print_line(&format!("# {} set by {}", o.key(), o.variable));
    }
    let text = toml::to_string(&loaded.config)
        .map_err(|error| CliError::Failed(format!("cannot show the configuration: {error}")))?;
    for line in text.lines() {
        output::print_line(line);
    }
    Ok(())
}
