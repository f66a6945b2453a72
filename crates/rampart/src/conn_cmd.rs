//! `rampart conn list` and `rampart conn stats`: the connection table and the inspection
//! counters of a running gateway, over its status socket (`conn list` / `conn stats` requests).

use std::fmt::Write as _;
use std::process::ExitCode;

use rampart_node::{ConnList, InspectStats};

use crate::cli::{ConnArgs, ConnCommand, StatusArgs};
use crate::status_cmd::socket_path;
use crate::EXIT_FAILURE;

pub fn run(args: &ConnArgs) -> ExitCode {
    let socket = match socket_path(&StatusArgs {
        config: args.config.clone(),
        socket: args.socket.clone(),
        json: args.json,
    }) {
        Ok(path) => path,
        Err((code, message)) => {
            eprintln!("{message}");
            return ExitCode::from(code);
        }
    };
    let request = match args.command {
        ConnCommand::List => "conn list",
        ConnCommand::Stats => "conn stats",
    };
    let shown = socket.display();
    let answer = match rampart_io::status_server::query(&socket, request) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rampart: is the gateway running? cannot query {shown}: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(&answer) {
        if let Some(serde_json::Value::String(e)) = o.get("error") {
            eprintln!("rampart: the gateway at {shown} answered: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    let text = match args.command {
        ConnCommand::List => serde_json::from_str::<ConnList>(&answer).map(|l| {
            if args.json {
                serde_json::to_string_pretty(&l).unwrap_or_default() + "\n"
            } else {
                render_list(&l)
            }
        }),
        ConnCommand::Stats => serde_json::from_str::<InspectStats>(&answer).map(|s| {
            if args.json {
                serde_json::to_string_pretty(&s).unwrap_or_default() + "\n"
            } else {
                render_stats(&s)
            }
        }),
    };
    match text {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart: invalid answer from {shown}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn render_list(l: &ConnList) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:<6} {:<12} {:<6} {:>6} {:>8}  {:<44} {:<44} {:<16} RULE",
        "ID", "PROTO", "STATE", "FROM", "AGE", "EXPIRES", "ORIGINAL", "TRANSLATED", "NAT"
    );
    for c in &l.connections {
        let _ = writeln!(
            s,
            "{:<18} {:<6} {:<12} {:<6} {:>5}s {:>7}s  {:<44} {:<44} {:<16} {}",
            c.id,
            c.protocol,
            c.state,
            c.from,
            c.age_secs,
            c.expires_in_secs,
            c.original,
            c.translated.as_deref().unwrap_or("-"),
            c.nat.as_deref().unwrap_or("-"),
            c.rule
        );
    }
    let _ = writeln!(
        s,
        "{} connection(s){}",
        l.total,
        if l.truncated {
            format!(", first {} shown", l.connections.len())
        } else {
            String::new()
        }
    );
    s
}

fn render_stats(st: &InspectStats) -> String {
    let rows = [
        ("active connections", st.active),
        ("capacity", st.capacity),
        ("packets inspected", st.packets),
        ("connections accepted", st.connections_accepted),
        ("dropped by rule", st.dropped_by_rule),
        ("  of which rejected", st.rejected),
        ("dropped out of state", st.dropped_out_of_state),
        ("  handshake mismatch", st.handshake_mismatch),
        ("handshake verified", st.handshake_verified),
        ("handshake unverified", st.handshake_unverified),
        ("refused, table full", st.table_full),
        ("refused, NAT exhausted", st.nat_exhausted),
        ("dropped malformed", st.dropped_malformed),
        ("passed untracked", st.untracked),
        ("expired", st.expired),
    ];
    rows.iter().map(|(k, v)| format!("{k:<24} {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_table_names_every_counter() {
        let text = render_stats(&InspectStats {
            dropped_out_of_state: 7,
            ..InspectStats::default()
        });
        assert!(text.contains("dropped out of state     7"), "{text}");
        assert!(text.contains("refused, table full"));
        let text = render_stats(&InspectStats {
            handshake_mismatch: 3,
            handshake_verified: 5,
            ..InspectStats::default()
        });
        assert!(text.contains("  handshake mismatch     3"), "{text}");
        assert!(text.contains("handshake verified       5"), "{text}");
    }
}
