//! `rampart gateway run --config FILE`

use std::process::ExitCode;

use crate::cli::RunArgs;
use crate::{logging, EXIT_CONFIG, EXIT_FAILURE};

/// Loads the configuration (exit 2 on errors), sets up logging, and runs the gateway on a
/// tokio runtime until a signal stops it (exit 0) or an error does (one line, exit 1).
pub fn run(args: RunArgs) -> ExitCode {
    let config = match rampart_config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = logging::init(args.log_level, args.log_format) {
        eprintln!("rampart: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rampart")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rampart: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let name = config.gateway.name.clone();
    match runtime.block_on(rampart_io::run_gateway(config, args.config.clone())) {
        Ok(()) => {
            tracing::info!("gateway {name} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rampart: gateway {name}: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
