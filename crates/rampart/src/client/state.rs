//! The client's state file: a journal of every change made to the host (addresses, routes,
//! DNS, the kill switch, the PAC file), so that `down`, SIGTERM and the next start after a
//! crash or `kill -9` can undo exactly those changes and nothing else.
//!
//! Invariants:
//! - A change is appended to the file (written to a temporary file, synced, renamed) *before*
//!   it is made, and removed from it only *after* it was undone. A crash in between leaves an
//!   entry whose undo finds nothing to do, which every undo tolerates.
//! - Restore planning ([`plan_restore`]) is a pure function of the journal and of what exists
//!   now, so it is tested without touching the host.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The journal's format version; a file with another version is refused, not guessed at.
pub const VERSION: u32 = 1;

/// One change the client made to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// `addr` on the device `dev` (the Office Mode address on the TUN device).
    Address { dev: String, addr: IpNet },
    /// A route `dest` out of `dev`, through `via` when set (the host route to the gateway
    /// through the original default route; subnets or 0/1 + 128/1 through the TUN device).
    Route {
        dest: IpNet,
        via: Option<IpAddr>,
        dev: String,
    },
    /// systemd-resolved settings (DNS servers and routing domains) on the link `dev`;
    /// undone with `resolvectl revert`.
    Resolved { dev: String },
    /// `/etc/resolv.conf` (`path`) replaced; the original is in `backup`. `symlink`: the
    /// original was a symlink to this target (restored as the same symlink).
    ResolvConf {
        path: PathBuf,
        backup: PathBuf,
        symlink: Option<PathBuf>,
    },
    /// The nftables table `inet <table>` (the kill switch).
    Nft { table: String },
    /// The proxy-replacement PAC file written at `path`.
    PacFile { path: PathBuf },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Address { dev, addr } => write!(f, "address {addr} on {dev}"),
            Change::Route {
                dest,
                via: Some(via),
                dev,
            } => write!(f, "route {dest} via {via} dev {dev}"),
            Change::Route {
                dest,
                via: None,
                dev,
            } => write!(f, "route {dest} dev {dev}"),
            Change::Resolved { dev } => write!(f, "systemd-resolved DNS on {dev}"),
            Change::ResolvConf { path, .. } => write!(f, "{}", path.display()),
            Change::Nft { table } => write!(f, "nftables table inet {table}"),
            Change::PacFile { path } => write!(f, "PAC file {}", path.display()),
        }
    }
}

/// The state file of one client connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The process that owns the changes.
    pub pid: u32,
    /// The profile's `name`.
    pub name: String,
    /// The TUN device.
    pub device: String,
    /// Changes in the order they were made; undone in reverse.
    pub changes: Vec<Change>,
}

impl State {
    pub fn new(pid: u32, name: &str, device: &str) -> State {
        State {
            version: VERSION,
            pid,
            name: name.to_owned(),
            device: device.to_owned(),
            changes: Vec::new(),
        }
    }
}

/// Errors reading or writing the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {} is not valid ({message}); move it away after checking the routes, DNS and `nft list tables` by hand", path.display())]
    Invalid { path: PathBuf, message: String },
}

/// The journal on disk: [`Journal::record`] before a change, [`Journal::forget`] after its
/// undo. Every call rewrites the whole file atomically (it holds a handful of entries).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    state: State,
}

impl Journal {
    /// Starts a fresh journal at `path` (creating its directory, mode 0700).
    pub fn create(path: &Path, state: State) -> Result<Journal, StateError> {
        if let Some(dir) = path.parent() {
            create_private_dir(dir).map_err(|source| StateError::Io {
                path: dir.to_owned(),
                source,
            })?;
        }
        let journal = Journal {
            path: path.to_owned(),
            state,
        };
        journal.save()?;
        Ok(journal)
    }

    /// Takes over a journal read with [`load`] (to undo what it lists).
    pub fn adopt(path: &Path, state: State) -> Journal {
        Journal {
            path: path.to_owned(),
            state,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Appends `change` and writes the file; the caller makes the change only on `Ok`.
    pub fn record(&mut self, change: Change) -> Result<(), StateError> {
        if !self.state.changes.contains(&change) {
            self.state.changes.push(change);
        }
        self.save()
    }

    /// Removes `change` (after it was undone) and writes the file.
    pub fn forget(&mut self, change: &Change) -> Result<(), StateError> {
        self.state.changes.retain(|c| c != change);
        self.save()
    }

    /// Deletes the file (every change undone).
    pub fn remove(self) -> Result<(), StateError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io {
                path: self.path,
                source,
            }),
        }
    }

    fn save(&self) -> Result<(), StateError> {
        let err = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(&self.state).map_err(|e| StateError::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(err)?;
        file.write_all(&text).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

/// Reads the state file at `path`; `Ok(None)` when there is none.
pub fn load(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    parse(&bytes)
        .map(Some)
        .map_err(|message| StateError::Invalid {
            path: path.to_owned(),
            message,
        })
}

/// Decodes a state file, refusing other versions.
pub fn parse(bytes: &[u8]) -> Result<State, String> {
    let state: State = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if state.version != VERSION {
        return Err(format!(
            "version {} (this rampart writes version {VERSION})",
            state.version
        ));
    }
    Ok(state)
}

/// Creates `dir` and its parents; the last component gets mode 0700 when created.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// What exists on the host now, as far as restoring needs to know.
pub trait Host {
    /// Whether a network device of that name exists.
    fn device_exists(&self, dev: &str) -> bool;
    /// Whether process `pid` is alive and is a rampart client (not a reused pid).
    fn client_alive(&self, pid: u32) -> bool;
}

/// One step of a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// Undo this change.
    Undo(Change),
    /// Nothing to do: the change vanished with its device (TUN routes and address after the
    /// process died), only the journal entry goes.
    Vanished(Change),
}

/// Why a restore must not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreRefused {
    #[error("client {name} is running (pid {pid}); stop it with `rampart client down`")]
    Running { name: String, pid: u32 },
}

/// Plans the undo of `state` on `host`: newest change first; a change that lived on a device
/// that is gone (the TUN device of a dead process) has vanished with it; resolved settings of
/// a vanished link too (resolved forgets a link that disappears). Refused while the owning
/// process still runs, unless `own` (the running process restoring its own changes).
pub fn plan_restore(
    state: &State,
    host: &dyn Host,
    own: bool,
) -> Result<Vec<Restore>, RestoreRefused> {
    if !own && host.client_alive(state.pid) {
        return Err(RestoreRefused::Running {
            name: state.name.clone(),
            pid: state.pid,
        });
    }
    Ok(state
        .changes
        .iter()
        .rev()
        .map(|change| {
            let on_missing_device = match change {
                Change::Address { dev, .. }
                | Change::Route { dev, .. }
                | Change::Resolved { dev } => !host.device_exists(dev),
                Change::ResolvConf { .. } | Change::Nft { .. } | Change::PacFile { .. } => false,
            };
            if on_missing_device {
                Restore::Vanished(change.clone())
            } else {
                Restore::Undo(change.clone())
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    struct FakeHost {
        devices: BTreeSet<&'static str>,
        alive: Option<u32>,
    }

    impl Host for FakeHost {
        fn device_exists(&self, dev: &str) -> bool {
            self.devices.contains(dev)
        }
        fn client_alive(&self, pid: u32) -> bool {
            self.alive == Some(pid)
        }
    }

    fn sample() -> State {
        let mut s = State::new(4242, "corp", "rampart-c0");
        s.changes = vec![
            Change::Nft {
                table: "rampart_client".into(),
            },
            Change::Route {
                dest: "192.0.2.1/32".parse().unwrap(),
                via: Some("10.0.0.1".parse().unwrap()),
                dev: "eth0".into(),
            },
            Change::Address {
                dev: "rampart-c0".into(),
                addr: "10.99.0.7/32".parse().unwrap(),
            },
            Change::Route {
                dest: "0.0.0.0/1".parse().unwrap(),
                via: None,
                dev: "rampart-c0".into(),
            },
            Change::Resolved {
                dev: "rampart-c0".into(),
            },
            Change::ResolvConf {
                path: "/etc/resolv.conf".into(),
                backup: "/run/rampart/client/corp.resolv.conf".into(),
                symlink: None,
            },
            Change::PacFile {
                path: "/run/rampart/client/corp.pac".into(),
            },
        ];
        s
    }

    #[test]
    fn after_kill_9_tun_changes_vanished_and_the_rest_is_undone_newest_first() {
        let host = FakeHost {
            devices: ["lo", "eth0"].into(),
            alive: None,
        };
        let s = sample();
        let plan = plan_restore(&s, &host, false).unwrap();
        let expected: Vec<Restore> = s
            .changes
            .iter()
            .rev()
            .map(|c| match c {
                Change::Address { .. } | Change::Resolved { .. } => Restore::Vanished(c.clone()),
                Change::Route { dev, .. } if dev == "rampart-c0" => Restore::Vanished(c.clone()),
                _ => Restore::Undo(c.clone()),
            })
            .collect();
        assert_eq!(plan, expected);
        // The host route to the gateway through eth0 would black-hole nothing but is still
        // removed; the kill switch is removed last (it was made first).
        assert_eq!(plan.last(), Some(&Restore::Undo(s.changes[0].clone())));
    }

    #[test]
    fn own_restore_undoes_everything_while_the_device_exists() {
        let host = FakeHost {
            devices: ["lo", "eth0", "rampart-c0"].into(),
            alive: Some(4242),
        };
        let s = sample();
        let plan = plan_restore(&s, &host, true).unwrap();
        assert_eq!(plan.len(), s.changes.len());
        assert!(plan.iter().all(|r| matches!(r, Restore::Undo(_))));
    }

    #[test]
    fn a_running_client_is_not_restored_behind_its_back() {
        let host = FakeHost {
            devices: ["rampart-c0"].into(),
            alive: Some(4242),
        };
        assert_eq!(
            plan_restore(&sample(), &host, false),
            Err(RestoreRefused::Running {
                name: "corp".into(),
                pid: 4242
            })
        );
    }

    #[test]
    fn journal_round_trip_and_write_ahead() {
        let dir = std::env::temp_dir().join(format!("rampart-state-{}", std::process::id()));
        let path = dir.join("corp.state");
        let mut journal = Journal::create(&path, State::new(1, "corp", "rampart-c0")).unwrap();
        for c in sample().changes {
            journal.record(c).unwrap();
        }
        // Recording twice keeps one entry.
        journal.record(sample().changes[0].clone()).unwrap();
        let read = load(&path).unwrap().unwrap();
        assert_eq!(read.changes, sample().changes);
        journal.forget(&sample().changes[1]).unwrap();
        assert_eq!(load(&path).unwrap().unwrap().changes.len(), 6);
        journal.remove().unwrap();
        assert_eq!(load(&path).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let mut s = sample();
        s.version = 9;
        let text = serde_json::to_vec(&s).unwrap();
        assert!(parse(&text).unwrap_err().contains("version 9"));
        assert!(parse(b"{").is_err());
        let good = serde_json::to_vec(&sample()).unwrap();
        assert_eq!(parse(&good).unwrap(), sample());
    }
}
