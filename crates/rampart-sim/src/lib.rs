//! Deterministic network simulator: whole topologies of hosts (real TCP from smoltcp),
//! routers, NATs, firewalls and Rampart gateways (the real `rampart_node::Gateway` engine) in
//! virtual time, with one seeded RNG, so that a seed reproduces a run byte for byte.
//!
//! Scenarios are TOML files (`scenarios/` in the repository, built into [`catalogue`]); see
//! `docs/lab.md`. [`run`] executes one and returns a [`Report`].

mod build;
mod client;
mod cluster_checks;
mod ecmp;
mod gateway_node;
mod gateway_stream;
mod host;
mod middlebox;
pub mod packet;
mod proxy;
mod report;
mod run;
pub mod scenario;
mod stream;
pub mod units;
mod world;

use std::path::{Path, PathBuf};
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
        builtin!("cert-behind-nat"),
        builtin!("ha-failover"),
        builtin!("ha-rejoin"),
        builtin!("ha-sync-loss"),
        builtin!("ha-split-brain"),
        builtin!("ls-asymmetric"),
        builtin!("ls-asymmetric-no-fa"),
        builtin!("ls-member-dies"),
        builtin!("ls-unicast"),
        builtin!("sync-over-wan"),
        builtin!("sync-link-fails"),
        builtin!("mep-first-to-respond"),
        builtin!("mep-primary-backup"),
        builtin!("mep-load-distribution"),
        builtin!("mep-priority-rules"),
        builtin!("hotel-wifi"),
        builtin!("proxy-only"),
        builtin!("nat-rebinding"),
        builtin!("roaming"),
        builtin!("mtu-black-hole"),
        builtin!("ra-cluster-failover-udp"),
        builtin!("ra-cluster-failover-tls"),
        builtin!("ra-mep-failover"),
        builtin!("ra-mep-learned"),
        builtin!("ra-ls"),
    ]
}

macro_rules! pki_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../scenarios/", $path)))
    };
}

/// Files the built-in scenarios refer to (relative to `scenarios/`), embedded so that an
/// installed binary has them too. Test-only keys: see `scenarios/pki/README.md`.
const BUILTIN_FILES: &[(&str, &str)] = &[
    pki_file!("pki/cert-behind-nat/ca.crt"),
    pki_file!("pki/cert-behind-nat/certs/gw-a.crt"),
    pki_file!("pki/cert-behind-nat/certs/gw-b.crt"),
    pki_file!("pki/cert-behind-nat/private/gw-a.key"),
    pki_file!("pki/cert-behind-nat/private/gw-b.key"),
];

/// The directory relative paths of built-in scenarios start at: `scenarios/` of the source
/// tree when it is there, else a directory under the system's temporary directory where the
/// embedded files are written (once; existing identical files are left alone).
pub fn builtin_dir() -> Result<PathBuf, SimError> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    if BUILTIN_FILES
        .iter()
        .all(|(p, text)| std::fs::read_to_string(source.join(p)).is_ok_and(|t| t == *text))
    {
        return Ok(source);
    }
    let dir = std::env::temp_dir().join(format!("rampart-lab-{}", env!("CARGO_PKG_VERSION")));
    for (p, text) in BUILTIN_FILES {
        let path = dir.join(p);
        if std::fs::read_to_string(&path).is_ok_and(|t| t == *text) {
            continue;
        }
        let io = |e| SimError::Io(path.display().to_string(), e);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(dir)
}

/// Name of the scenario `rampart lab` runs without arguments.
pub const SHOWCASE: &str = "showcase";

/// The showcase: short, and shows a tunnel, a transfer, a rekey, loss and a recovery.
pub fn showcase() -> Builtin {
    builtin!("showcase")
}

/// Finds a scenario by built-in name or file path; returns it and the directory its relative
/// paths (`config_file`, certificates in gateway configurations) start at.
pub fn load(name_or_file: &str) -> Result<(Scenario, Option<PathBuf>), SimError> {
    let builtin = if name_or_file == SHOWCASE {
        Some(showcase())
    } else {
        catalogue().into_iter().find(|b| b.name == name_or_file)
    };
    if let Some(b) = builtin {
        return Ok((scenario::parse(b.text, b.name)?, Some(builtin_dir()?)));
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
