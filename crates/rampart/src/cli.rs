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
    /// Show and steer the high-availability cluster of a running gateway.
    Cluster(ClusterArgs),
    /// Multiple Entry Points of a running gateway: groups, entry points, probes, choices.
    Mep(MepArgs),
    /// Remote-access client: connect to a gateway with a profile, disconnect, show the state.
    Client(ClientArgs),
    /// Remote access on a running gateway: the Office Mode pool and the connected clients.
    Ra(RaArgs),
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
    #[arg(required_unless_present = "profile", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Client profiles to check (`rampart client up --profile FILE`); may be repeated.
    #[arg(long, value_name = "FILE")]
    pub profile: Vec<PathBuf>,
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
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
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
    /// Print the gateway's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ClusterCommand {
    /// Members (priority, state, last heartbeat, interfaces down), this member's state and
    /// why, and which member owns each virtual address.
    Status,
    /// Delta and full sync counters: records, datagrams, queues, NACKs, retransmissions, lost
    /// updates, resyncs, refused datagrams, and per peer member.
    SyncStats,
    /// Hand the active role over gracefully (nothing lost) to the best standby, or to --to.
    Switchover {
        /// The member id (1 to 5) that takes the active role.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u8).range(1..=5))]
        to: Option<u8>,
    },
    /// Administratively down: this member gives up the active role (switching over first)
    /// and is not eligible until `rampart cluster up`.
    Down,
    /// Undo `rampart cluster down`: this member is eligible again.
    Up,
}

impl ClusterCommand {
    /// The status-socket request line.
    pub fn request(self) -> String {
        match self {
            ClusterCommand::Status => "cluster status".into(),
            ClusterCommand::SyncStats => "cluster sync-stats".into(),
            ClusterCommand::Switchover { to: None } => "cluster switchover".into(),
            ClusterCommand::Switchover { to: Some(id) } => format!("cluster switchover {id}"),
            ClusterCommand::Down => "cluster down".into(),
            ClusterCommand::Up => "cluster up".into(),
        }
    }
}

#[derive(Debug, Args)]
pub struct MepArgs {
    #[command(subcommand)]
    pub command: MepCommand,
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
    /// Print the gateway's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum MepCommand {
    /// Each entry-point group (kind, method, tie-break, current choice, resolutions) and its
    /// entry points: probe state, level, last RTT, misses, connections chosen, tunnel; then
    /// the probe responder's counters.
    Status,
}

impl MepCommand {
    /// The status-socket request line.
    pub fn request(self) -> String {
        match self {
            MepCommand::Status => "mep status".into(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ClientCommand {
    /// Connect: clean up after a crashed run, check for a captive portal, find a transport
    /// that works, bring the tunnel up and set the address, routes and DNS. Runs in the
    /// background and returns once connected (or failed) unless --foreground.
    Up(ClientUpArgs),
    /// Disconnect and restore routes, DNS and the firewall; also cleans up after a client
    /// that was killed.
    Down(ClientSelectArgs),
    /// State, transport and why, gateway, virtual address, DNS, routes, bytes.
    Status(ClientStatusArgs),
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClientUpArgs {
    /// The client profile (TOML).
    #[arg(long, short, value_name = "FILE")]
    pub profile: PathBuf,
    /// Stay in the foreground and log to standard error until SIGINT or SIGTERM.
    #[arg(long)]
    pub foreground: bool,
    /// How long the background start waits for the tunnel before giving up (seconds).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub wait: u64,
    /// Lowest level of the messages logged (RAMPART_LOG overrides it).
    #[arg(long, value_enum, default_value_t = LogLevel::Info, value_name = "LEVEL")]
    pub log_level: LogLevel,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClientSelectArgs {
    /// The profile of the connection (its name and state directory).
    #[arg(long, short, value_name = "FILE", conflicts_with = "name")]
    pub profile: Option<PathBuf>,
    /// The connection's name, in the default state directory (/run/rampart/client). Without
    /// --profile or --name: the only connection there.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ClientStatusArgs {
    #[command(flatten)]
    pub select: ClientSelectArgs,
    /// Print JSON (stable field names) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RaArgs {
    #[command(subcommand)]
    pub command: RaCommand,
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
    /// Print the gateway's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum RaCommand {
    /// The Office Mode pool (size, in use, free, allocations, releases, refusals) and each
    /// connected client: identity, address, remote endpoint, since when.
    Status,
}

impl RaCommand {
    /// The status-socket request line.
    pub fn request(self) -> String {
        match self {
            RaCommand::Status => "ra status".into(),
        }
    }
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

    fn cluster(args: &[&str]) -> Result<ClusterArgs, clap::Error> {
        let argv = ["rampart", "cluster"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Cluster(a) => a,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn cluster_commands_and_their_requests() {
        let cases: [(&[&str], ClusterCommand, &str); 6] = [
            (&["status"], ClusterCommand::Status, "cluster status"),
            (
                &["sync-stats"],
                ClusterCommand::SyncStats,
                "cluster sync-stats",
            ),
            (
                &["switchover"],
                ClusterCommand::Switchover { to: None },
                "cluster switchover",
            ),
            (
                &["switchover", "--to", "2"],
                ClusterCommand::Switchover { to: Some(2) },
                "cluster switchover 2",
            ),
            (&["down"], ClusterCommand::Down, "cluster down"),
            (&["up"], ClusterCommand::Up, "cluster up"),
        ];
        for (args, command, request) in cases {
            let a = cluster(args).unwrap();
            assert_eq!(a.command, command, "{args:?}");
            assert_eq!(a.command.request(), request);
            assert!(!a.json && a.config.is_none() && a.socket.is_none());
        }
    }

    #[test]
    fn mep_status_command() {
        let parse = |args: &[&str]| {
            let argv = ["rampart", "mep"].iter().chain(args);
            match Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Command::Mep(a)) => a,
                other => panic!("{other:?}"),
            }
        };
        let a = parse(&["status"]);
        assert_eq!(a.command, MepCommand::Status);
        assert_eq!(a.command.request(), "mep status");
        assert!(!a.json);
        let a = parse(&["status", "--json", "--socket", "/tmp/s.sock"]);
        assert!(a.json);
        assert_eq!(
            a.socket.as_deref(),
            Some(std::path::Path::new("/tmp/s.sock"))
        );
        assert!(Cli::try_parse_from(["rampart", "mep"]).is_err());
    }

    #[test]
    fn cluster_options() {
        let a = cluster(&["status", "--json", "--socket", "/run/x.sock"]).unwrap();
        assert!(a.json);
        assert_eq!(
            a.socket.as_deref(),
            Some(std::path::Path::new("/run/x.sock"))
        );
        let a = cluster(&["--config", "gw.toml", "sync-stats", "--json"]).unwrap();
        assert_eq!(a.command, ClusterCommand::SyncStats);
        assert!(a.json && a.config.is_some());
        // Member ids are 1..=5.
        for bad in ["0", "6", "x"] {
            assert!(cluster(&["switchover", "--to", bad]).is_err(), "{bad}");
        }
        assert!(cluster(&["status", "--config", "a", "--socket", "b"]).is_err());
        assert!(cluster(&[]).is_err());
        assert!(cluster(&["failover"]).is_err());
        assert!(cluster(&["down", "2"]).is_err());
    }

    #[test]
    fn client_verbs() {
        let parse = |args: &[&str]| {
            let argv = ["rampart", "client"].iter().chain(args);
            Cli::try_parse_from(argv).map(|c| match c.command {
                Command::Client(a) => a.command,
                other => panic!("{other:?}"),
            })
        };
        match parse(&["up", "--profile", "corp.toml"]).unwrap() {
            ClientCommand::Up(a) => {
                assert_eq!(a.profile, PathBuf::from("corp.toml"));
                assert!(!a.foreground);
                assert_eq!(a.wait, 60);
            }
            other => panic!("{other:?}"),
        }
        match parse(&["up", "-p", "corp.toml", "--foreground", "--wait", "5"]).unwrap() {
            ClientCommand::Up(a) => assert!(a.foreground && a.wait == 5),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["up"]).is_err(), "--profile is required");
        assert_eq!(
            parse(&["down", "--name", "corp"]).unwrap(),
            ClientCommand::Down(ClientSelectArgs {
                profile: None,
                name: Some("corp".into())
            })
        );
        assert!(parse(&["down", "--name", "a", "--profile", "b"]).is_err());
        match parse(&["status", "--json"]).unwrap() {
            ClientCommand::Status(a) => {
                assert!(a.json && a.select.profile.is_none() && a.select.name.is_none())
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["connect"]).is_err());
    }

    #[test]
    fn ra_status_command() {
        let cli =
            Cli::try_parse_from(["rampart", "ra", "status", "--json", "-s", "/r/g.sock"]).unwrap();
        match cli.command {
            Command::Ra(a) => {
                assert_eq!(a.command.request(), "ra status");
                assert!(a.json);
                assert_eq!(a.socket, Some(PathBuf::from("/r/g.sock")));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["rampart", "ra"]).is_err());
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
