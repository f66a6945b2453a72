//! The engine end to end with real probing (IKE liveness mode, simulated entry points):
//! stickiness, failover, return to primary for new connections only, tracking events, the
//! binding table's capacity and idle expiry, and status.

mod common;

use std::time::Duration;

use common::{config, flow, Sim, G};
use proptest::prelude::*;
use rampart_mep::{EntryPointId, GroupKind, Level, MepEvent, Method, ProbeState, StickySettings};

const M0: EntryPointId = EntryPointId(0);
const M1: EntryPointId = EntryPointId(1);
const M2: EntryPointId = EntryPointId(2);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn first_to_respond_sticks_fails_over_within_a_second_and_a_half() {
    let mut sim = Sim::new(config(
        2,
        Method::FirstToRespond,
        GroupKind::Explicit,
        Default::default(),
    ));
    sim.rtt = vec![secs(0.030), secs(0.005)];
    // Before any probe answered: nobody responds; the first member, counted.
    let r = sim.mep.resolve(sim.now, G, &flow(99, 1));
    assert!(!r.responding && r.new);
    assert_eq!(r.entry_point, M0);
    sim.run(secs(2.0));
    assert!(sim.mep.is_up(M0) && sim.mep.is_up(M1));
    let ups = sim
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, MepEvent::EntryPointUp { .. }))
        .count();
    assert_eq!(ups, 2);
    // The flow bound while nobody responded stays: its entry point is up now.
    let r = sim.mep.resolve(sim.now, G, &flow(99, 1));
    assert_eq!((r.entry_point, r.responding, r.new), (M0, true, false));

    // A new connection: the lowest RTT.
    let a = flow(1, 1000);
    let r = sim.mep.resolve(sim.now, G, &a);
    assert_eq!(
        (r.entry_point, r.level, r.responding, r.new),
        (M1, Level::Primary, true, true)
    );
    assert_eq!(
        sim.take_events(),
        vec![MepEvent::Resolved {
            group: G,
            flow: a,
            resolution: r
        }]
    );
    let r2 = sim.mep.resolve(sim.now, G, &a);
    assert_eq!((r2.entry_point, r2.new), (M1, false));
    assert!(
        sim.take_events().is_empty(),
        "only new bindings are tracked"
    );

    // m1 dies: within 1.5 s it is down and every connection (old and new) goes to m0.
    sim.set_alive(1, false);
    let died = sim.now;
    let mut t = 0.0;
    while sim.mep.is_up(M1) {
        sim.run(secs(0.01));
        t += 0.01;
        assert!(t < 1.5, "m1 still up after {t} s");
    }
    assert!(sim.now - died < secs(1.5));
    assert!(sim.take_events().iter().any(|e| matches!(
        e,
        MepEvent::EntryPointDown {
            entry_point: M1,
            ..
        }
    )));
    let r = sim.mep.resolve(sim.now, G, &a);
    assert_eq!((r.entry_point, r.responding, r.new), (M0, true, true));
    let r = sim.mep.resolve(sim.now, G, &flow(2, 1));
    assert_eq!((r.entry_point, r.new), (M0, true));

    // m1 back (and faster): m0 stays the current choice while it is up.
    sim.set_alive(1, true);
    sim.run(secs(3.0));
    assert!(sim.mep.is_up(M1));
    assert_eq!(sim.mep.resolve(sim.now, G, &flow(3, 1)).entry_point, M0);
    let st = sim.mep.status(sim.now);
    assert_eq!(st.groups[0].current.as_deref(), Some("m0"));
    assert_eq!(st.groups[0].entry_points[0].level, "primary");
    assert_eq!(st.groups[0].entry_points[1].level, "backup");
}

#[test]
fn primary_backup_new_connections_return_to_primary_existing_stay_on_backup() {
    let mut sim = Sim::new(config(
        3,
        Method::PrimaryBackup,
        GroupKind::ImplicitPrimaryBackup,
        [vec![0], vec![1, 2], vec![]],
    ));
    // The backups are faster: irrelevant.
    sim.rtt = vec![secs(0.050), secs(0.002), secs(0.001)];
    sim.run(secs(2.0));
    let a = flow(1, 1);
    assert_eq!(sim.mep.resolve(sim.now, G, &a).entry_point, M0);

    sim.set_alive(0, false);
    sim.run(secs(2.0));
    assert!(!sim.mep.is_up(M0));
    let r = sim.mep.resolve(sim.now, G, &a);
    assert_eq!((r.entry_point, r.level, r.new), (M1, Level::Backup, true));
    let b = flow(2, 1);
    assert_eq!(sim.mep.resolve(sim.now, G, &b).entry_point, M1);

    sim.set_alive(0, true);
    sim.run(secs(2.0));
    assert!(sim.mep.is_up(M0));
    // Existing connections stay on the backup...
    for f in [&a, &b] {
        let r = sim.mep.resolve(sim.now, G, f);
        assert_eq!((r.entry_point, r.level, r.new), (M1, Level::Backup, false));
    }
    // ...new ones go to the primary.
    let r = sim.mep.resolve(sim.now, G, &flow(3, 1));
    assert_eq!((r.entry_point, r.level, r.new), (M0, Level::Primary, true));

    // The backup dies: its connections move (to the primary, which is up).
    sim.set_alive(1, false);
    sim.run(secs(2.0));
    let r = sim.mep.resolve(sim.now, G, &a);
    assert_eq!((r.entry_point, r.new), (M0, true));

    let st = sim.mep.status(sim.now);
    let g = &st.groups[0];
    assert_eq!(g.current.as_deref(), Some("m0"));
    assert_eq!(g.resolutions, 5);
    assert_eq!(g.sticky_flows, 3);
    let levels: Vec<&str> = g.entry_points.iter().map(|e| e.level.as_str()).collect();
    assert_eq!(levels, ["primary", "backup", "backup"]);
    assert_eq!(g.entry_points[1].state, ProbeState::Down);
    // m0: a, the third connection, a again; m1: a and b.
    assert_eq!(g.entry_points[0].chosen, 3);
    assert_eq!(g.entry_points[1].chosen, 2);
    assert_eq!(g.entry_points[0].sticky_flows, 2);
    assert_eq!(
        g.entry_points[1].sticky_flows, 1,
        "b stays bound until its next packet"
    );
}

#[test]
fn random_method_per_pair_through_the_engine() {
    let mut sim = Sim::new(config(
        3,
        Method::Random,
        GroupKind::Explicit,
        Default::default(),
    ));
    sim.run(secs(2.0));
    let mut n = [0u32; 3];
    for h in 0..3000 {
        let r = sim.mep.resolve(sim.now, G, &flow(h, 1));
        assert!(r.responding && r.new);
        // Another connection of the same pair: same entry point.
        assert_eq!(
            sim.mep.resolve(sim.now, G, &flow(h, 2)).entry_point,
            r.entry_point
        );
        n[r.entry_point.0 as usize] += 1;
    }
    for c in n {
        assert!((850..=1150).contains(&c), "{n:?}");
    }
    let st = sim.mep.status(sim.now);
    assert_eq!(st.groups[0].current, None);
    assert_eq!(st.groups[0].resolutions, 6000);
    assert_eq!(st.groups[0].sticky_flows, 6000);
}

#[test]
fn status_counts_and_tunnel_flag() {
    let mut sim = Sim::new(config(
        3,
        Method::PriorityList,
        GroupKind::Explicit,
        [vec![], vec![2], vec![0]],
    ));
    sim.set_alive(2, false);
    sim.set_alive(0, false);
    sim.run(secs(3.0));
    // m1 (left out) is the only one up: the first-ranked allowed one, not responding.
    let r = sim.mep.resolve(sim.now, G, &flow(1, 1));
    assert_eq!(
        (r.entry_point, r.level, r.responding),
        (M2, Level::Secondary, false)
    );
    sim.mep.set_tunnel_up(M2, true);
    let st = sim.mep.status(sim.now);
    let g = &st.groups[0];
    assert_eq!(g.name, "hq");
    assert_eq!(g.method, Method::PriorityList);
    assert_eq!(g.current, None);
    assert_eq!(g.resolutions, 1);
    assert_eq!(g.resolutions_none_responding, 1);
    let levels: Vec<&str> = g.entry_points.iter().map(|e| e.level.as_str()).collect();
    assert_eq!(levels, ["tertiary", "none", "secondary"]);
    assert!(g.entry_points[2].tunnel_up && !g.entry_points[0].tunnel_up);
    assert_eq!(g.entry_points[1].state, ProbeState::Up);
    assert_eq!(g.entry_points[0].state, ProbeState::Down);
    assert_eq!(g.entry_points[2].address, "192.0.2.12");
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["groups"][0]["entry_points"][1]["level"], "none");
    assert_eq!(json["groups"][0]["sticky_full"], 0);
    // The tertiary comes up: the bound flow moves there.
    sim.set_alive(0, true);
    sim.run(secs(2.0));
    let r = sim.mep.resolve(sim.now, G, &flow(1, 1));
    assert_eq!(
        (r.entry_point, r.level, r.responding, r.new),
        (M0, Level::Tertiary, true, true)
    );
    let st = sim.mep.status(sim.now);
    assert_eq!(st.groups[0].current.as_deref(), Some("m0"));
}

#[test]
fn sticky_capacity_and_idle_expiry() {
    let mut cfg = config(
        2,
        Method::FirstToRespond,
        GroupKind::Explicit,
        Default::default(),
    );
    cfg.sticky = StickySettings {
        capacity: 2,
        idle: secs(20.0),
    };
    let mut sim = Sim::new(cfg);
    sim.run(secs(2.0));
    assert!(sim.mep.resolve(sim.now, G, &flow(1, 1)).new);
    assert!(sim.mep.resolve(sim.now, G, &flow(2, 1)).new);
    // Full: resolved (to the same choice) but not bound, on every packet.
    for _ in 0..3 {
        let r = sim.mep.resolve(sim.now, G, &flow(3, 1));
        assert_eq!((r.entry_point, r.responding, r.new), (M0, true, false));
    }
    let g = &sim.mep.status(sim.now).groups[0];
    assert_eq!((g.sticky_flows, g.sticky_full, g.resolutions), (2, 3, 2));
    // Flow 1 keeps being used; flow 2 goes idle and is swept, which frees room.
    for _ in 0..30 {
        sim.run(secs(1.0));
        assert!(!sim.mep.resolve(sim.now, G, &flow(1, 1)).new);
    }
    assert_eq!(sim.mep.status(sim.now).groups[0].sticky_flows, 1);
    assert!(sim.mep.resolve(sim.now, G, &flow(3, 1)).new);
    // Flow 2's binding expired and the table is full again: resolved without a binding.
    assert!(!sim.mep.resolve(sim.now, G, &flow(2, 1)).new);
    let g = &sim.mep.status(sim.now).groups[0];
    assert_eq!((g.sticky_flows, g.sticky_full, g.resolutions), (2, 4, 3));
}

#[test]
fn by_vpn_domain_through_the_engine() {
    let mut sim = Sim::new(config(
        3,
        Method::ByVpnDomain,
        GroupKind::Explicit,
        Default::default(),
    ));
    sim.run(secs(2.0));
    let mut f = flow(1, 1);
    f.dst = "10.2.3.4".parse().unwrap();
    let r = sim.mep.resolve(sim.now, G, &f);
    assert_eq!((r.entry_point, r.level), (M2, Level::Primary));
    sim.set_alive(2, false);
    sim.run(secs(2.0));
    let r = sim.mep.resolve(sim.now, G, &f);
    // Backups tie-break by first-to-respond: m0 has the lowest RTT.
    assert_eq!((r.entry_point, r.level, r.new), (M0, Level::Backup, true));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random up/down sequences through the real prober: after each change has been
    /// detected, every resolution is allowed by the rules, responding whenever an allowed
    /// member is up, and a bound connection keeps its entry point while it stays up.
    #[test]
    fn engine_choice_is_allowed_and_responding(
        levels in proptest::collection::vec(0u8..4, 3),
        toggles in proptest::collection::vec((0u32..3, any::<bool>()), 1..8),
    ) {
        let mut lv: [Vec<u32>; 3] = Default::default();
        for (i, &l) in levels.iter().enumerate() {
            if l < 3 { lv[l as usize].push(i as u32); }
        }
        let allowed: Vec<u32> = if lv.iter().all(|l| l.is_empty()) {
            vec![0, 1, 2]
        } else {
            lv.iter().flatten().copied().collect()
        };
        let mut sim = Sim::new(config(3, Method::PriorityList, GroupKind::Explicit, lv));
        sim.run(secs(2.0));
        let mut bound = Vec::new();
        for (step, (i, alive)) in toggles.into_iter().enumerate() {
            sim.set_alive(i, alive);
            sim.run(secs(2.0));
            for k in 0..3u32 {
                prop_assert_eq!(sim.mep.is_up(EntryPointId(k)), sim.alive[k as usize]);
            }
            let any_up = allowed.iter().any(|&k| sim.alive[k as usize]);
            let mut check = |f: &rampart_mep::FlowKey| -> Result<EntryPointId, TestCaseError> {
                let r = sim.mep.resolve(sim.now, G, f);
                prop_assert!(allowed.contains(&r.entry_point.0), "{:?}", r);
                prop_assert_eq!(r.responding, any_up);
                if r.responding { prop_assert!(sim.alive[r.entry_point.0 as usize]); }
                Ok(r.entry_point)
            };
            for (f, ep) in &bound {
                let now_ep = check(f)?;
                if sim.alive[ep_index(*ep)] && any_up {
                    prop_assert_eq!(now_ep, *ep, "a bound connection moved off a live entry point");
                }
            }
            let f = flow(step as u32, 1);
            let ep = check(&f)?;
            bound.push((f, ep));
            // Re-read bindings (moved ones now point at their new entry point).
            for b in bound.iter_mut() {
                b.1 = sim.mep.resolve(sim.now, G, &b.0).entry_point;
            }
        }
    }
}

fn ep_index(ep: EntryPointId) -> usize {
    ep.0 as usize
}

#[test]
fn an_opening_packet_is_resolved_afresh_despite_an_old_binding_of_its_ports() {
    let mut sim = Sim::new(config(
        2,
        Method::PrimaryBackup,
        GroupKind::ImplicitPrimaryBackup,
        [vec![0], vec![1], vec![]],
    ));
    sim.run(secs(2.0));
    // A connection bound to the backup while the primary was down...
    sim.set_alive(0, false);
    sim.run(secs(2.0));
    let a = flow(1, 40000);
    assert_eq!(sim.mep.resolve_opening(sim.now, G, &a).entry_point, M1);
    sim.set_alive(0, true);
    sim.run(secs(2.0));
    // ...keeps it for its own packets, and its retransmitted SYN is not a new resolution.
    let r = sim.mep.resolve(sim.now, G, &a);
    assert_eq!((r.entry_point, r.new), (M1, false));
    let before = sim.mep.status(sim.now).groups[0].resolutions;
    // A SYN from the same ports is a new connection (the port was reused): the method decides.
    let r = sim.mep.resolve_opening(sim.now, G, &a);
    assert_eq!((r.entry_point, r.level, r.new), (M0, Level::Primary, true));
    let again = sim.mep.resolve_opening(sim.now, G, &a);
    assert_eq!(
        (again.entry_point, again.new),
        (M0, false),
        "SYN retransmitted"
    );
    assert_eq!(sim.mep.status(sim.now).groups[0].resolutions, before + 1);
}
