//! `rampart check-config FILE...`

use std::process::ExitCode;

use crate::cli::CheckConfigArgs;

/// Checks every file; prints `FILE: ok (N peers)` or each error on its own line (stdout for
/// success lines, stderr for errors). Exit 0 when all files are valid, 2 otherwise.
pub fn run(args: &CheckConfigArgs) -> ExitCode {
    let mut failed = false;
    for file in &args.files {
        match rampart_config::load(file) {
            Ok(config) => {
                let n = config.peers.len();
                let noun = if n == 1 { "peer" } else { "peers" };
                let cluster = config.cluster.as_ref().map_or_else(String::new, |c| {
                    format!(
                        ", cluster {} member {} of {}",
                        c.name,
                        c.member_id,
                        c.members.len()
                    )
                });
                println!("{}: ok ({n} {noun}{cluster})", file.display());
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
