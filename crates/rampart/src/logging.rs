//! Logging setup: tracing-subscriber on standard error, text or JSON.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, LogLevel};

/// Name of the environment variable whose filter overrides `--log-level`.
pub const LOG_ENV: &str = "RAMPART_LOG";

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// The filter in force: `RAMPART_LOG` when set and non-empty, else the level.
pub fn filter(level: LogLevel, env: Option<&str>) -> Result<EnvFilter, String> {
    match env.map(str::trim).filter(|s| !s.is_empty()) {
        Some(directives) => EnvFilter::try_new(directives)
            .map_err(|e| format!("invalid {LOG_ENV} filter \"{directives}\": {e}")),
        None => Ok(EnvFilter::new(level_name(level))),
    }
}

/// Installs the global subscriber. Fails on an invalid `RAMPART_LOG`.
pub fn init(level: LogLevel, format: LogFormat) -> Result<(), String> {
    let env = std::env::var(LOG_ENV).ok();
    let filter = filter(level, env.as_deref())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot set up logging: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_level() {
        assert_eq!(filter(LogLevel::Warn, None).unwrap().to_string(), "warn");
        assert_eq!(
            filter(LogLevel::Warn, Some("  ")).unwrap().to_string(),
            "warn"
        );
        assert_eq!(
            filter(LogLevel::Warn, Some("rampart_ike=debug"))
                .unwrap()
                .to_string(),
            "rampart_ike=debug"
        );
        let err = filter(LogLevel::Warn, Some("rampart_ike=loud")).unwrap_err();
        assert!(err.starts_with("invalid RAMPART_LOG filter"), "{err}");
    }
}
