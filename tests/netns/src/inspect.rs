//! Helpers for the stateful-inspection tests: `rampart conn list|stats --json` of a gateway,
//! socat servers, and Python TCP clients run inside a namespace.

use std::time::Duration;

use serde_json::Value;

use crate::netns::{run, Netns, Process};
use crate::rampart::{binary, Gateway};
use crate::wait::wait_until;

/// `rampart conn <what> --config <file> --json`, parsed (`what`: `list` or `stats`).
pub fn conn(gw: &Gateway, what: &str) -> Result<Value, String> {
    let bin = binary().to_string_lossy().into_owned();
    let cfg = gw.config_path().to_string_lossy().into_owned();
    let out = run(&bin, &["conn", what, "--config", &cfg, "--json"]).map_err(|e| e.to_string())?;
    serde_json::from_str(&out).map_err(|e| format!("conn {what} is not JSON ({e}): {out}"))
}

/// One counter of `rampart conn stats`.
#[track_caller]
pub fn counter(gw: &Gateway, name: &str) -> u64 {
    let stats = conn(gw, "stats").unwrap_or_else(|e| panic!("{e}"));
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {stats}"))
}

/// A TCP server on `port` in `ns` running `socat` with `action` (e.g. `EXEC:cat`), listening
/// when this returns.
#[track_caller]
pub fn tcp_server(ns: &Netns, dir: &std::path::Path, port: u16, action: &str) -> Process {
    let listen = format!("TCP-LISTEN:{port},fork,reuseaddr");
    let p = ns.spawn(dir, &format!("socat-{port}"), &["socat", &listen, action]);
    wait_until(
        Duration::from_secs(5),
        &format!("socat listening on {port}"),
        || {
            ns.try_exec(&["ss", "-ltn"])
                .is_ok_and(|out| out.contains(&format!(":{port} ")))
        },
    );
    p
}

/// Runs a Python 3 program in `ns`; its standard output, or the error with its output.
pub fn python(ns: &Netns, program: &str) -> Result<String, String> {
    ns.try_exec(&["python3", "-c", program])
        .map_err(|e| e.to_string())
}

/// Python prelude: `connect(port, timeout)` to `host` and `echo(sock, text)`.
pub fn python_prelude(host: &str) -> String {
    format!(
        r#"
import socket, sys
HOST = "{host}"
def connect(port, timeout=3.0):
    return socket.create_connection((HOST, port), timeout=timeout)
def echo(s, text):
    s.sendall(text.encode())
    got = b""
    while len(got) < len(text):
        chunk = s.recv(100)
        if not chunk:
            break
        got += chunk
    return got.decode()
"#
    )
}
