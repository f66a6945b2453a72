//! Learned entry points: the list a gateway hands its remote-access client at connect
//! (RAMPART_ENTRY_POINTS, see `rampart_wire::ike::cfg_entry_points`), kept in the client's
//! state directory (`<state_dir>/<name>.gateways`) and used from the next connection on.
//!
//! - Each list received replaces the one stored before (a gateway that sends none leaves it).
//! - The order of a connection: the profile's own gateways first, in their order, then the
//!   learned ones the profile does not list ([`extra`]); the learned selection applies only
//!   when the profile gives none ([`selection`]).
//!
//! The file is text, one `key value` a line, written whole to a temporary file and renamed:
//!
//! ```text
//! from vpn.example.org
//! at 1796000000
//! selection primary-backup
//! gateway vpn-eu.example.org
//! gateway 203.0.113.7:443
//! ```
//!
//! Reading is strict (the entries are checked as on the wire); a file that does not parse is
//! an error the caller logs, and it is then treated as absent.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rampart_wire::ike::cfg_entry_points::{validate_entry_point, MAX_ENTRY_POINTS};
use rampart_wire::ike::{EntryPointList, EntryPointSelection};
use thiserror::Error;

use crate::entry_points::Selection;

/// Why a learned-gateways file was not read.
#[derive(Debug, Error)]
pub enum LearnedError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("line {line}: {why}")]
    Format { line: usize, why: String },
}

/// A list learned from a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The entry point the list came from (as the client named it).
    pub from: String,
    /// Unix time it was received.
    pub at_unix: u64,
    pub selection: EntryPointSelection,
    /// 1 to 16 entries, each valid, none twice.
    pub entries: Vec<String>,
}

/// `<state_dir>/<name>.gateways`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(format!("{name}.gateways"))
}

fn selection_word(s: EntryPointSelection) -> &'static str {
    s.as_str().unwrap_or("unspecified")
}

impl Learned {
    /// What `from` sent at `at_unix`.
    pub fn new(from: &str, at_unix: u64, list: &EntryPointList) -> Learned {
        Learned {
            from: from.to_owned(),
            at_unix,
            selection: list.selection,
            entries: list.entries.clone(),
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = format!(
            "from {}\nat {}\nselection {}\n",
            self.from,
            self.at_unix,
            selection_word(self.selection)
        );
        for e in &self.entries {
            out.push_str("gateway ");
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Parses [`Learned::to_text`]'s format strictly: every key once (`gateway` 1 to 16
    /// times), nothing else.
    pub fn parse(text: &str) -> Result<Learned, LearnedError> {
        let err = |line: usize, why: String| LearnedError::Format { line, why };
        let (mut from, mut at, mut selection) = (None, None, None);
        let mut entries: Vec<String> = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let n = i + 1;
            let (key, value) = l
                .split_once(' ')
                .ok_or_else(|| err(n, format!("expected `key value`, got {l:?}")))?;
            let once = |given: bool| {
                if given {
                    Err(err(n, format!("{key} given twice")))
                } else {
                    Ok(())
                }
            };
            match key {
                "from" => {
                    once(from.is_some())?;
                    from = Some(value.to_owned());
                }
                "at" => {
                    once(at.is_some())?;
                    at = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| err(n, format!("bad time {value:?}")))?,
                    );
                }
                "selection" => {
                    once(selection.is_some())?;
                    selection = Some(match value {
                        "unspecified" => EntryPointSelection::Unspecified,
                        "first-to-respond" => EntryPointSelection::FirstToRespond,
                        "primary-backup" => EntryPointSelection::PrimaryBackup,
                        _ => return Err(err(n, format!("unknown selection {value:?}"))),
                    });
                }
                "gateway" => {
                    validate_entry_point(value).map_err(|e| err(n, e.to_string()))?;
                    if entries.iter().any(|e| e == value) {
                        return Err(err(n, format!("{value} listed twice")));
                    }
                    if entries.len() == MAX_ENTRY_POINTS {
                        return Err(err(n, format!("more than {MAX_ENTRY_POINTS} gateways")));
                    }
                    entries.push(value.to_owned());
                }
                _ => return Err(err(n, format!("unknown key {key:?}"))),
            }
        }
        let end = text.lines().count();
        let missing = |k: &str| err(end, format!("no `{k}` line"));
        if entries.is_empty() {
            return Err(missing("gateway"));
        }
        Ok(Learned {
            from: from.ok_or_else(|| missing("from"))?,
            at_unix: at.ok_or_else(|| missing("at"))?,
            selection: selection.ok_or_else(|| missing("selection"))?,
            entries,
        })
    }

    /// The list stored at `path`; `Ok(None)` when there is no file.
    pub fn load(path: &Path) -> Result<Option<Learned>, LearnedError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Learned::parse(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LearnedError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Replaces the file at `path` (a temporary file next to it, then a rename; mode 0600).
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("gateways.tmp");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

/// The learned entries to try after the profile's own (`own`, as `host`, `host:port` or
/// `[v6]:port`): those `own` does not list (host names compare without case), in the learned
/// order.
pub fn extra(own: &[String], learned: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in learned {
        let listed = |v: &[String]| v.iter().any(|o| o.eq_ignore_ascii_case(l));
        if !listed(own) && !listed(&out) {
            out.push(l.clone());
        }
    }
    out
}

/// The selection of a connection: the profile's when it chose one (`own`), else the learned
/// one when the gateway gave one, else `fallback`.
pub fn selection(
    own: Option<Selection>,
    learned: EntryPointSelection,
    fallback: Selection,
) -> Selection {
    own.unwrap_or(match learned {
        EntryPointSelection::Unspecified => fallback,
        EntryPointSelection::FirstToRespond => Selection::FirstToRespond,
        EntryPointSelection::PrimaryBackup => Selection::PrimaryBackup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn sample() -> Learned {
        Learned::new(
            "vpn.example.org",
            1_796_000_000,
            &EntryPointList {
                selection: EntryPointSelection::PrimaryBackup,
                entries: s(&["vpn.example.org", "vpn-eu.example.org", "203.0.113.7:443"]),
            },
        )
    }

    #[test]
    fn file_round_trip_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "corp");
        assert!(Learned::load(&p).unwrap().is_none());
        let a = sample();
        a.store(&p).unwrap();
        assert_eq!(Learned::load(&p).unwrap(), Some(a.clone()));
        // The next connect's list replaces it whole.
        let b = Learned::new(
            "vpn-eu.example.org",
            1_796_000_100,
            &EntryPointList {
                selection: EntryPointSelection::Unspecified,
                entries: s(&["[2001:db8::7]:443"]),
            },
        );
        b.store(&p).unwrap();
        assert_eq!(Learned::load(&p).unwrap(), Some(b));
        assert!(!p.with_extension("gateways.tmp").exists());
    }

    #[test]
    fn malformed_files_are_errors() {
        let good = sample().to_text();
        for bad in [
            String::new(),
            good.replace("gateway ", "gatway "),
            good.replace("at 1796000000", "at soon"),
            good.replace("primary-backup", "round-robin"),
            good.replace("203.0.113.7:443", "203.0.113.7:0"),
            good.replace("203.0.113.7:443", "vpn.example.org"),
            format!("{good}from x\n"),
            good.replace("from vpn.example.org\n", ""),
            "from a\nat 1\nselection unspecified\n".to_string(),
            format!("{good}oops\n"),
        ] {
            assert!(
                matches!(Learned::parse(&bad), Err(LearnedError::Format { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn merge_puts_the_profile_first_then_the_new_learned_ones() {
        let own = s(&["vpn.example.org"]);
        assert_eq!(
            extra(
                &own,
                &s(&["VPN.example.org", "vpn-eu.example.org", "203.0.113.7:443"])
            ),
            s(&["vpn-eu.example.org", "203.0.113.7:443"])
        );
        assert!(extra(&own, &own).is_empty());
        assert_eq!(
            extra(&[], &s(&["a.example", "A.example"])),
            s(&["a.example"])
        );
        let fb = Selection::FirstToRespond;
        assert_eq!(
            selection(None, EntryPointSelection::PrimaryBackup, fb),
            Selection::PrimaryBackup
        );
        assert_eq!(
            selection(Some(fb), EntryPointSelection::PrimaryBackup, fb),
            fb
        );
        assert_eq!(selection(None, EntryPointSelection::Unspecified, fb), fb);
    }
}
