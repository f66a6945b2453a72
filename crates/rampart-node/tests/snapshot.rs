//! SA and connection state as values: gateway A's SAs and connection table are exported,
//! imported into a fresh A' (same configuration, other randomness), and A' takes A's place in
//! the pair. The peer must notice nothing: traffic, inspection state, NAT, replay protection,
//! CHILD and IKE rekeys and liveness all continue.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use common::{config, udp_packet, Pair, HEADROOM};
use proptest::prelude::*;
use rampart_crypto::Rng;
use rampart_inspect::Change;
use rampart_node::{
    Disposition, DropReason, Gateway, NodeError, SaSnapshot, SnapshotError, DEFAULT_TAKEOVER_MARGIN,
};
use rampart_wire::checksum;

/// A is the responder (it must not initiate when rebuilt), rekeys often, tracks connections
/// under a rule base (so an unknown ACK is out of state) and hides its site behind 10.1.0.1.
const A_EXTRA: &str = r#"start_action = "none"
child_lifetime = "20s"
ike_lifetime = "45s"

[[rule]]
name = "all"
action = "accept"

[[nat]]
type = "hide"
source = ["10.1.0.0/24"]
address = "10.1.0.1"
"#;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
const HIDE: [u8; 4] = [10, 1, 0, 1];
const HOST_A: [u8; 4] = [10, 1, 0, 5];
const HOST_B: [u8; 4] = [10, 2, 0, 7];

fn config_a() -> rampart_config::GatewayConfig {
    config(
        "a",
        "192.0.2.1",
        "192.0.2.2",
        "10.1.0.0/24",
        "10.2.0.0/24",
        A_EXTRA,
    )
}

/// An IPv4/TCP packet with valid checksums.
fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let total = 40 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let ip = checksum::finish(checksum::sum(0, &p[..20]));
    p[10..12].copy_from_slice(&ip.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..28].copy_from_slice(&1000u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&8192u16.to_be_bytes());
    p[40..].copy_from_slice(payload);
    let pseudo = checksum::pseudo_header(&p[12..20], 6, total - 20);
    let l4 = checksum::finish(checksum::sum(pseudo, &p[20..]));
    p[36..38].copy_from_slice(&l4.to_be_bytes());
    p
}

fn src_port(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[20], p[21]])
}

/// One ESP packet as it left a gateway.
struct Esp {
    local: IpAddr,
    remote: IpAddr,
    bytes: Vec<u8>,
}

impl Esp {
    fn spi(&self) -> u32 {
        u32::from_be_bytes(self.bytes[0..4].try_into().unwrap())
    }
    fn seq(&self) -> u64 {
        u64::from(u32::from_be_bytes(self.bytes[4..8].try_into().unwrap()))
    }
}

/// Seals `packet` at `side`, delivers it and returns the ESP packet; asserts that the other side
/// wrote exactly one packet to its TUN device and returns that too.
fn through(pair: &mut Pair, side: usize, packet: &[u8]) -> (Esp, Vec<u8>) {
    let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
    buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(packet);
    let d = pair.gw[side].handle_tun(pair.now, &mut buf, HEADROOM..HEADROOM + packet.len());
    let Disposition::SendRawEsp {
        local,
        remote,
        data,
    } = d.clone()
    else {
        panic!("side {side} did not seal: {d:?}");
    };
    let esp = Esp {
        local,
        remote,
        bytes: buf[data].to_vec(),
    };
    let other = 1 - side;
    let before = pair.tun_out[other].len();
    pair.dispose(side, d, &buf);
    pair.deliver();
    assert_eq!(
        pair.tun_out[other].len(),
        before + 1,
        "side {other} did not accept the packet of side {side}"
    );
    (esp, pair.tun_out[other].last().unwrap().clone())
}

/// A TCP connection from HOST_A:40000 to HOST_B:80, established through the tunnel; returns
/// the hide-NAT port B sees.
fn open_tcp(pair: &mut Pair) -> u16 {
    let (_, at_b) = through(pair, 0, &tcp(HOST_A, 40000, HOST_B, 80, SYN, b""));
    assert_eq!(at_b[12..16], HIDE, "hide NAT applied");
    let port = src_port(&at_b);
    let (_, at_a) = through(pair, 1, &tcp(HOST_B, 80, HIDE, port, SYN | ACK, b""));
    assert_eq!(
        (at_a[16..20].to_vec(), at_a[22..24].to_vec()),
        (HOST_A.to_vec(), 40000u16.to_be_bytes().to_vec())
    );
    through(pair, 0, &tcp(HOST_A, 40000, HOST_B, 80, ACK, b""));
    port
}

/// Exports A's SAs and connections (through JSON), builds A' from the same configuration with
/// another seed, imports everything and puts A' in A's place. Returns each outbound SPI's next
/// sequence number at the export.
fn take_over(pair: &mut Pair, seed: u8) -> HashMap<u32, u64> {
    let now = pair.now;
    let snapshots = pair.gw[0].export_all(now);
    assert!(!snapshots.is_empty(), "nothing to export");
    let conns = pair.gw[0].export_connections(now);
    let json = serde_json::to_string(&snapshots).unwrap();
    let snapshots: Vec<SaSnapshot> = serde_json::from_str(&json).unwrap();
    let conns: Vec<rampart_inspect::Connection> =
        serde_json::from_str(&serde_json::to_string(&conns).unwrap()).unwrap();

    let mut next = HashMap::new();
    for s in &snapshots {
        for t in &s.esp {
            let child = s.ike.children.iter().find(|c| c.id == t.child).unwrap();
            next.insert(child.spi_out, t.outbound.next_sequence);
        }
    }
    let mut successor = Gateway::new(config_a(), now, Rng::from_seed([seed; 32])).unwrap();
    for s in snapshots {
        successor
            .import_sa(now, s, DEFAULT_TAKEOVER_MARGIN)
            .expect("import");
    }
    for c in conns {
        successor
            .apply_connection(now, Change::Created(c))
            .expect("connection import");
    }
    // A is gone; whatever it still had to say is lost with it.
    drop(std::mem::replace(&mut pair.gw[0], successor));
    pair.deliver();
    next
}

/// After the takeover: the TCP connection continues (same hide port, accepted as established),
/// A' sequence numbers are past A's plus the margin, B's old packet is a replay at A'.
fn check_continues(pair: &mut Pair, port: u16, next: &HashMap<u32, u64>, old: &Esp) {
    let (esp, at_b) = through(
        pair,
        0,
        &tcp(HOST_A, 40000, HOST_B, 80, PSH | ACK, b"after"),
    );
    assert_eq!(
        (at_b[12..16].to_vec(), src_port(&at_b)),
        (HIDE.to_vec(), port)
    );
    let exported = next[&esp.spi()];
    assert!(
        esp.seq() >= exported + DEFAULT_TAKEOVER_MARGIN,
        "sequence {} not past {exported} + margin",
        esp.seq()
    );
    let (_, at_a) = through(pair, 1, &tcp(HOST_B, 80, HIDE, port, PSH | ACK, b"reply"));
    assert_eq!(at_a[16..20], HOST_A);
    let stats = pair.gw[0].conn_stats();
    assert_eq!(stats.dropped_out_of_state, 0, "{stats:?}");

    // A packet B sent to A before the export is refused by A' as a replay.
    let replays = pair.gw[0].status(pair.now).counters.dropped_replay;
    let mut buf = vec![0u8; old.bytes.len() + 2 * HEADROOM];
    buf[HEADROOM..HEADROOM + old.bytes.len()].copy_from_slice(&old.bytes);
    let range = HEADROOM..HEADROOM + old.bytes.len();
    let d = pair.gw[0].handle_raw_esp(pair.now, old.remote, old.local, &mut buf, range);
    assert_eq!(d, Disposition::Dropped(DropReason::Replay));
    assert_eq!(
        pair.gw[0].status(pair.now).counters.dropped_replay,
        replays + 1
    );
}

/// Runs `secs` seconds with a UDP packet each way every 500 ms, all delivered; returns A's
/// outbound SPIs seen.
fn traffic(pair: &mut Pair, secs: u64) -> BTreeSet<String> {
    let mut spis = BTreeSet::new();
    for i in 0..secs * 2 {
        let t = pair.now + Duration::from_millis(500);
        pair.run_until(t);
        let ab = udp_packet(HOST_A, HOST_B, &i.to_be_bytes());
        through(pair, 0, &ab);
        let ba = udp_packet(HOST_B, HOST_A, &i.to_be_bytes());
        through(pair, 1, &ba);
        for t in &pair.gw[0].status(pair.now).peers[0].tunnels {
            spis.insert(t.spi_out.clone());
        }
    }
    spis
}

fn ike_sa_id(pair: &Pair, side: usize) -> u64 {
    pair.gw[side].status(pair.now).peers[0]
        .ike_sa
        .as_ref()
        .expect("an IKE SA")
        .id
}

fn no_dead_peer(pair: &Pair) {
    for side in 0..2 {
        assert!(
            !pair.logs[side].iter().any(|l| l.contains("is dead")),
            "side {side}: {:#?}",
            pair.logs[side]
        );
    }
}

#[test]
fn imported_gateway_continues_tunnels_connections_rekeys_and_liveness() {
    let mut pair = Pair::new(A_EXTRA, "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));
    let port = open_tcp(&mut pair);
    for i in 0..5u8 {
        through(
            &mut pair,
            0,
            &tcp(HOST_A, 40000, HOST_B, 80, PSH | ACK, &[i]),
        );
    }
    let (old, _) = through(
        &mut pair,
        1,
        &tcp(HOST_B, 80, HIDE, port, PSH | ACK, b"old"),
    );
    let ike_before = ike_sa_id(&pair, 0);

    let next = take_over(&mut pair, 9);
    assert_eq!(ike_sa_id(&pair, 0), ike_before, "same IKE SA id");
    assert!(pair.established(0));
    check_continues(&mut pair, port, &next, &old);

    // An ACK of a connection nobody exported is out of state: the table really is enforced.
    let stray = tcp(HOST_A, 40001, HOST_B, 80, ACK, b"");
    let mut buf = vec![0u8; stray.len() + 2 * HEADROOM];
    buf[HEADROOM..HEADROOM + stray.len()].copy_from_slice(&stray);
    let d = pair.gw[0].handle_tun(pair.now, &mut buf, HEADROOM..HEADROOM + stray.len());
    assert_eq!(d, Disposition::Dropped(DropReason::Firewall));
    assert_eq!(pair.gw[0].conn_stats().dropped_out_of_state, 1);

    // Idle for 10 s: both sides run liveness checks every 2 s (a check unanswered for 1.5 s
    // declares the peer dead, see dead_peer_is_detected), so both answer the other's.
    let t = pair.now + Duration::from_secs(10);
    pair.run_until(t);
    no_dead_peer(&pair);
    assert!(pair.established(0) && pair.established(1));
    assert_eq!(ike_sa_id(&pair, 0), ike_before);

    // A' rekeys its CHILD SAs (20 s) and the IKE SA (45 s) with B, traffic flowing throughout.
    let spis = traffic(&mut pair, 60);
    assert!(spis.len() >= 3, "expected CHILD SA rekeys, saw {spis:?}");
    assert_ne!(ike_sa_id(&pair, 0), ike_before, "IKE SA rekeyed");
    assert_eq!(ike_sa_id(&pair, 0), ike_sa_id(&pair, 1));
    no_dead_peer(&pair);
    through(
        &mut pair,
        0,
        &tcp(HOST_A, 40000, HOST_B, 80, PSH | ACK, b"late"),
    );
    assert_eq!(pair.gw[0].conn_stats().dropped_out_of_state, 1);
}

#[test]
fn a_snapshot_must_match_its_ike_state() {
    let mut pair = Pair::new(A_EXTRA, "");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    let snapshot = pair.gw[0].export_all(pair.now).pop().expect("one IKE SA");
    let child = snapshot.esp[0].child;
    let mut fresh = Gateway::new(config_a(), pair.now, Rng::from_seed([5; 32])).unwrap();

    let mut missing = snapshot.clone();
    missing.esp.clear();
    let err = fresh.import_sa(pair.now, missing, 0).unwrap_err();
    assert!(matches!(
        err,
        NodeError::Snapshot(SnapshotError::MissingEspState(c)) if c == child
    ));
    let mut twice = snapshot.clone();
    twice.esp.push(twice.esp[0].clone());
    let err = fresh.import_sa(pair.now, twice, 0).unwrap_err();
    assert!(matches!(
        err,
        NodeError::Snapshot(SnapshotError::StrayEspState(c)) if c == child
    ));
    // Nothing changed: the good snapshot still imports, once.
    fresh.import_sa(pair.now, snapshot.clone(), 0).unwrap();
    let err = fresh.import_sa(pair.now, snapshot, 0).unwrap_err();
    assert!(matches!(err, NodeError::Snapshot(SnapshotError::Ike(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// The export may come after any number of packets and after CHILD/IKE rekeys (A rekeys
    /// its CHILD SA every ~20 s, its IKE SA every ~45 s): the takeover works from every point.
    #[test]
    fn takeover_works_from_any_point(
        packets in 0u8..40,
        secs in 3u64..60,
        seed in 3u8..=255,
    ) {
        let mut pair = Pair::new(A_EXTRA, "");
        let t = pair.now + Duration::from_secs(secs);
        pair.run_until(t);
        prop_assert!(pair.established(0) && pair.established(1));
        let port = open_tcp(&mut pair);
        for i in 0..packets {
            through(&mut pair, 0, &tcp(HOST_A, 40000, HOST_B, 80, PSH | ACK, &[i]));
        }
        let (old, _) = through(&mut pair, 1, &tcp(HOST_B, 80, HIDE, port, PSH | ACK, b"old"));
        let next = take_over(&mut pair, seed);
        check_continues(&mut pair, port, &next, &old);
        let spis = traffic(&mut pair, 25);
        prop_assert!(spis.len() >= 2, "no CHILD SA rekey after the takeover: {:?}", spis);
        no_dead_peer(&pair);
    }
}
