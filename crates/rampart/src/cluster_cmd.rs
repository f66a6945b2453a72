//! `rampart cluster status | sync-stats | switchover [--to ID] | down | up`: the running
//! gateway's cluster over its status socket (requests `cluster status`, `cluster sync-stats`,
//! `cluster switchover [ID]`, `cluster down`, `cluster up`).

use std::process::ExitCode;

use rampart_cluster::{ClusterStatus, SyncStats};

use crate::cli::{ClusterArgs, ClusterCommand, StatusArgs};
use crate::status_cmd::ask;
use crate::{status_view, EXIT_FAILURE};

pub fn run(args: &ClusterArgs) -> ExitCode {
    let status_args = StatusArgs {
        config: args.config.clone(),
        socket: args.socket.clone(),
        json: args.json,
    };
    let (answer, shown) = match ask(&status_args, &args.command.request()) {
        Ok(answered) => answered,
        Err(code) => return code,
    };
    match render(args.command, args.json, &answer) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Refusal::Gateway(e)) => {
            eprintln!("rampart: the gateway at {shown} answered: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Refusal::Invalid(e)) => {
            eprintln!("rampart: invalid answer from {shown}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Why an answer is not shown as a success.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The gateway's `{"error": ...}` document (no cluster configured, unknown member, ...).
    Gateway(String),
    /// Not the document the request asks for.
    Invalid(String),
}

/// The text to print for the gateway's `answer` to `command`.
pub(crate) fn render(command: ClusterCommand, json: bool, answer: &str) -> Result<String, Refusal> {
    let value: serde_json::Value = match serde_json::from_str(answer) {
        Ok(v) => v,
        // A plain-text acknowledgement of a command is shown as it is.
        Err(_) if is_action(command) && !answer.trim().is_empty() => {
            return Ok(format!("{}\n", answer.trim()))
        }
        Err(e) => return Err(Refusal::Invalid(e.to_string())),
    };
    if let Some(serde_json::Value::String(e)) = value.get("error") {
        return Err(Refusal::Gateway(e.clone()));
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default() + "\n";
    match command {
        ClusterCommand::Status => {
            let status: ClusterStatus = serde_json::from_value(value.clone())
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            Ok(if json {
                pretty(&value)
            } else {
                let mut out = String::new();
                status_view::cluster_status(&mut out, &status);
                if let Some(m) = crate::ls_view::member_counters_of(&value) {
                    crate::ls_view::member_counters(&mut out, &m);
                }
                out
            })
        }
        ClusterCommand::SyncStats => {
            let stats: SyncStats = serde_json::from_value(value.clone())
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            Ok(if json {
                pretty(&value)
            } else {
                let mut out = String::new();
                let forwarded = status_view::forwarded_of(&value);
                status_view::sync_stats(&mut out, &stats, forwarded.as_ref());
                out
            })
        }
        _ if json => Ok(pretty(&value)),
        // The node's acknowledgement: a JSON string, or an object with a message.
        _ => Ok(match &value {
            serde_json::Value::String(s) => format!("{s}\n"),
            serde_json::Value::Object(o) => ["message", "result", "ok"]
                .iter()
                .find_map(|k| o.get(*k).and_then(|v| v.as_str()))
                .map_or_else(|| pretty(&value), |s| format!("{s}\n")),
            other => pretty(other),
        }),
    }
}

fn is_action(command: ClusterCommand) -> bool {
    !matches!(command, ClusterCommand::Status | ClusterCommand::SyncStats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_cluster::{MemberState, MemberStatus, PeerSyncStats, VipStatus};

    fn status() -> ClusterStatus {
        ClusterStatus {
            name: "hq".into(),
            mode: "high-availability".into(),
            member_id: 1,
            state: MemberState::Active,
            reason: String::new(),
            members: vec![MemberStatus {
                id: 1,
                sync_address: "10.255.0.1:8116".into(),
                priority: 200,
                state: MemberState::Active,
                alive: true,
                last_heartbeat_ms: None,
                interfaces_down: vec![],
                local: true,
            }],
            virtual_addresses: vec![VipStatus {
                interface: "eth0".into(),
                address: "10.1.0.1/24".into(),
                owner: Some(1),
            }],
            failovers: 0,
            load_sharing: None,
        }
    }

    #[test]
    fn status_answer_as_table_and_json() {
        let answer = serde_json::to_string(&status()).unwrap();
        let table = render(ClusterCommand::Status, false, &answer).unwrap();
        assert!(
            table.starts_with("cluster hq  high-availability  member 1  active"),
            "{table}"
        );
        let json = render(ClusterCommand::Status, true, &answer).unwrap();
        let back: ClusterStatus = serde_json::from_str(&json).unwrap();
        assert_eq!(back, status());
    }

    #[test]
    fn sync_stats_answer() {
        let stats = SyncStats {
            member_id: 1,
            records_sent: 42,
            peers: vec![PeerSyncStats {
                id: 2,
                acked_seq: 42,
                ..Default::default()
            }],
            ..Default::default()
        };
        let answer = serde_json::to_string(&stats).unwrap();
        let table = render(ClusterCommand::SyncStats, false, &answer).unwrap();
        assert!(table.contains("records sent"), "{table}");
        let json = render(ClusterCommand::SyncStats, true, &answer).unwrap();
        assert_eq!(serde_json::from_str::<SyncStats>(&json).unwrap(), stats);
    }

    #[test]
    fn sync_stats_with_the_shells_load_sharing_fields() {
        // What the gateway answers in Load Sharing: the engine's counters, plus `forwarded`
        // and the hold-time quantiles the shell adds.
        let stats = SyncStats {
            member_id: 1,
            flush_ack: Some(rampart_cluster::FlushAckStats {
                held: 3,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&stats).unwrap();
        value["forwarded"] = serde_json::json!({ "sent": 5, "received": 2, "dropped": 0 });
        value["flush_ack"]["hold_time_p50_us"] = serde_json::Value::Null;
        let answer = value.to_string();
        let table = render(ClusterCommand::SyncStats, false, &answer).unwrap();
        assert!(
            table.contains("\n    held                           3\n"),
            "{table}"
        );
        assert!(
            table.contains("\n  forwarded packets  sent 5  received 2  dropped 0\n"),
            "{table}"
        );
        let json = render(ClusterCommand::SyncStats, true, &answer).unwrap();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["forwarded"]["sent"], 5);
        assert_eq!(back["flush_ack"]["held"], 3);
        // Without `forwarded` (high availability) there is no such line.
        let plain = serde_json::to_string(&SyncStats::default()).unwrap();
        let table = render(ClusterCommand::SyncStats, false, &plain).unwrap();
        assert!(!table.contains("forwarded"), "{table}");
    }

    #[test]
    fn errors_and_wrong_documents_are_refused() {
        let e = r#"{"error":"no cluster is configured"}"#;
        for command in [
            ClusterCommand::Status,
            ClusterCommand::SyncStats,
            ClusterCommand::Switchover { to: Some(2) },
            ClusterCommand::Down,
        ] {
            assert_eq!(
                render(command, false, e),
                Err(Refusal::Gateway("no cluster is configured".into()))
            );
        }
        assert!(matches!(
            render(ClusterCommand::Status, false, r#"{"records_sent":1}"#),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            render(ClusterCommand::SyncStats, false, "not json"),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            render(ClusterCommand::Up, false, ""),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn command_acknowledgements() {
        let sw = ClusterCommand::Switchover { to: None };
        assert_eq!(
            render(sw, false, r#""switching over to member 2""#).unwrap(),
            "switching over to member 2\n"
        );
        assert_eq!(
            render(sw, false, r#"{"message":"switching over to member 2"}"#).unwrap(),
            "switching over to member 2\n"
        );
        assert_eq!(
            render(ClusterCommand::Down, false, "member 1 is down").unwrap(),
            "member 1 is down\n"
        );
        assert_eq!(
            render(ClusterCommand::Up, true, r#"{"message":"up"}"#).unwrap(),
            "{\n  \"message\": \"up\"\n}\n"
        );
    }
}
