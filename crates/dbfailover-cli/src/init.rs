//! `dbfailover init [PATH]`: writes a commented starter configuration.

use crate::config_file::{self, DEFAULT_FILE};
use crate::error::CliError;
use crate::output;
use std::path::PathBuf;

/// The starter configuration `init` writes.
pub(crate) const STARTER: &str = include_str!("starter.toml");

/// Options of `dbfailover init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Where to write it.
    #[arg(default_value = DEFAULT_FILE)]
    path: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    force: bool,
}

/// Writes the starter file, refusing to overwrite one unless `--force`.
pub(crate) fn run(args: InitArgs) -> Result<(), CliError> {
    let shown = args.path.display();
    if !args.force && config_file::exists(&args.path) {
        return Err(CliError::Failed(format!(
            "{shown} already exists; pass --force to overwrite it"
        )));
    }
    std::fs::write(&args.path, STARTER)
        .map_err(|error| CliError::Failed(format!("cannot write {shown}: {error}")))?;
    output::print_line(&format!(
        "wrote {shown}: edit the [databases] URLs, then run `dbfailover check-config`"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_configuration_is_valid() {
        let config = dbfailover::core::load::parse(STARTER).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.failover.primary, "main");
        assert_eq!(config.failover.failover.names(), ["standby"]);
    }
}
