//! `rampart ra status [--json]`: a running gateway's remote-access side over its status
//! socket (request `ra status`): the Office Mode pool counters and the connected clients.

use std::fmt::Write;
use std::process::ExitCode;

use serde_json::Value;

use crate::cli::{RaArgs, RaCommand, StatusArgs};
use crate::status_cmd::ask;
use crate::EXIT_FAILURE;

pub fn run(args: &RaArgs) -> ExitCode {
    let status_args = StatusArgs {
        config: args.config.clone(),
        socket: args.socket.clone(),
        json: args.json,
    };
    let (mut answer, shown) = match ask(&status_args, &args.command.request()) {
        Ok(answered) => answered,
        Err(code) => return code,
    };
    // A gateway whose status socket does not know `ra status` yet: the same document is the
    // `remote_access` part of its status.
    if answer.contains("unknown request") {
        answer = match ask(&status_args, "status") {
            Ok((status, _)) => from_status(&status),
            Err(code) => return code,
        };
    }
    match render(args.command, args.json, &answer) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart: the gateway at {shown} answered: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The `remote_access` part of a `status` document, or an error document.
fn from_status(status: &str) -> String {
    match serde_json::from_str::<Value>(status) {
        Ok(v) => match v.get("remote_access") {
            Some(ra @ Value::Object(_)) => ra.to_string(),
            _ => serde_json::json!({ "error": "this gateway has no [remote_access]" }).to_string(),
        },
        Err(e) => {
            serde_json::json!({ "error": format!("invalid status document: {e}") }).to_string()
        }
    }
}

/// The text to print for the gateway's answer: the JSON as it came (pretty) or the tables.
/// `{"error": ...}` (no `[remote_access]`, an older gateway) is an error.
pub(crate) fn render(command: RaCommand, json: bool, answer: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(answer).map_err(|e| format!("invalid answer: {e}"))?;
    if let Some(Value::String(e)) = value.get("error") {
        return Err(e.clone());
    }
    match command {
        RaCommand::Status => {
            if !value.get("clients").is_some_and(Value::is_array) {
                return Err("invalid answer: no \"clients\" array".into());
            }
            if json {
                Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n")
            } else {
                Ok(table(&value))
            }
        }
    }
}

/// A field as text (`-` when missing or null).
fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The pools (one object `pool`, or an array `pools`), then one line per client.
fn table(value: &Value) -> String {
    let mut out = String::new();
    let pools: Vec<&Value> = match (value.get("pools"), value.get("pool")) {
        (Some(Value::Array(pools)), _) => pools.iter().collect(),
        (_, Some(pool @ Value::Object(_))) => vec![pool],
        _ => Vec::new(),
    };
    if pools.is_empty() {
        out.push_str("remote access  no address pool\n");
    }
    for p in pools {
        let _ = writeln!(
            out,
            "pool {}{}  size {}  in use {}  free {}  allocations {}  releases {}  refused (exhausted) {}",
            field(p, "prefix").replace('-', "").trim(),
            p.get("peer")
                .and_then(Value::as_str)
                .map_or_else(String::new, |peer| format!(" (peer {peer})")),
            field(p, "size"),
            field(p, "in_use"),
            field(p, "free"),
            field(p, "allocations"),
            field(p, "releases"),
            field(p, "exhausted_refusals"),
        );
        // Load Sharing: this member's share and the other members' leases it keeps free.
        if let Some(share) = p.get("share").filter(|s| s.is_object()) {
            let blocks: Vec<&str> = share
                .get("blocks")
                .and_then(Value::as_array)
                .map(|b| b.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  share {} of {} ({})  reserved elsewhere {}  outside the share {}",
                field(share, "index"),
                field(share, "of"),
                blocks.join(" "),
                field(p, "reserved_elsewhere"),
                field(p, "outside_share"),
            );
        }
    }
    // Load Sharing: clients that reconnected at another member and took their address along.
    if let Some(n) = value
        .get("moved_to_other_member")
        .and_then(Value::as_u64)
        .filter(|&n| n > 0)
    {
        let _ = writeln!(out, "moved to another member  {n}");
    }
    if let Some(m) = value.get("mobike").filter(|m| m.is_object()) {
        let _ = writeln!(
            out,
            "mobike  negotiated {}  moves applied {}  refused {}",
            field(m, "negotiated"),
            field(m, "updates_applied"),
            field(m, "updates_refused"),
        );
    }
    let clients = value
        .get("clients")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if clients.is_empty() {
        out.push_str("clients  none connected\n");
        return out;
    }
    let rows: Vec<[String; 5]> = clients
        .iter()
        .map(|c| {
            let since = c
                .get("since_secs")
                .or_else(|| c.get("since"))
                .and_then(Value::as_u64)
                .map_or_else(|| "-".into(), crate::status_view::duration);
            [
                field(c, "client"),
                field(c, "address"),
                field(c, "remote"),
                field(c, "ike_sa"),
                since,
            ]
        })
        .collect();
    let head = ["CLIENT", "ADDRESS", "REMOTE", "IKE SA", "FOR"];
    let mut widths = head.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 4 {
                s.push_str(cell);
            } else {
                let _ = write!(s, "{cell:<w$}  ");
            }
        }
        s.push('\n');
        s
    };
    let _ = write!(out, "clients  {}\n{}", rows.len(), line(head));
    for row in &rows {
        out.push_str(&line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_clients_table() {
        let doc = serde_json::json!({
            "pool": { "peer": "remote-access", "prefix": "10.99.0.0/24", "size": 254, "in_use": 2,
                      "free": 252, "allocations": 5, "releases": 3, "exhausted_refusals": 0 },
            "clients": [
                { "client": "alice", "address": "10.99.0.2", "remote": "198.51.100.7:4500",
                  "ike_sa": 3, "since_secs": 65 },
                { "client": "bob@example.org", "address": "10.99.0.3", "remote": "203.0.113.9:51234",
                  "ike_sa": 4, "since_secs": 4000 }
            ]
        });
        let text = render(RaCommand::Status, false, &doc.to_string()).unwrap();
        assert_eq!(
            text,
            "pool 10.99.0.0/24 (peer remote-access)  size 254  in use 2  free 252  allocations 5  releases 3  refused (exhausted) 0\n\
             clients  2\n\
             CLIENT           ADDRESS    REMOTE             IKE SA  FOR\n\
             alice            10.99.0.2  198.51.100.7:4500  3       1m5s\n\
             bob@example.org  10.99.0.3  203.0.113.9:51234  4       1h6m40s\n"
        );
        let json = render(RaCommand::Status, true, &doc.to_string()).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), doc);
    }

    #[test]
    fn load_sharing_share_line() {
        let doc = serde_json::json!({
            "pools": [{ "peer": "remote-access", "prefix": "10.99.0.0/24", "size": 127,
                        "in_use": 2, "free": 126, "allocations": 1, "releases": 0,
                        "exhausted_refusals": 0, "reserved_elsewhere": 1, "outside_share": 1,
                        "share": { "index": 0, "of": 2, "blocks": ["10.99.0.0/25"] } },
                      { "peer": "ha", "prefix": "10.98.0.0/24", "size": 254, "in_use": 0,
                        "free": 254, "allocations": 0, "releases": 0,
                        "exhausted_refusals": 0, "reserved_elsewhere": 0, "outside_share": 0,
                        "share": null }],
            "clients": []
        });
        let text = render(RaCommand::Status, false, &doc.to_string()).unwrap();
        assert_eq!(
            text,
            "pool 10.99.0.0/24 (peer remote-access)  size 127  in use 2  free 126  allocations 1  releases 0  refused (exhausted) 0\n\
             \x20 share 0 of 2 (10.99.0.0/25)  reserved elsewhere 1  outside the share 1\n\
             pool 10.98.0.0/24 (peer ha)  size 254  in use 0  free 254  allocations 0  releases 0  refused (exhausted) 0\n\
             clients  none connected\n"
        );
    }

    #[test]
    fn moved_to_other_member_line_only_when_some_moved() {
        let doc = serde_json::json!({ "pools": [], "clients": [], "moved_to_other_member": 2 });
        let text = render(RaCommand::Status, false, &doc.to_string()).unwrap();
        assert!(text.contains("moved to another member  2\n"), "{text}");
        let doc = serde_json::json!({ "pools": [], "clients": [], "moved_to_other_member": 0 });
        let text = render(RaCommand::Status, false, &doc.to_string()).unwrap();
        assert!(!text.contains("moved to another member"), "{text}");
    }

    #[test]
    fn mobike_counters_line() {
        let doc = serde_json::json!({
            "pools": [],
            "clients": [],
            "mobike": { "negotiated": 3, "updates_sent": 0, "updates_answered": 0,
                        "updates_failed": 0, "updates_applied": 2, "updates_refused": 1 }
        });
        let text = render(RaCommand::Status, false, &doc.to_string()).unwrap();
        assert!(
            text.contains("mobike  negotiated 3  moves applied 2  refused 1\n"),
            "{text}"
        );
    }

    #[test]
    fn taken_from_a_status_document() {
        let doc =
            serde_json::json!({ "name": "gw", "remote_access": { "pools": [], "clients": [] } });
        assert_eq!(
            from_status(&doc.to_string()),
            r#"{"clients":[],"pools":[]}"#
        );
        let doc = serde_json::json!({ "name": "gw", "remote_access": null });
        assert!(from_status(&doc.to_string()).contains("no [remote_access]"));
    }

    #[test]
    fn errors_and_empty() {
        assert_eq!(
            render(
                RaCommand::Status,
                false,
                r#"{"error":"no [remote_access] on this gateway"}"#
            ),
            Err("no [remote_access] on this gateway".into())
        );
        assert!(render(RaCommand::Status, false, "{}")
            .unwrap_err()
            .contains("no \"clients\""));
        let text = render(RaCommand::Status, false, r#"{"pools":[],"clients":[]}"#).unwrap();
        assert_eq!(
            text,
            "remote access  no address pool\nclients  none connected\n"
        );
    }
}
