//! Learned entry points in the client shell: the profile a connection round uses (its own
//! gateways, then those learned from a gateway at an earlier connect, see
//! `rampart_connect::learned`), and recording a list the gateway sends.
//!
//! With one `gateway` the profile gives no selection, so the learned one applies; with
//! `gateways = [...]` the profile's `selection` stands.

use rampart_config::{ClientProfile, ClientSelection};
use rampart_connect::entry_points::Selection;
use rampart_connect::learned::{self, Learned};
use rampart_wire::ike::EntryPointList;

/// The profile of the next connection round and the list it was merged with.
#[derive(Debug, Clone)]
pub struct Merged {
    pub profile: ClientProfile,
    pub learned: Option<Learned>,
}

/// `profile` with what is stored in its state directory (nothing when `learn_gateways` is
/// off, or the file is absent or unreadable: logged).
pub fn merged(profile: &ClientProfile) -> Merged {
    let stored = if profile.learn_gateways {
        let path = learned::path(&profile.state_dir, &profile.name);
        learned::Learned::load(&path).unwrap_or_else(|e| {
            tracing::warn!(
                "client {}: ignoring the learned entry points in {}: {e}",
                profile.name,
                path.display()
            );
            None
        })
    } else {
        None
    };
    let Some(l) = stored else {
        return Merged {
            profile: profile.clone(),
            learned: None,
        };
    };
    let own: Vec<String> = profile.entry_points.iter().map(|e| e.to_string()).collect();
    let extra = learned::extra(&own, &l.entries);
    let own_selection =
        (profile.entry_points.len() > 1).then(|| super::mep::selection(profile.selection));
    let selection = match learned::selection(own_selection, l.selection, Selection::default()) {
        Selection::FirstToRespond => ClientSelection::FirstToRespond,
        Selection::PrimaryBackup => ClientSelection::PrimaryBackup,
    };
    Merged {
        profile: profile.with_learned_entry_points(&extra, Some(selection)),
        learned: Some(l),
    }
}

/// Stores the list `from` (an entry point as the client names it) sent, replacing the one
/// before; `None` (nothing stored) when learning is off or the write failed (logged).
pub fn record(profile: &ClientProfile, from: &str, list: &EntryPointList) -> Option<Learned> {
    if !profile.learn_gateways {
        return None;
    }
    let l = Learned::new(from, super::status::unix_now(), list);
    let path = learned::path(&profile.state_dir, &profile.name);
    match l.store(&path) {
        Ok(()) => {
            tracing::info!(
                "client {}: learned {} entry point(s) from {from}: {}",
                profile.name,
                l.entries.len(),
                l.entries.join(" ")
            );
            Some(l)
        }
        Err(e) => {
            tracing::warn!(
                "client {}: cannot store the learned entry points in {}: {e}",
                profile.name,
                path.display()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_wire::ike::EntryPointSelection;

    fn profile(dir: &std::path::Path, gateways: &str, learn: bool) -> ClientProfile {
        let text = format!(
            "{gateways}\nlocal_id = \"laptop.example.com\"\npsk = \"another pre-shared key, long enough\"\nstate_dir = \"{}\"\nlearn_gateways = {learn}\n",
            dir.display()
        );
        rampart_config::parse_profile(&text, "corp.toml").unwrap()
    }

    fn names(p: &ClientProfile) -> Vec<String> {
        p.entry_points.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn learned_entry_points_follow_the_profiles_own() {
        let dir = std::env::temp_dir().join(format!("rampart-learned-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let one = profile(&dir, "gateway = \"vpn.example.org\"", true);
        // Nothing learned yet: the profile as written.
        let m = merged(&one);
        assert!(m.learned.is_none());
        assert_eq!(names(&m.profile), ["vpn.example.org"]);
        let list = EntryPointList {
            selection: EntryPointSelection::PrimaryBackup,
            entries: vec![
                "vpn.example.org".into(),
                "vpn-eu.example.org".into(),
                "[2001:db8::7]:8443".into(),
            ],
        };
        let l = record(&one, "vpn.example.org", &list).unwrap();
        assert_eq!(l.entries, list.entries);
        let m = merged(&one);
        assert_eq!(
            names(&m.profile),
            [
                "vpn.example.org",
                "vpn-eu.example.org",
                "[2001:db8::7]:8443"
            ]
        );
        assert_eq!(m.profile.selection, ClientSelection::PrimaryBackup);
        assert_eq!(m.profile.entry_points[2].visitor_port, 8443);
        assert_eq!(m.profile.entry_points[1].visitor_port, one.visitor_port);
        assert_eq!(
            m.learned.as_ref().map(|l| l.from.as_str()),
            Some("vpn.example.org")
        );
        // A profile with its own gateways keeps its selection and order; learned ones follow.
        let two = profile(
            &dir,
            "gateways = [\"vpn-eu.example.org\", \"vpn-us.example.org\"]",
            true,
        );
        let m = merged(&two);
        assert_eq!(
            names(&m.profile),
            [
                "vpn-eu.example.org",
                "vpn-us.example.org",
                "vpn.example.org",
                "[2001:db8::7]:8443"
            ]
        );
        assert_eq!(m.profile.selection, ClientSelection::FirstToRespond);
        // The next list replaces the previous one.
        let list = EntryPointList {
            selection: EntryPointSelection::Unspecified,
            entries: vec!["vpn-ap.example.org".into()],
        };
        record(&one, "vpn-eu.example.org", &list).unwrap();
        let m = merged(&one);
        assert_eq!(names(&m.profile), ["vpn.example.org", "vpn-ap.example.org"]);
        assert_eq!(m.profile.selection, ClientSelection::FirstToRespond);
        // Learning off: nothing is stored or used.
        let off = profile(&dir, "gateway = \"vpn.example.org\"", false);
        assert!(record(&off, "vpn.example.org", &list).is_none());
        assert_eq!(names(&merged(&off).profile), ["vpn.example.org"]);
        // A damaged file is ignored.
        std::fs::write(learned::path(&dir, "corp"), "gateway\n").unwrap();
        assert_eq!(names(&merged(&one).profile), ["vpn.example.org"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
