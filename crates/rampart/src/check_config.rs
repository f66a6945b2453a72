//! `rampart check-config FILE... [--profile FILE]...`

use std::process::ExitCode;

use crate::cli::CheckConfigArgs;

/// Checks every gateway file and client profile; prints `FILE: ok (...)` or each error on its
/// own line (stdout for success lines, stderr for errors). Exit 0 when all files are valid, 2
/// otherwise.
pub fn run(args: &CheckConfigArgs) -> ExitCode {
    let mut failed = false;
    for file in &args.files {
        match rampart_config::load(file) {
            Ok(config) => {
                let n = config.peers.len();
                let noun = if n == 1 { "peer" } else { "peers" };
                let cluster = config.cluster.as_ref().map_or_else(String::new, |c| {
                    let load_sharing = c.load_sharing.as_ref().map_or_else(String::new, |ls| {
                        format!(
                            ", load sharing ({})",
                            crate::ls_view::distribution_name(ls.distribution)
                        )
                    });
                    format!(
                        ", cluster {} member {} of {}{load_sharing}",
                        c.name,
                        c.member_id,
                        c.members.len()
                    )
                });
                let remote_access = config
                    .remote_access_template
                    .as_ref()
                    .map_or_else(String::new, |t| {
                        format!(", remote access pool {}", t.gateway.pool.prefix)
                    });
                println!(
                    "{}: ok ({n} {noun}{cluster}{remote_access})",
                    file.display()
                );
            }
            Err(errors) => {
                failed = true;
                eprintln!("{errors}");
            }
        }
    }
    for file in &args.profile {
        match rampart_config::load_profile(file) {
            Ok(p) => {
                let port = p.gateway_port.map_or_else(String::new, |p| format!(":{p}"));
                let auth = match (&p.eap, &p.auth) {
                    (Some((user, _)), _) => format!("EAP-MSCHAPv2 user {user}"),
                    (None, rampart_config::PeerAuth::Cert(_)) => "certificate".to_string(),
                    (None, rampart_config::PeerAuth::Psk) => "pre-shared key".to_string(),
                    (None, rampart_config::PeerAuth::Verify(_)) => {
                        "no credentials of its own (certificate check only)".to_string()
                    }
                };
                println!(
                    "{}: ok (client profile {}, gateway {}{port}, {auth})",
                    file.display(),
                    p.name,
                    p.gateway
                );
            }
            Err(errors) => {
                failed = true;
                eprintln!("{errors}");
            }
        }
    }
    if failed {
        ExitCode::from(crate::EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}
