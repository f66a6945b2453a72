//! `rampart reload --config FILE`: validate the file here, then have the running gateway read
//! and apply it (`reload <path>` on its status socket). A file with errors never reaches the
//! gateway; the gateway checks it again itself and refuses it whole if it changed in between.

use std::process::ExitCode;

use rampart_node::ReloadReport;

use crate::cli::ReloadArgs;
use crate::{EXIT_CONFIG, EXIT_FAILURE};

pub fn run(args: &ReloadArgs) -> ExitCode {
    let config = match rampart_config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "rampart: {} not reloaded; the running gateway is unchanged",
                args.config.display()
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let path = match std::fs::canonicalize(&args.config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rampart: {}: {e}", args.config.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let socket = &config.gateway.status_socket;
    let shown = socket.display();
    let request = format!("reload {}", path.display());
    let answer = match rampart_io::status_server::query(socket, &request) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "rampart: is gateway {} running? cannot query {shown}: {e}",
                config.gateway.name
            );
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(&answer) {
        if let Some(serde_json::Value::String(e)) = o.get("error") {
            eprintln!("{e}");
            eprintln!(
                "rampart: gateway {} refused the reload and is unchanged",
                config.gateway.name
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    }
    let report: ReloadReport = match serde_json::from_str(&answer) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rampart: unexpected answer from {shown}: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render(&config.gateway.name, &path, &report));
    }
    ExitCode::SUCCESS
}

fn names(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// The report as a few lines for a person.
fn render(gateway: &str, path: &std::path::Path, r: &ReloadReport) -> String {
    format!(
        "gateway {gateway} reloaded from {}\n  peers added: {}\n  peers removed: {}\n  peers re-established: {}\n  peers updated in place: {}\n  peers unchanged: {}\n  connections kept: {}, removed by the new rule base: {}\n",
        path.display(),
        names(&r.added),
        names(&r.removed),
        names(&r.reestablished),
        names(&r.updated),
        names(&r.unchanged),
        r.connections_kept,
        r.connections_dropped,
    )
}
