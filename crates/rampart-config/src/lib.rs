//! Rampart configuration: the TOML schema of a gateway and its validation.
//!
//! Every table denies unknown keys. [`GatewayConfig`] is the validated, typed form that the
//! node consumes; parsing and validation errors name the file, the key, what is wrong and what
//! is allowed, and all of them are reported at once:
//!
//! ```text
//! gw.toml:23:18: peer[0].start_action: unknown value "sometimes"; allowed: none, on-traffic, always
//! ```

mod client;
mod document;
mod error;
mod mep;
mod proposal;
mod raw;
mod schema;
mod units;
pub(crate) mod validate;

use std::path::Path;

pub use client::{
    load_profile, parse_profile, pool_conflicts, ClientProfile, ClientSelection, ClientTransport,
    DnsMode, EntryPoint, PoolConflict, ProxySetting, CLIENT_CONNECTIONS,
};
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use schema::*;

use error::Sink;

/// Reads and validates a gateway configuration file. Relative paths inside it (`psk_file`,
/// `status_socket`) are resolved against the file's directory.
pub fn load(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &name),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            kind: ErrorKind::Io,
            file: name,
            position: None,
            key: String::new(),
            message: format!("cannot read the configuration: {e}"),
            allowed: None,
        }])),
    }
}

/// Validates configuration text. `file_name` names the file in errors, and its directory is
/// where relative paths inside the configuration start.
pub fn parse(text: &str, file_name: &str) -> Result<GatewayConfig, ConfigErrors> {
    let mut sink = Sink::new(file_name, text);
    let base_dir = Path::new(file_name).parent().unwrap_or(Path::new(""));
    let config = document::read(text, &mut sink)
        .and_then(|doc| validate::validate(doc, base_dir, &mut sink));
    match config {
        Some(config) if sink.is_empty() => Ok(config),
        _ => Err(ConfigErrors(sink.finish())),
    }
}
