//! `rampart status`: ask a running gateway for its status over its Unix socket.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rampart_node::GatewayStatus;

use crate::cli::StatusArgs;
use crate::{status_view, EXIT_CONFIG, EXIT_FAILURE};

/// Where `rampart status` looks when given neither --config nor --socket.
const SOCKET_DIR: &str = "/run/rampart";
/// How long the gateway may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest status document accepted.
const MAX_RESPONSE: u64 = 16 << 20;

pub fn run(args: &StatusArgs) -> ExitCode {
    let socket = match socket_path(args) {
        Ok(path) => path,
        Err((code, message)) => {
            eprintln!("{message}");
            return ExitCode::from(code);
        }
    };
    let (status, document) = match fetch_document(&socket) {
        Ok(status) => status,
        Err(message) => {
            eprintln!("rampart: {message}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if args.json {
        // The whole document: the node's status plus what the I/O shell adds (cluster I/O,
        // reloads, stream transports), so no section is lost in a round trip.
        match serde_json::to_string_pretty(&document) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("rampart: cannot encode the status: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    } else {
        print!("{}", status_view::render(&status));
        print!("{}", status_view::cluster_section(&document));
        print!("{}", status_view::mep_section(&document));
    }
    ExitCode::SUCCESS
}

/// The socket to ask: --socket, the status_socket of --config, or the only socket in
/// /run/rampart. Errors carry their exit code and the whole message.
/// Finds the status socket for `args`, sends `request` and returns the answer with the socket's
/// path for messages. When that fails the reason is printed and the exit code returned.
pub(crate) fn ask(args: &StatusArgs, request: &str) -> Result<(String, String), ExitCode> {
    let socket = socket_path(args).map_err(|(code, message)| {
        eprintln!("{message}");
        ExitCode::from(code)
    })?;
    let shown = socket.display().to_string();
    match rampart_io::status_server::query(&socket, request) {
        Ok(answer) => Ok((answer, shown)),
        Err(e) => {
            eprintln!("rampart: is the gateway running? cannot query {shown}: {e}");
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

pub(crate) fn socket_path(args: &StatusArgs) -> Result<PathBuf, (u8, String)> {
    if let Some(socket) = &args.socket {
        return Ok(socket.clone());
    }
    if let Some(config) = &args.config {
        return rampart_config::load(config)
            .map(|c| c.gateway.status_socket)
            .map_err(|errors| (EXIT_CONFIG, errors.to_string()));
    }
    let sockets = sockets_in(Path::new(SOCKET_DIR));
    match sockets.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err((
            EXIT_FAILURE,
            format!("rampart: is the gateway running? no socket in {SOCKET_DIR}; give --config FILE or --socket PATH"),
        )),
        many => Err((
            EXIT_FAILURE,
            format!(
                "rampart: {} gateways have sockets in {SOCKET_DIR} ({}); choose one with --config FILE or --socket PATH",
                many.len(),
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn sockets_in(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Connects, sends `status\n`, reads the JSON document until the gateway closes the
/// connection. Every error is one line that says what to check. The status comes with the
/// document as JSON, for the parts `GatewayStatus` may not carry (`cluster`, `sync`).
pub fn fetch_document(socket: &Path) -> Result<(GatewayStatus, serde_json::Value), String> {
    let shown = socket.display();
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("is the gateway running? no socket at {shown}"),
        io::ErrorKind::ConnectionRefused => {
            format!("is the gateway running? nothing is listening on {shown}")
        }
        io::ErrorKind::PermissionDenied => format!(
            "permission denied on {shown} (the status socket is owner-only: run as the gateway's user or root)"
        ),
        _ => format!("cannot connect to {shown}: {e}"),
    })?;
    let io_err = |e: io::Error| format!("status socket {shown}: {e}");
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.write_all(b"status\n").map_err(io_err)?;
    let mut body = Vec::new();
    stream
        .take(MAX_RESPONSE)
        .read_to_end(&mut body)
        .map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!(
                    "the gateway did not answer on {shown} within {}s",
                    TIMEOUT.as_secs()
                )
            }
            _ => io_err(e),
        })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("the gateway closed {shown} without an answer"));
    }
    let invalid = |e: serde_json::Error| format!("invalid status document from {shown}: {e}");
    let document: serde_json::Value = serde_json::from_slice(&body).map_err(invalid)?;
    let status = serde_json::from_value(document.clone()).map_err(invalid)?;
    Ok((status, document))
}
