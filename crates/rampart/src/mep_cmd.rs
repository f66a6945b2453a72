//! `rampart mep status [--json]`: the running gateway's Multiple Entry Points over its status
//! socket (request `mep status`, answered with the JSON of `rampart_mep::MepStatus`).

use std::process::ExitCode;

use crate::cli::{MepArgs, MepCommand, StatusArgs};
use crate::status_cmd::ask;
use crate::{status_view, EXIT_FAILURE};

pub fn run(args: &MepArgs) -> ExitCode {
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
        Err(e) => {
            eprintln!("rampart: the gateway at {shown} answered: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The text to print for the gateway's `answer`: the JSON as it came (pretty), or the table.
/// A `{"error": ...}` document (no MEP configured, ...) or a document without `groups` is an
/// error.
pub(crate) fn render(command: MepCommand, json: bool, answer: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(answer).map_err(|e| format!("invalid answer: {e}"))?;
    if let Some(serde_json::Value::String(e)) = value.get("error") {
        return Err(e.clone());
    }
    match command {
        MepCommand::Status => {
            if !value.get("groups").is_some_and(|g| g.is_array()) {
                return Err("invalid answer: no \"groups\" array".into());
            }
            if json {
                Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n")
            } else {
                let mut out = String::new();
                status_view::mep_status(&mut out, &value);
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_shown_or_refused() {
        let doc = serde_json::json!({ "groups": [], "responder": null });
        let text = render(MepCommand::Status, false, &doc.to_string()).unwrap();
        assert_eq!(text, "mep  no entry-point group\n");
        let json = render(MepCommand::Status, true, &doc.to_string()).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap(),
            doc
        );
        assert_eq!(
            render(
                MepCommand::Status,
                false,
                r#"{"error":"no [mep] on this gateway"}"#
            ),
            Err("no [mep] on this gateway".into())
        );
        assert!(render(MepCommand::Status, false, "nope")
            .unwrap_err()
            .starts_with("invalid answer"));
        assert_eq!(
            render(MepCommand::Status, true, "{}"),
            Err("invalid answer: no \"groups\" array".into())
        );
    }
}
