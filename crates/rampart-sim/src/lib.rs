//! Deterministic network simulator: whole topologies of hosts (real TCP from smoltcp),
//! routers, NATs, firewalls and Rampart gateways (the real `rampart_node::Gateway` engine) in
//! virtual time, with one seeded RNG, so that a seed reproduces a run byte for byte.
//!
//! Scenarios are TOML files (`scenarios/` in the repository, built into [`catalogue`]); see
//! `docs/lab.md`. [`run`] executes one and returns a [`Report`].

mod build;
mod gateway_node;
mod host;
mod middlebox;
pub mod packet;
mod report;
mod run;
pub mod scenario;
pub mod units;
mod world;

use std::path::Path;
use std::time::Duration;

pub use report::{Outcome, Report, Verdict};
pub use scenario::Scenario;

/// Errors of the simulator (not assertion failures: those are in the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("no built-in scenario named {0:?} and no such file")]
    Unknown(String),
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("the simulation ran away (too many events) at {0:?} of simulated time")]
    Runaway(Duration),
}

/// A scenario that ships with Rampart.
pub struct Builtin {
    pub name: &'static str,
    pub text: &'static str,
}

macro_rules! builtin {
    ($name:literal) => {
        Builtin {
            name: $name,
            text: include_str!(concat!("../../../scenarios/", $name, ".toml")),
        }
    };
}

/// The shipped scenarios, in the order `rampart lab list` shows them.
pub fn catalogue() -> Vec<Builtin> {
    vec![
        builtin!("site-to-site"),
        builtin!("rekey-under-load"),
        builtin!("dead-peer"),
        builtin!("lossy-wan"),
    ]
}

/// Name of the scenario `rampart lab` runs without arguments.
pub const SHOWCASE: &str = "showcase";

/// The showcase: short, and shows a tunnel, a transfer, a rekey, loss and a recovery.
pub fn showcase() -> Builtin {
    builtin!("showcase")
}

/// Finds a scenario by built-in name or file path; returns it and the directory its
/// `config_file` keys are relative to.
pub fn load(name_or_file: &str) -> Result<(Scenario, Option<std::path::PathBuf>), SimError> {
    if name_or_file == SHOWCASE {
        let b = showcase();
        return Ok((scenario::parse(b.text, b.name)?, None));
    }
    if let Some(b) = catalogue().into_iter().find(|b| b.name == name_or_file) {
        return Ok((scenario::parse(b.text, b.name)?, None));
    }
    let path = Path::new(name_or_file);
    if !path.exists() {
        return Err(SimError::Unknown(name_or_file.to_string()));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| SimError::Io(path.display().to_string(), e))?;
    let sc = scenario::parse(&text, &path.display().to_string())?;
    Ok((sc, path.parent().map(Path::to_path_buf)))
}

/// Runs a scenario with `seed` (its own default seed when `None`).
pub fn run(sc: &Scenario, base_dir: Option<&Path>, seed: Option<u64>) -> Result<Report, SimError> {
    run::run(sc, base_dir, seed.unwrap_or(sc.seed))
}
