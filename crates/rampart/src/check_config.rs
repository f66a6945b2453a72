//! `rampart check-config FILE... [--profile FILE]...`

use std::process::ExitCode;

use crate::cli::CheckConfigArgs;

/// Checks every gateway file and client profile; prints `FILE: ok (...)` or each error on its
/// own line (stdout for success lines, stderr for errors). Then the Office Mode pools of the
/// remote-access gateways checked together (`rampart_config::pool_conflicts`): overlapping
/// pools of gateways that are not one cluster are an error when a profile lists both as entry
/// points, else a warning. Exit 0 when all files are valid, 2 otherwise.
pub fn run(args: &CheckConfigArgs) -> ExitCode {
    let mut failed = false;
    let mut gateways = Vec::new();
    let mut profiles = Vec::new();
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
                gateways.push((file.display().to_string(), config));
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
                let gateway = if p.entry_points.len() > 1 {
                    let list: Vec<String> =
                        p.entry_points.iter().map(ToString::to_string).collect();
                    format!("gateways {} ({})", list.join(", "), p.selection.as_str())
                } else {
                    format!("gateway {}{port}", p.gateway)
                };
                println!(
                    "{}: ok (client profile {}, {gateway}, {auth})",
                    file.display(),
                    p.name,
                );
                profiles.push((file.display().to_string(), p));
            }
            Err(errors) => {
                failed = true;
                eprintln!("{errors}");
            }
        }
    }
    let gws: Vec<(String, &rampart_config::GatewayConfig)> =
        gateways.iter().map(|(f, c)| (f.clone(), c)).collect();
    let ps: Vec<(String, &rampart_config::ClientProfile)> =
        profiles.iter().map(|(f, p)| (f.clone(), p)).collect();
    for conflict in rampart_config::pool_conflicts(&gws, &ps) {
        failed |= conflict.profile.is_some();
        eprintln!("{conflict}");
    }
    if failed {
        ExitCode::from(crate::EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}
