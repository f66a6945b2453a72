//! `rampart client up` without `--foreground`: starts this same binary with `--foreground`
//! in a new process group (so the terminal's Ctrl-C does not reach it), logging to
//! `<state_dir>/<name>.log`, then watches its control socket and prints the outcome: connected
//! (exit 0), failed (the log's last lines, exit 1), or still waiting after `--wait` seconds
//! (exit 1; the client keeps trying).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::cli::ClientUpArgs;
use crate::EXIT_FAILURE;

use super::shell::Paths;
use super::status::{ClientState, ClientStatus};

/// What the starter concludes from one look at the child and its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Waiting,
    Connected(String),
    /// The child exited (with its status code, if any).
    Exited(Option<i32>),
}

/// Decides from the child's exit status (if it exited) and its last status document.
pub fn outcome(exited: Option<Option<i32>>, status: Option<&ClientStatus>) -> Outcome {
    if let Some(code) = exited {
        return Outcome::Exited(code);
    }
    match status {
        Some(s) if s.state == ClientState::Connected => Outcome::Connected(format!(
            "client {}: connected to {} over {}{}, address {}{}",
            s.name,
            s.gateway_address.as_deref().unwrap_or(&s.gateway),
            s.transport.as_deref().unwrap_or("?"),
            s.proxy
                .as_deref()
                .map_or_else(String::new, |p| format!(" via proxy {p}")),
            if s.virtual_ips.is_empty() {
                "-".to_owned()
            } else {
                s.virtual_ips.join(" ")
            },
            if s.full_tunnel {
                " (full tunnel)".to_owned()
            } else if s.routes.is_empty() {
                String::new()
            } else {
                format!(", routes {}", s.routes.join(" "))
            }
        )),
        _ => Outcome::Waiting,
    }
}

pub fn start(args: &ClientUpArgs) -> ExitCode {
    let profile = match super::load_profile(&args.profile) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let paths = Paths::new(&profile.state_dir, &profile.name);
    if let Err(e) = super::state::create_private_dir(&profile.state_dir) {
        eprintln!(
            "rampart: cannot create the state directory {}: {e}",
            profile.state_dir.display()
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    if super::control::ask(&paths.control, "status").is_ok() {
        eprintln!(
            "rampart: client {} is already running (see `rampart client status --name {}`)",
            profile.name, profile.name
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let log = match std::fs::File::create(&paths.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("rampart: cannot create {}: {e}", paths.log.display());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rampart: cannot find this program's path: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let profile_path = std::fs::canonicalize(&args.profile).unwrap_or(args.profile.clone());
    let mut command = Command::new(exe);
    command
        .args(["client", "up", "--foreground", "--profile"])
        .arg(&profile_path)
        .args(["--log-level", level(args.log_level)])
        .args([
            "--log-format",
            match args.log_format {
                crate::cli::LogFormat::Text => "text",
                crate::cli::LogFormat::Json => "json",
            },
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rampart: cannot start the client: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let mut said_portal = false;
    loop {
        let exited = match child.try_wait() {
            Ok(Some(status)) => Some(status.code()),
            Ok(None) => None,
            Err(_) => Some(None),
        };
        let status = super::control::ask(&paths.control, "status")
            .ok()
            .and_then(|a| serde_json::from_str::<ClientStatus>(&a).ok());
        match outcome(exited, status.as_ref()) {
            Outcome::Connected(line) => {
                println!("{line}");
                println!(
                    "  pid {}, log {}; `rampart client down --name {}` disconnects",
                    child.id(),
                    paths.log.display(),
                    profile.name
                );
                return ExitCode::SUCCESS;
            }
            Outcome::Exited(code) => {
                eprintln!(
                    "rampart: client {} stopped{}; its log ({}) ends with:",
                    profile.name,
                    code.map_or_else(String::new, |c| format!(" (exit {c})")),
                    paths.log.display()
                );
                eprint!("{}", tail(&paths.log, 12));
                return ExitCode::from(EXIT_FAILURE);
            }
            Outcome::Waiting => {}
        }
        if let Some(s) = &status {
            if s.state == ClientState::CaptivePortal && !said_portal {
                said_portal = true;
                println!(
                    "client {}: a captive portal intercepts web traffic ({}); log in with a browser, the client connects afterwards",
                    profile.name,
                    s.last_error.as_deref().unwrap_or("probe redirected")
                );
            }
        }
        if Instant::now() >= deadline {
            let state = status.map_or("starting", |s| s.state.as_str());
            eprintln!(
                "rampart: client {} still {state} after {} s; it keeps trying in the background (pid {}, log {})",
                profile.name,
                args.wait,
                child.id(),
                paths.log.display()
            );
            return ExitCode::from(EXIT_FAILURE);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn level(l: crate::cli::LogLevel) -> &'static str {
    use crate::cli::LogLevel::*;
    match l {
        Error => "error",
        Warn => "warn",
        Info => "info",
        Debug => "debug",
        Trace => "trace",
    }
}

/// The last `n` lines of a file.
fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_of_a_start() {
        let mut s = ClientStatus::new("corp", "vpn.example.org", "rampart-c0", false);
        assert_eq!(outcome(None, Some(&s)), Outcome::Waiting);
        assert_eq!(outcome(None, None), Outcome::Waiting);
        assert_eq!(outcome(Some(Some(1)), Some(&s)), Outcome::Exited(Some(1)));
        s.set_state(ClientState::Connected);
        s.transport = Some("udp".into());
        s.gateway_address = Some("192.0.2.1:500".into());
        s.virtual_ips = vec!["10.99.0.7".into()];
        s.routes = vec!["10.1.0.0/16".into()];
        assert_eq!(
            outcome(None, Some(&s)),
            Outcome::Connected(
                "client corp: connected to 192.0.2.1:500 over udp, address 10.99.0.7, routes 10.1.0.0/16"
                    .into()
            )
        );
    }
}
