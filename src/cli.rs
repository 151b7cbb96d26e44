//! Command line: `serve` (the default), `migrate`, `openapi` and the `keys` admin commands.

pub mod keys;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "phone-manager", version, about = "Phone Manager backend: the HTTP API and its admin tools")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP service (the default when no command is given).
    Serve,
    /// Applies pending database migrations and exits.
    Migrate,
    /// Prints the OpenAPI v1 document (JSON) and exits; needs no database.
    Openapi,
    /// Manages API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Creates a key and prints it once: store it, it cannot be shown again.
    Create {
        /// Who or what the key is for, e.g. "Android app".
        #[arg(long)]
        name: String,
        /// Allows the key to call /api/v1/admin/* (a `full` key only).
        #[arg(long)]
        admin: bool,
        /// `full`: every operation (tools, servers, admins). `app`: the key an app build ships;
        /// it registers devices and otherwise acts only for the device whose token it sends.
        #[arg(long, value_enum, default_value_t = ScopeArg::Full)]
        scope: ScopeArg,
        /// Makes the key stop working after this many days (1–3650).
        #[arg(long, value_name = "N")]
        expires_in_days: Option<u32>,
        /// Prints one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lists every key (never the key or its hash).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Deactivates a key and prints a new one with the same name and role.
    Rotate {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        json: bool,
    },
    /// Deactivates a key; running it again is harmless.
    Deactivate {
        #[command(flatten)]
        key: KeyArg,
        #[arg(long)]
        json: bool,
    },
}

/// A key's scope, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScopeArg {
    Full,
    App,
}

/// Which key: by the prefix `keys list` shows (at least 4 characters) or by id.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct KeyArg {
    /// The key's prefix, e.g. pm_aBcDe.
    #[arg(long)]
    pub prefix: Option<String>,
    /// The key's id.
    #[arg(long)]
    pub id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rotate_needs_exactly_one_selector() {
        assert!(Cli::try_parse_from(["phone-manager", "keys", "rotate"]).is_err());
        assert!(
            Cli::try_parse_from(["phone-manager", "keys", "rotate", "--prefix", "pm_a", "--id", "1"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["phone-manager", "keys", "rotate", "--prefix", "pm_abcde"]).is_ok());
    }
}
