//! A three-member Load Sharing cluster (routed distribution) and a remote site gateway in
//! virtual time (no sockets); the harness (`ls`) plays the routers and the sync network.

mod common;
mod ls;

use std::time::{Duration, Instant};

use common::{tcp, udp};
use ls::{Cluster, ACK, HOST_A, HOST_B, R, SYN};
use rampart_cluster::{Distribution, LoadSharingConfig, TimeoutPolicy};
use rampart_config::StartAction;
use rampart_node::{ClusterCommand, Disposition, Gateway, LoadSharingStats};

/// The seed's handshake: the SYN from the protected site enters member 0's TUN device, the
/// tunnel belongs to member 1 (member 0 inspects the SYN and forwards the cleartext to it), the
/// SYN-ACK comes back as ESP to member 1, which must know the connection member 0 created.
#[test]
fn flush_and_ack_syn_via_one_member_syn_ack_as_esp_at_another() {
    let mut t = Cluster::established(true);
    t.sync_delay = Duration::from_millis(2);
    let oos = t.out_of_state(1);
    let syn = tcp(HOST_A, 40000, HOST_B, 443, SYN);
    let before = t.tun_out[R].len();
    assert_eq!(t.enter_tun(0, &syn), Disposition::Consumed, "held");
    assert!(
        !t.arrived(R, before, &syn),
        "not before the others acknowledged"
    );
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(R, before, &syn), "released: {:?}", t.logs[0]);
    let a = t.stats(0);
    assert_eq!((a.held, a.released), (1, 1), "{a:?}");
    assert_eq!(a.forwarded_out.inspected, 1, "sealed by the SA owner");
    assert_eq!(t.stats(1).forwarded_in.inspected, 1);
    assert!(t.has_conn(1, 40000) && t.has_conn(2, 40000));

    let syn_ack = tcp(HOST_B, 443, HOST_A, 40000, SYN | ACK);
    let before = t.tun_out[1].len();
    t.vip_route = 1;
    t.enter_tun(R, &syn_ack);
    // Held too: it moves the connection to SYN received, which member 0 must know before
    // the originator's ACK reaches it.
    assert!(!t.arrived(1, before, &syn_ack), "the SYN-ACK is held");
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(1, before, &syn_ack), "{:?}", t.logs[1]);
    let b = t.stats(1);
    assert_eq!((b.held_syn_ack, b.released), (1, 1), "{b:?}");
    assert_eq!(b.orphans, 0, "no update request needed");
    assert_eq!(t.out_of_state(1), oos, "zero out-of-state drops");
    // The handshake completes through member 0 again: it has member 1's state change.
    let before = t.tun_out[R].len();
    let ack = tcp(HOST_A, 40000, HOST_B, 443, ACK);
    t.enter_tun(0, &ack);
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(R, before, &ack), "{:?}", t.logs[0]);
    assert_eq!(t.out_of_state(0), 0);
}

/// The asymmetric return path: the SYN from the remote site arrives as ESP at the tunnel's
/// owner (member 1), which writes it to its TUN device; the protected host's SYN-ACK enters
/// member 0's TUN device at once, while member 1's records are still on the sync network
/// (2 ms one way). Returns member 0's counters and whether the SYN-ACK reached the remote.
fn asymmetric_return(flush_ack: bool) -> (LoadSharingStats, LoadSharingStats, u64, bool) {
    let mut t = Cluster::established(flush_ack);
    t.sync_delay = Duration::from_millis(2);
    let oos = t.out_of_state(0);
    let syn = tcp(HOST_B, 41000, HOST_A, 22, SYN);
    let before = t.tun_out[1].len();
    t.vip_route = 1;
    t.enter_tun(R, &syn);
    if flush_ack {
        assert!(!t.arrived(1, before, &syn), "held at member 1");
        t.run_for(Duration::from_millis(20));
    }
    assert!(t.arrived(1, before, &syn), "{:?}", t.logs[1]);
    let syn_ack = tcp(HOST_A, 22, HOST_B, 41000, SYN | ACK);
    let before = t.tun_out[R].len();
    t.enter_tun(0, &syn_ack);
    t.run_for(Duration::from_millis(50));
    let through = t.arrived(R, before, &syn_ack);
    (t.stats(0), t.stats(1), t.out_of_state(0) - oos, through)
}

#[test]
fn asymmetric_return_path_flush_and_ack_against_update_requests() {
    // With Flush-and-Ack member 1 held the SYN until member 0 had the connection.
    let (a, b, oos, through) = asymmetric_return(true);
    assert!(through, "{a:?}");
    assert_eq!(b.held, 1, "{b:?}");
    assert_eq!((a.orphans, oos), (0, 0), "zero out-of-state drops: {a:?}");
    // Without it the SYN-ACK reaches member 0 before the connection does: an orphan, which
    // the update request rescues (without it, this is an out-of-state drop).
    let (a, b, oos, through) = asymmetric_return(false);
    assert_eq!(b.held, 0, "{b:?}");
    assert_eq!((a.orphans, a.orphans_found), (1, 1), "{a:?}");
    assert!(through, "rescued: {a:?}");
    assert_eq!(oos, 0);
    assert_eq!(b.answered_found, 1, "{b:?}");
}

#[test]
fn esp_at_a_member_that_does_not_own_the_sa_is_forwarded_to_the_owner() {
    let mut t = Cluster::established(true);
    let p = udp(HOST_B, 5000, HOST_A, 4000, b"via member 2");
    t.vip_route = 2;
    let before = t.tun_out[1].len();
    t.enter_tun(R, &p);
    assert!(t.arrived(1, before, &p), "decrypted by the owner");
    assert_eq!(
        t.stats(2).forwarded_out.udp + t.stats(2).forwarded_out.raw_esp,
        1
    );
    let b = t.stats(1);
    assert_eq!(b.forwarded_in.udp + b.forwarded_in.raw_esp, 1, "{b:?}");
    assert_eq!(
        t.gw[2].status(t.now).counters.dropped_unknown_spi,
        0,
        "a forwarded packet is not a drop"
    );
}

#[test]
fn the_owner_dies_another_member_adopts_the_sa_and_traffic_continues() {
    let mut t = Cluster::established(true);
    let p = udp(HOST_A, 4000, HOST_B, 5000, b"before");
    let before = t.tun_out[R].len();
    t.enter_tun(0, &p);
    assert!(t.arrived(R, before, &p));
    t.run_for(Duration::from_millis(500));
    let spis = t.gw[R].status(t.now).peers[0].tunnels[0].spi_in.clone();

    t.crash(1);
    t.run_for(Duration::from_secs(1));
    let adoptions: Vec<u64> = (0..3)
        .filter(|&m| m != 1)
        .map(|m| t.stats(m).adoptions)
        .collect();
    assert_eq!(
        adoptions.iter().sum::<u64>(),
        1,
        "one survivor adopted: {adoptions:?}"
    );
    let owner = if adoptions[0] == 1 { 0 } else { 2 };
    assert_eq!(t.gw[owner].status(t.now).peers[0].state, "established");

    // Both ways through either survivor: the remote sees the same SA, no replays.
    for (i, m) in [0usize, 2].into_iter().enumerate() {
        let out = udp(HOST_A, 4000, HOST_B, 5000, &[b'o', i as u8]);
        let before = t.tun_out[R].len();
        t.enter_tun(m, &out);
        assert!(
            t.arrived(R, before, &out),
            "out via member {m}: {:?}",
            t.logs[m]
        );
        let back = udp(HOST_B, 5000, HOST_A, 4000, &[b'b', i as u8]);
        t.vip_route = m;
        let before = t.tun_out[owner].len();
        t.enter_tun(R, &back);
        assert!(t.arrived(owner, before, &back), "back via member {m}");
    }
    let remote = t.gw[R].status(t.now);
    assert_eq!(remote.peers[0].tunnels[0].spi_in, spis, "same SA");
    assert_eq!(remote.counters.dropped_replay, 0, "no replay at the peer");
}

#[test]
fn update_requests_found_and_unknown() {
    let mut t = Cluster::established(true);
    // Unknown: a TCP ACK of a connection no member has enters member 2's TUN device. It is
    // parked, both other members are asked and answer `Unknown`, then the rules decide (out
    // of state). The `Found` case is the rescued SYN-ACK above.
    let stray = tcp(HOST_A, 40100, HOST_B, 443, ACK);
    let oos = t.out_of_state(2);
    let before = t.tun_out[R].len();
    assert_eq!(t.enter_tun(2, &stray), Disposition::Consumed, "parked");
    let s = t.stats(2);
    assert_eq!(s.orphans, 1, "{s:?}");
    assert_eq!(s.orphans_not_found, 1, "nobody has it: {s:?}");
    assert_eq!(
        t.out_of_state(2),
        oos + 1,
        "then judged by the rules: out of state"
    );
    assert!(!t.arrived(R, before, &stray));
    assert_eq!(t.stats(0).answered_unknown + t.stats(1).answered_unknown, 2);
}

#[test]
fn unicast_the_pivot_hands_each_flow_to_its_owner() {
    let mut t = Cluster::with(LoadSharingConfig {
        distribution: Distribution::Unicast,
        ..LoadSharingConfig::default()
    });
    // The election picks member 0 (equal priorities, lowest id): the pivot owns the virtual
    // address, so the remote's IKE and ESP and the protected site's packets all reach it.
    t.vip_route = 0;
    let mut t = Cluster::running(t);
    assert!(t.stats(0).pivot && !t.stats(1).pivot && !t.stats(2).pivot);
    const FLOWS: u16 = 12;
    for i in 0..FLOWS {
        let out = udp(HOST_A, 7000 + i, HOST_B, 53, b"query");
        let before = t.tun_out[R].len();
        t.enter_tun(0, &out);
        assert!(t.arrived(R, before, &out), "flow {i} out: {:?}", t.logs);
        let back = udp(HOST_B, 53, HOST_A, 7000 + i, b"answer");
        let before = t.tun_out[0].len();
        t.enter_tun(R, &back);
        assert!(t.arrived(0, before, &back), "flow {i} back");
    }
    let pivot = t.stats(0);
    let handed: u64 = (1..3).map(|m| t.stats(m).forwarded_in.tun).sum();
    assert_eq!(pivot.forwarded_out.tun, handed, "{pivot:?}");
    assert!(
        handed > 0 && handed < u64::from(FLOWS),
        "spread: {handed} of {FLOWS} handed on"
    );
    // Each owner inspected its flows and handed the cleartext back to the SA owner to seal.
    for m in 1..3 {
        let s = t.stats(m);
        assert_eq!(
            s.forwarded_out.inspected, s.forwarded_in.tun,
            "member {m}: {s:?}"
        );
        assert_eq!(s.held, 0, "no Flush-and-Ack in unicast");
    }
    // The shares in `rampart cluster status`: each member counted the flows it created and
    // the packets it handled; together they created every flow.
    let mut flows = 0;
    for m in 0..3 {
        let (status, _) = t.gw[m].cluster_status(t.now).unwrap();
        let ls = status.load_sharing.expect("load sharing status");
        let me = ls
            .ownership
            .members
            .iter()
            .find(|s| usize::from(s.member) == m + 1)
            .unwrap();
        assert!(me.packets > 0 && me.bytes > 0, "member {m}: {me:?}");
        flows += me.flows;
    }
    assert_eq!(flows, u64::from(FLOWS));
}

/// A member goes silent while a first packet is held: the hold ends at `hold_timeout` (before
/// the dead time declares the member down) and the packet is released, or dropped with
/// `hold_timeout_action = "drop"`.
fn hold_with_a_silent_member(action: TimeoutPolicy) -> (Cluster, bool) {
    let mut t = Cluster::running(Cluster::with(LoadSharingConfig {
        hold_timeout_action: action,
        ..LoadSharingConfig::default()
    }));
    t.crash(2);
    let syn = tcp(HOST_A, 42000, HOST_B, 443, SYN);
    let before = t.tun_out[R].len();
    assert_eq!(t.enter_tun(0, &syn), Disposition::Consumed);
    t.run_for(Duration::from_millis(200));
    assert!(!t.arrived(R, before, &syn), "still held");
    t.run_for(Duration::from_millis(100));
    let through = t.arrived(R, before, &syn);
    (t, through)
}

#[test]
fn a_hold_ends_at_its_timeout_with_the_timeout_policy() {
    let (t, through) = hold_with_a_silent_member(TimeoutPolicy::Release);
    assert!(through, "released at the timeout: {:?}", t.logs[0]);
    let a = t.stats(0);
    assert_eq!((a.held, a.released, a.released_dropped), (1, 1, 0), "{a:?}");
    let (t, through) = hold_with_a_silent_member(TimeoutPolicy::Drop);
    assert!(!through);
    let a = t.stats(0);
    assert_eq!((a.held, a.released, a.released_dropped), (1, 0, 1), "{a:?}");
    assert_eq!(a.kept_now, 0, "the slot is free again");
}

#[test]
fn ike_at_a_member_that_does_not_own_the_sa_reaches_the_owner_and_rekeys_work() {
    let remote = "child_lifetime = \"20s\"\nike_lifetime = \"45s\"";
    let mut t = Cluster::running(Cluster::with_remote(LoadSharingConfig::default(), remote));
    let spis = t.gw[R].status(t.now).peers[0].tunnels[0].spi_in.clone();
    // From now on the remote's datagrams reach member 2, which owns nothing: liveness checks
    // and the rekeys (CHILD at about 18 s, IKE at about 40 s) go to member 1 through it.
    t.vip_route = 2;
    for i in 0..120u32 {
        t.run_for(Duration::from_millis(500));
        let out = udp(HOST_A, 4000, HOST_B, 5000, &i.to_be_bytes());
        let before = t.tun_out[R].len();
        t.enter_tun(0, &out);
        assert!(t.arrived(R, before, &out), "out {i}");
        let back = udp(HOST_B, 5000, HOST_A, 4000, &i.to_be_bytes());
        let before = t.tun_out[1].len();
        t.enter_tun(R, &back);
        assert!(t.arrived(1, before, &back), "back {i}: {:?}", t.logs[2]);
    }
    let remote = t.gw[R].status(t.now);
    assert_ne!(remote.peers[0].tunnels[0].spi_in, spis, "CHILD SA rekeyed");
    assert_eq!(remote.peers[0].state, "established");
    let m2 = t.stats(2);
    // ESP and IKE both went through member 2 (one UDP forward kind for both).
    assert!(
        m2.forwarded_out.udp + m2.forwarded_out.raw_esp > 120,
        "{m2:?}"
    );
    assert!(
        !t.logs[R].iter().any(|l| l.contains("is dead")),
        "{:?}",
        t.logs[R]
    );
    // The new SAs are owned by member 1: the others hold them as replicas.
    assert_eq!(t.stats(0).adoptions + t.stats(2).adoptions, 0);
}

#[test]
fn a_restarted_member_learns_every_sa_and_its_owner_from_the_full_sync() {
    let mut t = Cluster::established(true);
    let p = udp(HOST_A, 4000, HOST_B, 5000, b"before");
    let before = t.tun_out[R].len();
    t.enter_tun(0, &p);
    assert!(t.arrived(R, before, &p));
    t.crash(2);
    t.run_for(Duration::from_secs(1));
    t.restart(2, 2, LoadSharingConfig::default());
    t.run_for(Duration::from_secs(3));
    assert!(t.stats(2).carrying, "{:?}", t.logs[2]);
    assert!(t.has_conn(2, 5000), "connections came with the full sync");
    // The SA member 1 owns came with its owner: ESP through member 2 goes there.
    t.vip_route = 2;
    let back = udp(HOST_B, 5000, HOST_A, 4000, b"through the restarted member");
    let before = t.tun_out[1].len();
    t.enter_tun(R, &back);
    assert!(t.arrived(1, before, &back), "{:?}", t.logs[2]);
    let m2 = t.stats(2);
    assert_eq!(m2.forwarded_out.udp + m2.forwarded_out.raw_esp, 1, "{m2:?}");
    // And its cleartext for the tunnel goes to the owner to be sealed.
    let out = udp(HOST_A, 4000, HOST_B, 5000, b"out through it");
    let before = t.tun_out[R].len();
    t.enter_tun(2, &out);
    assert!(t.arrived(R, before, &out));
    assert_eq!(t.stats(2).forwarded_out.inspected, 1);
}

#[test]
fn the_first_sync_network_fails_holds_and_forwarding_go_on_over_the_second() {
    let mut t = Cluster::established(true);
    t.link0_cut = true;
    t.run_for(Duration::from_secs(2));
    for m in 0..3 {
        assert!(
            t.stats(m).carrying,
            "member {m} still in sync: {:?}",
            t.logs[m]
        );
    }
    // A first packet is held and released by acks that come over link 1; the tunnel's
    // owner (member 1) gets the inspected SYN over it too.
    let syn = tcp(HOST_A, 43000, HOST_B, 443, SYN);
    let before = t.tun_out[R].len();
    t.enter_tun(0, &syn);
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(R, before, &syn), "{:?}", t.logs[0]);
    let a = t.stats(0);
    assert_eq!((a.held, a.released), (1, 1), "{a:?}");
    assert!(t.has_conn(2, 43000), "the third member has it");
    let (_, stats) = t.gw[0].cluster_status(t.now).unwrap();
    assert!(stats.links.len() >= 2, "{:?}", stats.links);
}

/// `sync = false`: the SYN is not held and the connection is not synced, not even on request;
/// its SYN-ACK on the asymmetric return path is judged by the rules (out of state).
#[test]
fn a_sync_false_connection_is_never_held_nor_handed_out() {
    let mut t = Cluster::established(true);
    let oos = t.out_of_state(0);
    let syn = tcp(HOST_B, 41500, HOST_A, 6022, SYN);
    let before = t.tun_out[1].len();
    t.vip_route = 1;
    t.enter_tun(R, &syn);
    assert!(t.arrived(1, before, &syn), "not held");
    let b = t.stats(1);
    assert_eq!(b.held, 0, "{b:?}");
    let syn_ack = tcp(HOST_A, 6022, HOST_B, 41500, SYN | ACK);
    let before = t.tun_out[R].len();
    t.enter_tun(0, &syn_ack);
    t.run_for(Duration::from_millis(50));
    assert!(!t.arrived(R, before, &syn_ack));
    let a = t.stats(0);
    assert_eq!((a.orphans, a.orphans_not_found), (1, 1), "{a:?}");
    assert_eq!(
        t.stats(1).answered_unknown,
        1,
        "member 1 has it but does not hand it out"
    );
    assert_eq!(t.out_of_state(0), oos + 1);
    assert!(!t.has_conn(0, 6022) && !t.has_conn(2, 6022));
}

/// Members that keep the tunnel up (`start_action = "always"`): only the pivot brings it up;
/// the others find it on a member and do not negotiate their own.
#[test]
fn the_pivot_alone_brings_up_an_always_peer() {
    let mut t = Cluster::build(
        LoadSharingConfig::default(),
        "start_action = \"none\"",
        StartAction::Always,
    );
    t.vip_route = 0;
    t.run_for(Duration::from_secs(10));
    assert!(t.remote_established(), "{:?}", t.logs[0]);
    let up: Vec<usize> = (0..3)
        .filter(|&m| t.gw[m].status(t.now).peers[0].state == "established")
        .collect();
    let pivot: Vec<usize> = (0..3).filter(|&m| t.stats(m).pivot).collect();
    assert_eq!(pivot.len(), 1);
    assert_eq!(up, pivot, "one IKE SA, negotiated by the pivot");
    // Every member's traffic uses it.
    for m in 0..3 {
        let out = udp(HOST_A, 4000 + m as u16, HOST_B, 5000, b"x");
        let before = t.tun_out[R].len();
        t.enter_tun(m, &out);
        assert!(t.arrived(R, before, &out), "via member {m}");
    }
}

/// A `sync_after = "1s"` connection from the remote site, inspected at the tunnel's owner
/// (member 1): its handshake is not held and not synced. Returns the cluster at the
/// connection's creation plus `age`, without running the timers of the last 2 ms when `skip`.
fn late_connection(port: u16, age: Duration, skip: bool) -> Cluster {
    let mut t = Cluster::established(true);
    t.sync_delay = Duration::from_millis(2);
    t.vip_route = 1;
    let syn = tcp(HOST_B, port, HOST_A, 6080, SYN);
    let before = t.tun_out[1].len();
    t.enter_tun(R, &syn);
    assert!(t.arrived(1, before, &syn), "not held before its age");
    let syn_ack = tcp(HOST_A, 6080, HOST_B, port, SYN | ACK);
    let before = t.tun_out[R].len();
    t.enter_tun(1, &syn_ack);
    assert!(t.arrived(R, before, &syn_ack));
    assert_eq!(t.stats(1).held, 0);
    if skip {
        t.run_for(age - Duration::from_millis(2));
        // The packet below comes before the member's timer for the due time has run.
        t.now += Duration::from_millis(2);
    } else {
        t.run_for(age);
    }
    t
}

/// The first packet at the connection's `sync_after` age is held like a creating one: its
/// record leaves with it and it continues once the others have it; the reply through
/// another member then finds the connection there.
#[test]
fn a_sync_after_connection_s_first_packet_at_its_age_is_held() {
    let mut t = late_connection(41600, Duration::from_millis(1001), true);
    assert!(
        !t.has_conn(0, 41600) && !t.has_conn(2, 41600),
        "not synced yet"
    );
    let ack = tcp(HOST_B, 41600, HOST_A, 6080, ACK);
    let before = t.tun_out[1].len();
    t.enter_tun(R, &ack);
    assert!(!t.arrived(1, before, &ack), "held");
    let b = t.stats(1);
    assert_eq!((b.held, b.released), (1, 0), "{b:?}");
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(1, before, &ack), "released: {:?}", t.logs[1]);
    assert_eq!(t.stats(1).released, 1);
    assert!(t.has_conn(0, 41600) && t.has_conn(2, 41600), "synced");
    // The reply on the asymmetric path: member 0 has it, no update request, no drop.
    let oos = t.out_of_state(0);
    let reply = tcp(HOST_A, 6080, HOST_B, 41600, ACK);
    let before = t.tun_out[R].len();
    t.enter_tun(0, &reply);
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(R, before, &reply), "{:?}", t.logs[0]);
    assert_eq!((t.stats(0).orphans, t.out_of_state(0) - oos), (0, 0));
    // Only the first packet: the next one goes on at once.
    let before = t.tun_out[1].len();
    t.enter_tun(R, &ack);
    assert!(t.arrived(1, before, &ack));
    assert_eq!(t.stats(1).held, 1);
}

/// Idle at its due time, the connection is pushed by the timer; a packet right after the
/// push (the others have not acknowledged it yet) still waits for them, once; later
/// connections' packets long after their push are not held.
#[test]
fn an_idle_sync_after_connection_is_pushed_by_the_timer() {
    let mut t = late_connection(41700, Duration::from_millis(1001), false);
    // The timer pushed it at 1 s; the records are on the sync network (2 ms one way).
    assert_eq!(t.stats(1).held, 0);
    let ack = tcp(HOST_B, 41700, HOST_A, 6080, ACK);
    let before = t.tun_out[1].len();
    t.enter_tun(R, &ack);
    assert!(!t.arrived(1, before, &ack), "waits for the acks");
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(1, before, &ack), "{:?}", t.logs[1]);
    assert!(t.has_conn(0, 41700) && t.has_conn(2, 41700));
    let b = t.stats(1);
    assert_eq!((b.held, b.released), (1, 1), "{b:?}");

    // Idle through its due time and well after: synced by the timer alone, never held.
    let mut t = late_connection(41800, Duration::from_millis(1500), false);
    assert!(
        t.has_conn(0, 41800) && t.has_conn(2, 41800),
        "the timer pushed it"
    );
    let ack = tcp(HOST_B, 41800, HOST_A, 6080, ACK);
    let before = t.tun_out[1].len();
    t.enter_tun(R, &ack);
    assert!(t.arrived(1, before, &ack), "not held");
    assert_eq!(t.stats(1).held, 0);
}

/// `rampart cluster down` on the member that owns the tunnel's SA: it leaves the members up
/// alive, its SA goes to the rendezvous owner among the others at once (no dead time), with
/// its final ESP counters; what still reaches it is forwarded; the remote sees the same SA
/// and no replay. Back up, it carries new flows again.
#[test]
fn a_member_set_down_hands_its_sas_over_without_a_gap_and_comes_back() {
    leave_and_come_back(
        |gw, now| assert!(gw.cluster_command(now, ClusterCommand::Down).is_ok()),
        |gw, now| assert!(gw.cluster_command(now, ClusterCommand::Up).is_ok()),
    );
}

/// The same when a monitored interface of the SA's owner goes down and comes back.
#[test]
fn a_member_whose_monitored_interface_fails_hands_its_sas_over_and_comes_back() {
    leave_and_come_back(
        |gw, now| gw.handle_link_state(now, "eth1", false),
        |gw, now| gw.handle_link_state(now, "eth1", true),
    );
}

/// Member 1, which owns the tunnel's SA, leaves alive (`leave`), then comes back (`back`).
fn leave_and_come_back(leave: fn(&mut Gateway, Instant), back: fn(&mut Gateway, Instant)) {
    let mut t = Cluster::established(true);
    for i in 0..5u8 {
        let out = udp(HOST_A, 4000, HOST_B, 5000, &[b'a', i]);
        let before = t.tun_out[R].len();
        t.enter_tun(0, &out);
        assert!(t.arrived(R, before, &out));
    }
    let spis = t.gw[R].status(t.now).peers[0].tunnels[0].spi_in.clone();

    leave(&mut t.gw[1], t.now);
    t.deliver();
    assert!(!t.stats(1).carrying, "{:?}", t.logs[1]);
    let adoptions: Vec<u64> = [0, 2].iter().map(|&m| t.stats(m).adoptions).collect();
    assert_eq!(
        adoptions.iter().sum::<u64>(),
        1,
        "adopted at once: {adoptions:?}"
    );
    let owner = if adoptions[0] == 1 { 0 } else { 2 };
    assert_eq!(t.gw[owner].status(t.now).peers[0].state, "established");
    assert!(
        t.gw[1].status(t.now).peers[0].tunnels.is_empty(),
        "the member that left keeps no tunnel"
    );

    // In the same instant, through every member, the member that left included (the
    // remote's ESP still reaches it, the inside still sends to it).
    for (i, m) in [1usize, 0, 2].into_iter().enumerate() {
        let out = udp(HOST_A, 4000, HOST_B, 5000, &[b'o', i as u8]);
        let before = t.tun_out[R].len();
        t.enter_tun(m, &out);
        assert!(
            t.arrived(R, before, &out),
            "out via member {m}: {:?}",
            t.logs[m]
        );
        let back = udp(HOST_B, 5000, HOST_A, 4000, &[b'b', i as u8]);
        t.vip_route = m;
        let before = t.tun_out[owner].len();
        t.enter_tun(R, &back);
        assert!(
            t.arrived(owner, before, &back),
            "back via member {m}: {:?}",
            t.logs[m]
        );
    }
    let m1 = t.stats(1);
    assert_eq!(m1.forwarded_out.inspected, 1, "{m1:?}");
    assert_eq!(m1.forwarded_out.udp + m1.forwarded_out.raw_esp, 1, "{m1:?}");
    let remote = t.gw[R].status(t.now);
    assert_eq!(remote.peers[0].tunnels[0].spi_in, spis, "same SA");
    assert_eq!(remote.counters.dropped_replay, 0, "no replay at the peer");

    // Back up: in sync again, it carries new flows (a first packet held and released there).
    back(&mut t.gw[1], t.now);
    t.run_for(Duration::from_secs(2));
    assert!(t.stats(1).carrying, "{:?}", t.logs[1]);
    let syn = tcp(HOST_A, 44000, HOST_B, 443, SYN);
    let before = t.tun_out[R].len();
    assert_eq!(t.enter_tun(1, &syn), Disposition::Consumed, "held");
    t.run_for(Duration::from_millis(20));
    assert!(t.arrived(R, before, &syn), "{:?}", t.logs[1]);
    let m1 = t.stats(1);
    assert_eq!((m1.held, m1.released), (1, 1), "{m1:?}");
    assert!(t.has_conn(0, 44000) && t.has_conn(2, 44000));
    assert_eq!(t.gw[R].status(t.now).counters.dropped_replay, 0);
}
