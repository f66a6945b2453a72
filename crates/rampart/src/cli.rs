//! The command line, declared with clap's derive.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "rampart", version, about = "Rampart IKEv2/ESP VPN gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway.
    Gateway {
        #[command(subcommand)]
        command: GatewayCommand,
    },
    /// Validate configuration files and print every error found.
    CheckConfig(CheckConfigArgs),
    /// Show the peers and tunnels of a running gateway.
    Status(StatusArgs),
    /// Show the connection table and inspection counters of a running gateway.
    Conn(ConnArgs),
    /// Re-read a running gateway's configuration file and apply it without a restart.
    Reload(ReloadArgs),
    /// Run simulated networks with real gateway engines (no root needed); no argument: a showcase.
    Lab(LabArgs),
    /// A small CA: create it, issue gateway and client certificates, list, revoke.
    Pki {
        #[command(subcommand)]
        command: crate::pki_cmd::PkiCommand,
    },
}

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: Option<LabCommand>,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// List the built-in scenarios.
    List,
    /// Run a built-in scenario by name, or a scenario file.
    Run {
        /// Scenario name (see `rampart lab list`) or path to a scenario TOML file.
        #[arg(value_name = "NAME|FILE")]
        scenario: String,
        /// Seed of the run (default: the scenario's own); the same seed gives the same run.
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run the gateway described by a configuration file until SIGINT or SIGTERM.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The gateway's configuration file (TOML).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Lowest level of the messages logged; the RAMPART_LOG environment variable (a tracing
    /// filter such as `info,rampart_ike=debug`) overrides it.
    #[arg(long, value_enum, default_value_t = LogLevel::Info, value_name = "LEVEL")]
    pub log_level: LogLevel,
    /// Log line format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Configuration files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConnArgs {
    #[command(subcommand)]
    pub command: ConnCommand,
    /// Read the status socket path from this configuration file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        conflicts_with = "socket",
        global = true
    )]
    pub config: Option<PathBuf>,
    /// Connect to this status socket (default: the only socket in /run/rampart).
    #[arg(long, short, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ConnCommand {
    /// The tracked connections: state, age, timeout, NAT, accepting rule.
    List,
    /// Counters: accepted, dropped by rule, dropped out of state, table full, NAT exhausted.
    Stats,
}

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The new configuration. It is checked here first (the same messages as `check-config`);
    /// then the gateway whose `status_socket` it names reads and applies it.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// Print the gateway's reload report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Read the status socket path from this configuration file.
    #[arg(long, short, value_name = "FILE", conflicts_with = "socket")]
    pub config: Option<PathBuf>,
    /// Connect to this status socket. Without --config or --socket, the only socket in
    /// /run/rampart is used.
    #[arg(long, short, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Print the status document as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_and_socket_exclude_each_other() {
        let r = Cli::try_parse_from(["rampart", "status", "--config", "a", "--socket", "b"]);
        assert!(r.is_err());
        let r = Cli::try_parse_from(["rampart", "status", "--socket", "b", "--json"]);
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn run_defaults() {
        let cli =
            Cli::try_parse_from(["rampart", "gateway", "run", "--config", "gw.toml"]).unwrap();
        match cli.command {
            Command::Gateway {
                command: GatewayCommand::Run(a),
            } => {
                assert_eq!(a.log_level, LogLevel::Info);
                assert_eq!(a.log_format, LogFormat::Text);
            }
            other => panic!("{other:?}"),
        }
    }
}
