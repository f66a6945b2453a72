//! An op interpreter that drives two [`Ike`] engines (an initiator A and a responder B, PSK or
//! certificates) in
//! virtual time, shared by the `ike_engine` cargo-fuzz target (`fuzz/fuzz_targets/ike_engine.rs`
//! includes this file) and by the stable test `tests/engine_fuzz.rs`.
//!
//! The input ([`Input`], decoded with `arbitrary`) picks a [`Mode`] (cookies always required,
//! small fragment size, CBC IKE SA, PFS on CHILD SAs, certificate authentication) and a list of [`Op`]s: deliver, drop,
//! duplicate, reorder, truncate or replay queued datagrams, flip bytes of them, decrypt-mutate-
//! reseal their inner payload lists with the IKE SA's keys (read with [`Ike::export_sa`], the
//! public cluster API, so no test hook is needed in the engine), advance time, and call the
//! operator hooks. Both engines have seeded RNGs: a run is a pure function of its input.
//!
//! Invariants checked after every step ([`World::check`]), each a panic when broken:
//! - IKE SAs, half-open SAs and CHILD SAs per side stay within [`MAX_IKE_SAS`],
//!   `half_open_per_source` and [`MAX_CHILD_SAS`];
//! - message-id window of one, seen on the wire: a side sends request `n > 0` of an IKE SA only
//!   after the response `n - 1` of that SA was delivered to it, and a response `n` only after the
//!   request `n` was delivered to it;
//! - after `handle_timeout(now)`, `poll_timeout()` is `None` or later than `now`;
//! - the CHILD SAs announced by events (`ChildSaUp` minus `ChildSaDown`) are the ones `status()`
//!   lists, and their keys agree with the peer's for the same SPIs.
//!
//! At the end ([`World::recover`]) the garbage stops: queued datagrams are lost, removed peers
//! are added back, and (only when the input deleted SAs, removed peers or mutated datagrams,
//! so the peer behaved arbitrarily) the operator calls `initiate` every 20 s. Clean delivery then runs
//! for [`RECOVERY`] of virtual time; afterwards both sides must hold an established IKE SA with
//! the same SPIs carrying a CHILD SA whose SPIs and keys match, and no established IKE SA
//! without a counterpart.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use rampart_crypto::{CipherKey, Encr, Rng};
use rampart_ike::policy::{
    Encapsulation, EspProposal, Identity, IkeProposal, PeerAuth, PeerPolicy, RemoteAddress,
    StartAction,
};
use rampart_ike::{ChildSaKeys, Ike, IkeConfig, IkeEvent, IkeSaStateKind, PeerId};
use rampart_wire::ike::{
    encode_header, encode_payloads, exchange, parse, parse_payloads, payload_type, Header, Payload,
    HEADER_LEN,
};

/// Most IKE SAs one side may hold at once (besides half-open responder SAs): the current one,
/// its rekeyed successor, both sides' colliding rekeys, and SAs finishing a Delete or waiting
/// out a lost response. Every one of them is removed by a timer within about a minute.
pub const MAX_IKE_SAS: usize = 8;
/// Most CHILD SAs one side may hold at once (old, new, colliding rekeys, ones being deleted).
pub const MAX_CHILD_SAS: usize = 12;
/// Ops after this many are ignored (keeps one execution short).
pub const MAX_OPS: usize = 256;
/// Clean delivery at the end: long enough for a liveness failure, a retransmission give-up and
/// a fresh negotiation.
pub const RECOVERY: Duration = Duration::from_secs(240);
/// How often the operator re-initiates during recovery (only after deliberate input).
const OPERATOR_PERIOD: Duration = Duration::from_secs(20);
/// Datagrams kept in flight / kept for replays.
const QUEUE_CAP: usize = 32;
const HISTORY_CAP: usize = 64;

const A_IP: &str = "192.0.2.1";
const B_IP: &str = "203.0.113.2";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Arbitrary)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Configuration switches chosen by the input.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Mode {
    /// `cookie_threshold = 0` on both sides: every IKE_SA_INIT needs a cookie.
    pub cookies: bool,
    /// Small `fragment_size` so IKE_AUTH and CREATE_CHILD_SA go in RFC 7383 fragments.
    pub fragments: bool,
    /// AES-CBC + HMAC IKE SA instead of AES-GCM.
    pub cbc: bool,
    /// CHILD SAs with PFS (a KE payload in every CREATE_CHILD_SA).
    pub pfs: bool,
    /// IKE_AUTH with ECDSA P-256 certificates from one root (CERT, CERTREQ and signature AUTH
    /// payloads) instead of the pre-shared key.
    pub certs: bool,
}

/// How to change an SK payload's plaintext before resealing it.
#[derive(Debug, Clone, Arbitrary)]
pub enum InnerMutation {
    RemovePayload(u8),
    DuplicatePayload(u8),
    SwapPayloads(u8, u8),
    /// Flip a bit of the encoded inner payload chain (then re-parse must not matter: we reseal
    /// the bytes as they are).
    FlipPlainBit(u16),
    TruncatePlain(u16),
    /// Replace a payload by an unknown one (critical or not).
    Unknown(u8, bool),
    /// A Notify of this type appended.
    AddNotify(u16),
    /// A Delete for the IKE SA (protocol 1) or for ESP SPIs taken from the message's bytes.
    AddDelete(bool),
    /// Header fields (authenticated, so they survive the reseal).
    MessageId(i8),
    Exchange(u8),
    Flags(u8),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// Deliver queued datagram `i % len`.
    Deliver(u8),
    /// Deliver everything queued, in order (the queue refills with the answers).
    DeliverAll,
    Drop(u8),
    Duplicate(u8),
    Swap(u8, u8),
    /// Deliver datagram `i % len` of the history of everything sent (an older exchange).
    Replay(u8),
    Truncate(u8, u16),
    FlipByte(u8, u16, u8),
    /// Decrypt an SK/SKF datagram with its IKE SA's keys, mutate, reseal, deliver.
    Reseal(u8, InnerMutation),
    /// Advance virtual time (see [`step_duration`]), running timers as they fall due.
    Advance(u8),
    Initiate(Side),
    Acquire(Side),
    RekeyChild(Side, u8),
    RekeyIke(Side, u8),
    DeleteChild(Side, u8),
    DeleteIke(Side, u8),
    ChildTraffic(Side, u8),
    RemovePeer(Side),
    AddPeer(Side),
}

#[derive(Debug, Clone)]
pub struct Input {
    pub mode: Mode,
    pub ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Input> {
        let mode = Mode::arbitrary(u)?;
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < MAX_OPS {
            ops.push(Op::arbitrary(u)?);
        }
        Ok(Input { mode, ops })
    }
}

/// `v` < 100: 10 ms steps up to 1 s; < 200: whole seconds up to 100 s; else minutes.
pub fn step_duration(v: u8) -> Duration {
    match v {
        0..=99 => Duration::from_millis(10 * u64::from(v) + 10),
        100..=199 => Duration::from_secs(u64::from(v - 99)),
        _ => Duration::from_secs(60 * u64::from(v - 199)),
    }
}

/// An established IKE SA as (SPIi, SPIr, its CHILD SAs' (inbound, outbound) SPIs).
type EstablishedSa = (u64, u64, Vec<(u32, u32)>);

#[derive(Debug, Clone)]
struct Packet {
    from: Side,
    src: SocketAddr,
    dst: SocketAddr,
    msg: Vec<u8>,
}

/// Fields of an IKE header read without the full parser.
#[derive(Debug, Clone, Copy)]
struct Hdr {
    spi_i: u64,
    spi_r: u64,
    exchange: u8,
    response: bool,
    mid: u32,
}

fn hdr(msg: &[u8]) -> Option<Hdr> {
    let b = msg.get(..HEADER_LEN)?;
    Some(Hdr {
        spi_i: u64::from_be_bytes(b[0..8].try_into().ok()?),
        spi_r: u64::from_be_bytes(b[8..16].try_into().ok()?),
        exchange: b[18],
        response: b[19] & 0x20 != 0,
        mid: u32::from_be_bytes(b[20..24].try_into().ok()?),
    })
}

/// SA keys by (SPIi, SPIr): (encr, integ, I->R keys, R->I keys).
#[derive(Clone)]
struct SaKeys {
    encr: Encr,
    integ: Option<rampart_crypto::Integ>,
    ei: Vec<u8>,
    ai: Vec<u8>,
    er: Vec<u8>,
    ar: Vec<u8>,
}

impl SaKeys {
    fn key(&self, from_initiator: bool) -> Option<CipherKey> {
        let (e, a) = if from_initiator {
            (&self.ei, &self.ai)
        } else {
            (&self.er, &self.ar)
        };
        CipherKey::new(self.encr, e, self.integ.map(|i| (i, &a[..]))).ok()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn policy(mode: Mode, local: &str, remote: &str, domain: &str, initiator: bool) -> PeerPolicy {
    use rampart_crypto::{DhGroup, Integ, Prf};
    let ike = if mode.cbc {
        IkeProposal {
            encr: Encr::AesCbc256,
            integ: Some(Integ::HmacSha256_128),
            prf: Prf::HmacSha256,
            dh: DhGroup::X25519,
        }
    } else {
        IkeProposal {
            encr: Encr::AesGcm16_256,
            integ: None,
            prf: Prf::HmacSha256,
            dh: DhGroup::X25519,
        }
    };
    PeerPolicy {
        name: format!("to-{remote}"),
        local_address: ip(local),
        remote_address: RemoteAddress::Ip(ip(remote)),
        local_id: Identity::Ip(ip(local)),
        remote_id: Identity::Ip(ip(remote)),
        psk: b"fuzz-pre-shared-key-0123".to_vec().into(),
        remote_domain: vec![domain.parse().unwrap()],
        ike_proposals: vec![ike],
        esp_proposals: vec![EspProposal {
            encr: Encr::AesGcm16_128,
            integ: None,
            dh: mode.pfs.then_some(DhGroup::X25519),
        }],
        esn: false,
        start_action: if initiator {
            StartAction::Always
        } else {
            StartAction::None
        },
        ike_lifetime: Duration::from_secs(300),
        child_lifetime: Duration::from_secs(120),
        child_lifetime_bytes: None,
        liveness_interval: Duration::from_secs(15),
        encapsulation: Encapsulation::Auto,
        replay_window: 64,
        auth: if mode.certs {
            cert_auth(local)
        } else {
            PeerAuth::Psk
        },
        remote_access: rampart_ike::RemoteAccess::None,
        mobike: false,
    }
}

/// Unix time the certificates are valid at (and the engines' wall-clock anchor).
const CERT_NOW: u64 = 1_800_000_000;

/// Certificate authentication for the side at `local`: a root and one ECDSA P-256 leaf per side
/// (IP identities), made once per process so a fuzz run does not pay for key generation.
fn cert_auth(local: &str) -> PeerAuth {
    use rampart_pki::ca::{Algorithm, Ca, San, Validity};
    use rampart_pki::{CertAuth, Credentials, PrivateKey, TrustStore, WallClock};
    use std::sync::OnceLock;
    type Leaf = (Vec<u8>, String);
    static MATERIAL: OnceLock<(Vec<u8>, Leaf, Leaf)> = OnceLock::new();
    let (root, leaf_a, leaf_b) = MATERIAL.get_or_init(|| {
        let year = Validity::days_from(CERT_NOW as i64, 365);
        let ca = Ca::new_root("Fuzz Root", Algorithm::EcdsaP256, year).expect("root");
        let leaf = |addr: &str| {
            let l = ca
                .issue(addr, &[San::Ip(ip(addr))], Algorithm::EcdsaP256, year)
                .expect("leaf");
            (l.cert_der, l.key_pem)
        };
        (ca.cert.cert_der.clone(), leaf(A_IP), leaf(B_IP))
    });
    let (der, key) = if local == A_IP { leaf_a } else { leaf_b };
    PeerAuth::Cert(Box::new(CertAuth {
        credentials: Credentials::new(
            vec![der.clone()],
            PrivateKey::from_pem(key.as_bytes()).expect("key"),
        )
        .expect("credentials"),
        trust: TrustStore::new(vec![root.clone()], vec![]).expect("trust"),
        rsa_pss: false,
        clock: WallClock {
            at: Instant::now(),
            unix: CERT_NOW,
        },
    }))
}

fn ike_config(mode: Mode, domain: &str) -> IkeConfig {
    IkeConfig {
        member_id: 0,
        ike_port: 500,
        nat_t_port: 4500,
        local_domain: vec![domain.parse().unwrap()],
        retransmit_timeout: Duration::from_secs(1),
        retransmit_tries: 3,
        nat_keepalive: Duration::from_secs(20),
        fragmentation: true,
        fragment_size: if mode.fragments { 300 } else { 1280 },
        cookie_threshold: if mode.cookies { 0 } else { 100 },
        half_open_per_source: 4,
    }
}

struct Node {
    ike: Ike,
    peer: Option<PeerId>,
    policy: PeerPolicy,
    /// Live CHILD SAs as announced by events, by inbound SPI.
    children: HashMap<u32, ChildSaKeys>,
    /// (SPIi, SPIr-or-0-for-INIT, message id) of requests / responses delivered to this side.
    got_requests: HashSet<(u64, u64, u32)>,
    got_responses: HashSet<(u64, u64, u32)>,
}

pub struct World {
    a: Node,
    b: Node,
    now: Instant,
    queue: VecDeque<Packet>,
    history: VecDeque<Packet>,
    keys: HashMap<(u64, u64), SaKeys>,
    /// The input deleted SAs, removed a peer or forged messages: recovery may need `initiate`.
    deliberate: bool,
    half_open_limit: usize,
}

impl World {
    pub fn new(mode: Mode) -> World {
        let now = Instant::now();
        let pa = policy(mode, A_IP, B_IP, "10.2.0.0/16", true);
        let pb = policy(mode, B_IP, A_IP, "10.1.0.0/16", false);
        let mut a = Ike::new(ike_config(mode, "10.1.0.0/16"), Rng::from_seed([1; 32]));
        let mut b = Ike::new(ike_config(mode, "10.2.0.0/16"), Rng::from_seed([2; 32]));
        let peer_a = a.add_peer(pa.clone());
        let peer_b = b.add_peer(pb.clone());
        let node = |ike, peer, policy| Node {
            ike,
            peer: Some(peer),
            policy,
            children: HashMap::new(),
            got_requests: HashSet::new(),
            got_responses: HashSet::new(),
        };
        let mut w = World {
            a: node(a, peer_a, pa),
            b: node(b, peer_b, pb),
            now,
            queue: VecDeque::new(),
            history: VecDeque::new(),
            keys: HashMap::new(),
            deliberate: false,
            half_open_limit: 4,
        };
        // Start action "always" of A, as the node applies it.
        w.a.ike.initiate(now, peer_a);
        w.collect();
        w
    }

    /// Runs a whole input: the ops, then recovery and the final checks.
    pub fn run(input: &Input) {
        let mut w = World::new(input.mode);
        for op in &input.ops {
            w.apply(op);
            w.check();
        }
        w.recover();
    }

    /// Like [`World::run`], but the ops start from an established pair (IKE SA + CHILD SA after
    /// clean delivery), so they go straight at CREATE_CHILD_SA and INFORMATIONAL exchanges.
    pub fn run_established(input: &Input) {
        let mut w = World::new(input.mode);
        let end = w.now + Duration::from_secs(1);
        w.settle(end);
        assert!(
            !w.a.children.is_empty() && !w.b.children.is_empty(),
            "clean negotiation failed"
        );
        for op in &input.ops {
            w.apply(op);
            w.check();
        }
        w.recover();
    }

    fn node(&mut self, s: Side) -> &mut Node {
        match s {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn pick(&self, i: u8) -> Option<usize> {
        (!self.queue.is_empty()).then(|| usize::from(i) % self.queue.len())
    }

    pub fn apply(&mut self, op: &Op) {
        let now = self.now;
        match op {
            Op::Deliver(i) => {
                if let Some(i) = self.pick(*i) {
                    let p = self.queue.remove(i).unwrap();
                    self.deliver(p);
                }
            }
            Op::DeliverAll => {
                for p in std::mem::take(&mut self.queue) {
                    self.deliver(p);
                }
            }
            Op::Drop(i) => {
                if let Some(i) = self.pick(*i) {
                    self.queue.remove(i);
                }
            }
            Op::Duplicate(i) => {
                if let Some(i) = self.pick(*i) {
                    let p = self.queue[i].clone();
                    self.enqueue(p);
                }
            }
            Op::Swap(i, j) => {
                if let (Some(i), Some(j)) = (self.pick(*i), self.pick(*j)) {
                    self.queue.swap(i, j);
                }
            }
            Op::Replay(i) => {
                if !self.history.is_empty() {
                    let p = self.history[usize::from(*i) % self.history.len()].clone();
                    self.deliver(p);
                }
            }
            Op::Truncate(i, len) => {
                if let Some(i) = self.pick(*i) {
                    let mut p = self.queue.remove(i).unwrap();
                    let l = usize::from(*len) % (p.msg.len() + 1);
                    p.msg.truncate(l);
                    self.deliberate |= hdr(&p.msg).is_some_and(|h| h.mid == 0);
                    self.deliver(p);
                }
            }
            Op::FlipByte(i, at, x) => {
                if let Some(i) = self.pick(*i) {
                    let mut p = self.queue.remove(i).unwrap();
                    if !p.msg.is_empty() {
                        let at = usize::from(*at) % p.msg.len();
                        p.msg[at] ^= x.max(&1);
                    }
                    // A corrupted IKE_SA_INIT is unauthenticated: it may fail the exchange.
                    self.deliberate = true;
                    self.deliver(p);
                }
            }
            Op::Reseal(i, m) => {
                if let Some(i) = self.pick(*i) {
                    let mut p = self.queue.remove(i).unwrap();
                    if let Some(msg) = self.reseal(&p, m) {
                        p.msg = msg;
                        self.deliberate = true;
                    }
                    self.deliver(p);
                }
            }
            Op::Advance(v) => self.advance(now + step_duration(*v)),
            Op::Initiate(s) | Op::Acquire(s) => {
                let n = self.node(*s);
                if let Some(peer) = n.peer {
                    if matches!(op, Op::Initiate(_)) {
                        n.ike.initiate(now, peer);
                    } else {
                        n.ike.acquire(now, peer);
                    }
                }
                // B initiating duplicates the IKE SA: A may be left with two.
                self.deliberate |= *s == Side::B;
            }
            Op::RekeyChild(s, i) => {
                if let Some(c) = self.nth_child(*s, *i) {
                    self.node(*s).ike.rekey_child(now, c);
                }
            }
            Op::RekeyIke(s, i) => {
                if let Some(sa) = self.nth_sa(*s, *i) {
                    self.node(*s).ike.rekey_ike(now, sa);
                }
            }
            Op::DeleteChild(s, i) => {
                if let Some(c) = self.nth_child(*s, *i) {
                    self.node(*s).ike.delete_child_sa(now, c);
                    self.deliberate = true;
                }
            }
            Op::DeleteIke(s, i) => {
                if let Some(sa) = self.nth_sa(*s, *i) {
                    self.node(*s).ike.delete_ike_sa(now, sa);
                    self.deliberate = true;
                }
            }
            Op::ChildTraffic(s, i) => {
                if let Some(c) = self.nth_child(*s, *i) {
                    self.node(*s).ike.child_traffic(now, c);
                }
            }
            Op::RemovePeer(s) => {
                let n = self.node(*s);
                if let Some(peer) = n.peer.take() {
                    assert!(n.ike.remove_peer(now, peer).is_some());
                    assert!(n.ike.peer(peer).is_none(), "removed peer id still resolves");
                    self.deliberate = true;
                }
            }
            Op::AddPeer(s) => self.add_back(*s),
        }
        self.collect();
    }

    fn add_back(&mut self, s: Side) {
        let n = self.node(s);
        if n.peer.is_none() {
            let id = n.ike.add_peer(n.policy.clone());
            n.peer = Some(id);
        }
    }

    fn nth_sa(&self, s: Side, i: u8) -> Option<rampart_ike::IkeSaId> {
        let st = self.side(s).ike.status(self.now);
        (!st.is_empty()).then(|| st[usize::from(i) % st.len()].ike_sa)
    }

    fn nth_child(&self, s: Side, i: u8) -> Option<rampart_ike::ChildSaId> {
        let all: Vec<_> = self
            .side(s)
            .ike
            .status(self.now)
            .into_iter()
            .flat_map(|sa| sa.children.into_iter().map(|c| c.child))
            .collect();
        (!all.is_empty()).then(|| all[usize::from(i) % all.len()])
    }

    fn side(&self, s: Side) -> &Node {
        match s {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn enqueue(&mut self, p: Packet) {
        if self.queue.len() >= QUEUE_CAP {
            self.queue.pop_front();
        }
        self.queue.push_back(p);
    }

    fn deliver(&mut self, p: Packet) {
        let now = self.now;
        let to = self.node(p.from.other());
        if let Some(h) = hdr(&p.msg) {
            let spi_r = if h.exchange == exchange::IKE_SA_INIT {
                0
            } else {
                h.spi_r
            };
            let set = if h.response {
                &mut to.got_responses
            } else {
                &mut to.got_requests
            };
            set.insert((h.spi_i, spi_r, h.mid));
        }
        if trace() {
            eprintln!(
                "{:?} deliver {:?} -> {:?} len {} hdr {:x?}",
                self.now,
                p.from,
                p.from.other(),
                p.msg.len(),
                hdr(&p.msg)
            );
        }
        let to = self.node(p.from.other());
        to.ike.handle_datagram(now, p.dst, p.src, &p.msg);
        self.collect();
    }

    /// Drains both sides' events: datagrams go to the queue (after the window check), CHILD SA
    /// events update the announced set.
    fn collect(&mut self) {
        for s in [Side::A, Side::B] {
            while let Some(ev) = self.node(s).ike.poll_event() {
                if trace() {
                    match &ev {
                        IkeEvent::Transmit { msg, .. } => eprintln!("  {s:?} tx {:x?}", hdr(msg)),
                        e => eprintln!("  {s:?} {e:?}"),
                    }
                }
                match ev {
                    IkeEvent::Transmit { local, remote, msg } => {
                        self.check_window(s, &msg);
                        let p = Packet {
                            from: s,
                            src: local,
                            dst: remote,
                            msg,
                        };
                        if self.history.len() >= HISTORY_CAP {
                            self.history.pop_front();
                        }
                        self.history.push_back(p.clone());
                        self.enqueue(p);
                    }
                    IkeEvent::ChildSaUp(k) => {
                        let n = self.node(s);
                        assert!(
                            n.children.insert(k.spi_in, k).is_none(),
                            "{s:?}: ChildSaUp for an inbound SPI already up"
                        );
                    }
                    IkeEvent::ChildSaDown { spi_in, child, .. } => {
                        let n = self.node(s);
                        let k = n.children.remove(&spi_in);
                        assert!(
                            k.is_some_and(|k| k.child == child),
                            "{s:?}: ChildSaDown for a CHILD SA never announced"
                        );
                    }
                    _ => {}
                }
            }
        }
        self.learn_keys();
    }

    /// Message-id window of one, as seen on the wire.
    fn check_window(&self, s: Side, msg: &[u8]) {
        let Some(h) = hdr(msg) else { return };
        let n = self.side(s);
        if h.exchange == exchange::IKE_SA_INIT {
            return;
        }
        if h.response {
            assert!(
                n.got_requests.contains(&(h.spi_i, h.spi_r, h.mid)),
                "{s:?} sent response {} of {:016x}/{:016x} to a request never delivered",
                h.mid,
                h.spi_i,
                h.spi_r
            );
        } else if h.mid > 0 {
            assert!(
                n.got_responses.contains(&(h.spi_i, h.spi_r, h.mid - 1))
                    || (h.mid == 1 && n.got_responses.contains(&(h.spi_i, 0, 0))),
                "{s:?} sent request {} of {:016x}/{:016x} before the response to {} arrived",
                h.mid,
                h.spi_i,
                h.spi_r,
                h.mid - 1
            );
        }
    }

    /// Keys of every exportable SA (kept after the SA changes state, for resealing).
    fn learn_keys(&mut self) {
        for s in [Side::A, Side::B] {
            let now = self.now;
            for st in self.side(s).ike.status(now) {
                if st.state != IkeSaStateKind::Established
                    || self.keys.contains_key(&(st.spi_i, st.spi_r))
                {
                    continue;
                }
                if let Some(x) = self.side(s).ike.export_sa(now, st.ike_sa) {
                    self.keys.insert(
                        (x.spi_i, x.spi_r),
                        SaKeys {
                            encr: x.algs.encr,
                            integ: x.algs.integ,
                            ei: x.sk_ei.to_vec(),
                            ai: x.sk_ai.to_vec(),
                            er: x.sk_er.to_vec(),
                            ar: x.sk_ar.to_vec(),
                        },
                    );
                }
            }
        }
    }

    /// Decrypts the SK/SKF payload of `p`, applies `m`, seals again with the same key.
    fn reseal(&self, p: &Packet, m: &InnerMutation) -> Option<Vec<u8>> {
        let msg = parse(&p.msg).ok()?;
        let mut h: Header = msg.header;
        let keys = self.keys.get(&(h.spi_i, h.spi_r))?;
        let key = keys.key(h.is_initiator())?;
        let (kind, first, extra, body) = match msg.payloads.last()? {
            Payload::Sk { first_inner, body } => {
                (payload_type::SK, *first_inner, Vec::new(), body.clone())
            }
            Payload::Skf {
                first_inner,
                number,
                total,
                body,
            } => {
                let mut e = number.to_be_bytes().to_vec();
                e.extend_from_slice(&total.to_be_bytes());
                (payload_type::SKF, *first_inner, e, body.clone())
            }
            _ => return None,
        };
        let mut plain = decrypt(&p.msg, body, &key)?;
        let mut first = first;
        let whole = kind == payload_type::SK || extra.first() == Some(&0) && extra[1] == 1;
        match m {
            InnerMutation::FlipPlainBit(at) => {
                if !plain.is_empty() {
                    let at = usize::from(*at) % (plain.len() * 8);
                    plain[at / 8] ^= 1 << (at % 8);
                }
            }
            InnerMutation::TruncatePlain(l) => plain.truncate(usize::from(*l) % (plain.len() + 1)),
            InnerMutation::MessageId(d) => {
                h.message_id = h.message_id.wrapping_add_signed(i32::from(*d))
            }
            InnerMutation::Exchange(x) => h.exchange = 34 + x % 5,
            InnerMutation::Flags(f) => h.flags ^= f & 0x38,
            _ if whole => {
                let mut list = parse_payloads(first, &plain).ok()?;
                edit_list(&mut list, m);
                plain.clear();
                first = encode_payloads(&list, &mut plain);
            }
            _ => return None,
        }
        seal_plain(&h, kind, first, &extra, plain, &key)
    }

    /// Advances to `end`, running each side's timers as they fall due.
    fn advance(&mut self, end: Instant) {
        for _ in 0..10_000 {
            let next = [self.a.ike.poll_timeout(), self.b.ike.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(t) = next.filter(|t| *t <= end) else {
                self.now = self.now.max(end);
                return;
            };
            self.now = self.now.max(t);
            self.timers();
        }
        panic!("timers keep falling due without time advancing");
    }

    fn timers(&mut self) {
        let now = self.now;
        for s in [Side::A, Side::B] {
            let n = self.node(s);
            if n.ike.poll_timeout().is_some_and(|t| t <= now) {
                n.ike.handle_timeout(now);
                let after = n.ike.poll_timeout();
                assert!(
                    after.is_none_or(|t| t > now),
                    "{s:?}: poll_timeout {after:?} not after handle_timeout({now:?})"
                );
            }
        }
        self.collect();
    }

    /// Invariants that hold after every step.
    pub fn check(&self) {
        let now = self.now;
        for s in [Side::A, Side::B] {
            let n = self.side(s);
            let st = n.ike.status(now);
            let half_open = n.ike.half_open_count();
            assert!(
                half_open <= self.half_open_limit,
                "{s:?}: {half_open} half-open SAs"
            );
            assert!(
                st.len() <= MAX_IKE_SAS + half_open,
                "{s:?}: {} IKE SAs: {:?}",
                st.len(),
                st.iter().map(|x| x.state).collect::<Vec<_>>()
            );
            let listed: HashSet<u32> = st
                .iter()
                .flat_map(|sa| sa.children.iter().map(|c| c.spi_in))
                .collect();
            assert!(
                listed.len() <= MAX_CHILD_SAS,
                "{s:?}: {} CHILD SAs",
                listed.len()
            );
            let announced: HashSet<u32> = n.children.keys().copied().collect();
            assert_eq!(
                listed, announced,
                "{s:?}: status() CHILD SAs differ from ChildSaUp/ChildSaDown"
            );
        }
        // Two CHILD SAs with the same SPIs carry the same keys.
        for (spi, ka) in &self.a.children {
            if let Some(kb) = self.b.children.get(&ka.spi_out) {
                if kb.spi_out == *spi {
                    assert_eq!(ka.key_out, kb.key_in, "CHILD SA {spi:08x}: keys differ");
                    assert_eq!(ka.key_in, kb.key_out, "CHILD SA {spi:08x}: keys differ");
                }
            }
        }
    }

    /// Clean delivery until `end`: every datagram arrives (in order, instantly), timers run.
    fn settle(&mut self, end: Instant) {
        while self.now < end {
            let mut budget = 10_000;
            while let Some(p) = self.queue.pop_front() {
                self.deliver(p);
                budget -= 1;
                assert!(budget > 0, "datagram storm: exchanges never settle");
            }
            self.check();
            let next = [self.a.ike.poll_timeout(), self.b.ike.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.timers();
                }
                _ => self.now = end,
            }
        }
        while let Some(p) = self.queue.pop_front() {
            self.deliver(p);
        }
    }

    /// The garbage stops; the pair must end with a working, matching IKE SA + CHILD SA.
    pub fn recover(&mut self) {
        self.queue.clear();
        if self.a.peer.is_none() || self.b.peer.is_none() {
            self.deliberate = true;
        }
        self.add_back(Side::A);
        self.add_back(Side::B);
        let end = self.now + RECOVERY;
        // The operator (only after deliberate or forged input): `initiate` now and every 20 s.
        // The engine re-initiates an "always" peer by itself only after a timeout, not after an
        // IKE SA failed otherwise (AUTHENTICATION_FAILED provoked by a corrupted IKE_SA_INIT
        // response, an error notify), so without this such inputs would stay down.
        while self.deliberate && self.now + OPERATOR_PERIOD < end {
            let (now, peer) = (self.now, self.a.peer.unwrap());
            self.a.ike.initiate(now, peer);
            self.collect();
            self.settle(now + OPERATOR_PERIOD);
        }
        self.settle(end);
        self.check();
        let sa = |n: &Node| -> Vec<EstablishedSa> {
            n.ike
                .status(self.now)
                .into_iter()
                .filter(|s| s.state == IkeSaStateKind::Established)
                .map(|s| {
                    let c = s.children.iter().map(|c| (c.spi_in, c.spi_out)).collect();
                    (s.spi_i, s.spi_r, c)
                })
                .collect()
        };
        let (sa_a, sa_b) = (sa(&self.a), sa(&self.b));
        let working = sa_a.iter().any(|(i, r, ca)| {
            sa_b.iter().any(|(i2, r2, cb)| {
                i == i2 && r == r2 && ca.iter().any(|(a_in, a_out)| cb.contains(&(*a_out, *a_in)))
            })
        });
        assert!(
            working,
            "no working IKE SA + CHILD SA after recovery: A {sa_a:x?} B {sa_b:x?}\nA: {:?}\nB: {:?}",
            self.a.ike.status(self.now),
            self.b.ike.status(self.now),
        );
        for (x, y, name) in [(&sa_a, &sa_b, "A"), (&sa_b, &sa_a, "B")] {
            for (i, r, _) in x {
                assert!(
                    y.iter().any(|(i2, r2, _)| i == i2 && r == r2),
                    "{name} keeps IKE SA {i:016x}/{r:016x} the peer does not have"
                );
            }
        }
    }
}

/// `FUZZ_TRACE=1` prints every delivery and event (to debug a failing input).
fn trace() -> bool {
    std::env::var_os("FUZZ_TRACE").is_some()
}

fn edit_list(list: &mut Vec<Payload>, m: &InnerMutation) {
    let n = list.len();
    let at = |i: &u8| usize::from(*i) % n.max(1);
    match m {
        InnerMutation::RemovePayload(i) if n > 0 => {
            list.remove(at(i));
        }
        InnerMutation::DuplicatePayload(i) if n > 0 => {
            let p = list[at(i)].clone();
            list.insert(at(i), p);
        }
        InnerMutation::SwapPayloads(i, j) if n > 0 => list.swap(at(i), at(j)),
        InnerMutation::Unknown(i, critical) if n > 0 => {
            list[at(i)] = Payload::Unknown {
                kind: 200,
                critical: *critical,
                data: vec![*i; 4],
            }
        }
        InnerMutation::AddNotify(kind) => list.push(Payload::Notify(rampart_wire::ike::Notify {
            protocol: 0,
            spi: Vec::new(),
            kind: *kind,
            data: Vec::new(),
        })),
        InnerMutation::AddDelete(ike) => {
            let spis = list
                .iter()
                .find_map(|p| match p {
                    Payload::Notify(n) if n.spi.len() == 4 => {
                        Some(vec![u32::from_be_bytes(n.spi[..4].try_into().unwrap())])
                    }
                    _ => None,
                })
                .unwrap_or_default();
            list.push(Payload::Delete(rampart_wire::ike::Delete {
                protocol: if *ike { 1 } else { 3 },
                spis: if *ike { Vec::new() } else { spis },
            }))
        }
        _ => {}
    }
}

/// The body (IV || ciphertext || ICV) at `body` of `msg`, verified and decrypted, without padding.
fn decrypt(msg: &[u8], body: std::ops::Range<usize>, key: &CipherKey) -> Option<Vec<u8>> {
    let (iv_len, icv_len) = (key.iv_len(), key.icv_len());
    let aad = msg.get(..body.start)?;
    let b = msg.get(body)?;
    if b.len() < iv_len + icv_len + 1 {
        return None;
    }
    let (iv, rest) = b.split_at(iv_len);
    let (ct, icv) = rest.split_at(rest.len() - icv_len);
    let mut data = ct.to_vec();
    key.open(iv, aad, &[], &mut data, icv).ok()?;
    let pad = usize::from(*data.last()?);
    data.truncate(data.len().checked_sub(pad + 1)?);
    Some(data)
}

/// IKE header | generic header of `kind` | `extra` | IV | E(plain | padding | pad length) | ICV,
/// the layout RFC 7296 3.14 / RFC 7383 2.5 give.
fn seal_plain(
    header: &Header,
    kind: u8,
    first: u8,
    extra: &[u8],
    mut plain: Vec<u8>,
    key: &CipherKey,
) -> Option<Vec<u8>> {
    let block = key.block_len().max(1);
    let pad = (block - (plain.len() + 1) % block) % block;
    plain.resize(plain.len() + pad, 0);
    plain.push(pad as u8);
    let (iv_len, icv_len) = (key.iv_len(), key.icv_len());
    let sk_len = 4 + extra.len() + iv_len + plain.len() + icv_len;
    let total = HEADER_LEN + sk_len;
    let mut h = *header;
    h.next_payload = kind;
    h.length = u32::try_from(total).ok()?;
    let mut out = Vec::with_capacity(total);
    encode_header(&h, &mut out);
    out.push(first);
    out.push(0);
    out.extend_from_slice(&u16::try_from(sk_len).ok()?.to_be_bytes());
    out.extend_from_slice(extra);
    let aad_end = out.len();
    // The IV comes from a fixed seed: reuse under one key is harmless in a harness (no secrecy
    // is at stake) and keeps a run a pure function of its input.
    out.resize(aad_end + iv_len, 0);
    let mut rng = Rng::from_seed([plain.len() as u8 ^ 0x5a; 32]);
    rng.fill(&mut out[aad_end..]);
    out.extend_from_slice(&plain);
    out.resize(total, 0);
    let (aad, rest) = out.split_at_mut(aad_end);
    let (iv, rest) = rest.split_at_mut(iv_len);
    let (data, icv) = rest.split_at_mut(plain.len());
    key.seal(iv, aad, &[], data, icv).ok()?;
    Some(out)
}
