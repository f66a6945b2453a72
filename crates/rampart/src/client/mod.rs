//! `rampart client up|down|status`: the remote-access client.
//!
//! - `up` (default in the background, see [`daemon`]) runs [`session`]: cleanup of a crashed
//!   run, captive-portal probe, transport ladder, the node and its I/O, and the [`shell`]
//!   that applies the Office Mode assignment to the host and restores it at the end.
//! - `down` asks the running client to stop over its control socket ([`control`]); with no
//!   client running it restores whatever a killed one left ([`state`]).
//! - `status` reads the control socket.

pub mod attach;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod killswitch;
pub mod learned;
pub mod mep;
pub mod mtu;
pub mod pac;
pub mod plan;
pub mod reattach;
pub mod roam;
pub mod session;
pub mod shell;
pub mod state;
pub mod status;
pub mod system;
pub mod transport;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{ClientArgs, ClientCommand, ClientSelectArgs, ClientStatusArgs};
use crate::{EXIT_CONFIG, EXIT_FAILURE};

use shell::Paths;

/// Where connections keep their state when the profile does not say.
pub const DEFAULT_STATE_DIR: &str = "/run/rampart/client";

pub fn run(args: ClientArgs) -> ExitCode {
    match args.command {
        ClientCommand::Up(up) => {
            if up.foreground {
                session::run_foreground(&up)
            } else {
                daemon::start(&up)
            }
        }
        ClientCommand::Down(select) => down(&select),
        ClientCommand::Status(status) => show_status(&status),
    }
}

/// Loads a profile, printing the errors (exit 2) like `check-config`.
pub fn load_profile(path: &Path) -> Result<rampart_config::ClientProfile, ExitCode> {
    rampart_config::load_profile(path).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// The files of the connection `select` names: from the profile, the name, or the only
/// connection in the default state directory.
fn select_paths(select: &ClientSelectArgs) -> Result<(String, Paths), ExitCode> {
    if let Some(profile) = &select.profile {
        let p = load_profile(profile)?;
        return Ok((p.name.clone(), Paths::new(&p.state_dir, &p.name)));
    }
    let dir = Path::new(DEFAULT_STATE_DIR);
    if let Some(name) = &select.name {
        return Ok((name.clone(), Paths::new(dir, name)));
    }
    let names = connections_in(dir);
    match names.as_slice() {
        [only] => Ok((only.clone(), Paths::new(dir, only))),
        [] => {
            eprintln!(
                "rampart: no client connection in {DEFAULT_STATE_DIR}; give --profile FILE or --name NAME"
            );
            Err(ExitCode::from(EXIT_FAILURE))
        }
        many => {
            eprintln!(
                "rampart: {} client connections in {DEFAULT_STATE_DIR} ({}); choose one with --name",
                many.len(),
                many.join(", ")
            );
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// The connection names that have a control socket or a state file in `dir`.
fn connections_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let ext = path.extension()?.to_str()?;
            matches!(ext, "ctl" | "state").then(|| path.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn down(select: &ClientSelectArgs) -> ExitCode {
    let (name, paths) = match select_paths(select) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match control::ask(&paths.control, "down") {
        Ok(_) => {
            // Wait for the client to restore the host and exit (its socket goes last).
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while paths.control.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if paths.control.exists() {
                eprintln!("rampart: client {name} did not stop within 20 s");
                return ExitCode::from(EXIT_FAILURE);
            }
            if paths.state.exists() {
                eprintln!(
                    "rampart: client {name} stopped but left changes in {}; see its log {}",
                    paths.state.display(),
                    paths.log.display()
                );
                return ExitCode::from(EXIT_FAILURE);
            }
            println!("client {name}: disconnected, host restored");
            ExitCode::SUCCESS
        }
        Err(_) => cleanup_only(&name, &paths.state),
    }
}

/// No client answers: undo what a killed one left.
fn cleanup_only(name: &str, state: &Path) -> ExitCode {
    if !state.exists() {
        println!("client {name}: not running, nothing to restore");
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rampart: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        let system = system::System::open().map_err(|e| e.to_string())?;
        shell::restore(&system, state, false).await
    });
    match result {
        Ok(n) => {
            println!("client {name}: not running; restored {n} changes a previous run left");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart: client {name}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn show_status(args: &ClientStatusArgs) -> ExitCode {
    let (name, paths) = match select_paths(&args.select) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let answer = match control::ask(&paths.control, "status") {
        Ok(a) => a,
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "name": name, "state": "down", "error": e })
                );
            } else {
                eprintln!("rampart: client {name}: {e}");
            }
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match serde_json::from_str::<status::ClientStatus>(&answer) {
        Ok(s) if args.json => {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or(answer));
            ExitCode::SUCCESS
        }
        Ok(s) => {
            print!("{}", status::render(&s));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart: client {name} answered something unexpected ({e}): {answer}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
