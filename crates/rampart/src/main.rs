//! `rampart`: run a gateway, check configuration files, show a running gateway's status, reload it;
//! connect to a gateway as a remote-access client (`rampart client`).
//!
//! Exit codes: 0 success, 1 runtime failure (the gateway stopped on an error, no status socket),
//! 2 invalid configuration or usage.

mod check_config;
mod cli;
mod client;
mod cluster_cmd;
mod conn_cmd;
mod gateway_cmd;
mod lab_cmd;
mod logging;
mod ls_view;
mod mep_cmd;
mod pki_cmd;
mod ra_cmd;
mod reload_cmd;
mod status_cmd;
mod status_view;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, GatewayCommand};

/// Exit code for a failure at run time.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code for invalid configuration or usage.
pub(crate) const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Gateway {
            command: GatewayCommand::Run(args),
        } => gateway_cmd::run(args),
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Status(args) => status_cmd::run(&args),
        Command::Pki { command } => pki_cmd::run(command),
        Command::Conn(args) => conn_cmd::run(&args),
        Command::Cluster(args) => cluster_cmd::run(&args),
        Command::Mep(args) => mep_cmd::run(&args),
        Command::Client(args) => client::run(args),
        Command::Ra(args) => ra_cmd::run(&args),
        Command::Reload(args) => reload_cmd::run(&args),
        Command::Lab(args) => lab_cmd::run(&args),
    }
}
