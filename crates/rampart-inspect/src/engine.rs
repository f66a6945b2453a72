//! The inspector: one call per packet, `handle(now, side, packet) -> Verdict`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::policy::{ConnTimeouts, InspectPolicy, RuleAction};
use rampart_wire::ip::proto;

use crate::conn::{Change, ConnState, Connection, NatKind, CLOCK_BASE_MS};
use crate::log::{Category, Limiter, LogRecord};
use crate::nat::Nat;
use crate::packet::{self, Kind, Parsed};
use crate::rewrite::{set_addr_v4, set_port, End};
use crate::rules::{Decision, RuleBase};
use crate::stats::InspectStats;
use crate::table::{Table, Which};
use crate::tcp::{self, Dir, TcpPhase};
use crate::tuple::{FlowTuple, Side};
use crate::{DropCause, OutOfState, Verdict};

/// Slab positions looked at per `handle_timeout`.
const SWEEP_BUDGET: usize = 65_536;
/// Positions looked at when the table is full before a new connection is refused.
const SWEEP_ON_FULL: usize = 1024;
/// How often `handle_timeout` wants to run.
const SWEEP_INTERVAL_MS: u64 = 1000;
/// Tries to find a NAT translation whose keys are free.
const NAT_TRIES: u32 = 16;

mod reload;
mod transfer;

pub use reload::{PolicySwap, ReloadOutcome};
pub use transfer::ApplyError;

/// The stateful inspection engine of one gateway (sans-IO).
///
/// Invariants: every live connection is in the table under both its keys; a hide NAT port is
/// marked in use exactly while a connection holds it; time only comes in through `now`.
pub struct Inspector {
    epoch: Instant,
    member_id: u16,
    counter: u64,
    rules: RuleBase,
    nat: Nat,
    timeouts_ms: [u64; 6],
    table: Table,
    stats: InspectStats,
    changes: VecDeque<Change>,
    change_limit: usize,
    changes_overflowed: bool,
    logs: VecDeque<LogRecord>,
    limiter: Limiter,
    sweep_cursor: usize,
    next_sweep_ms: u64,
    /// A cluster standby's replicas: nothing expires (the active member streams deletions).
    frozen: bool,
    /// Handshake enforcement: ISNs are recorded and the handshake's numbers checked.
    enforce_handshake: bool,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// Idle timeouts in milliseconds, indexed as [`Inspector::timeout_ms`] reads them.
fn timeouts_ms(t: &ConnTimeouts) -> [u64; 6] {
    [
        ms(t.tcp_handshake),
        ms(t.tcp_established),
        ms(t.tcp_closing),
        ms(t.tcp_closed),
        ms(t.udp),
        ms(t.icmp),
    ]
}

impl Inspector {
    /// `member_id` goes into the top 16 bits of every connection id; `seed` keys the table's
    /// hash (take it from the node's RNG).
    pub fn new(config: InspectPolicy, member_id: u16, seed: u64, now: Instant) -> Inspector {
        let timeouts_ms = timeouts_ms(&config.timeouts);
        let table = Table::new(config.capacity as usize, seed);
        let nat = Nat::new(config.nat.clone());
        Inspector {
            epoch: now,
            member_id,
            counter: 0,
            rules: RuleBase::new(config),
            nat,
            timeouts_ms,
            table,
            stats: InspectStats::default(),
            changes: VecDeque::new(),
            change_limit: 0,
            changes_overflowed: false,
            logs: VecDeque::new(),
            limiter: Limiter::default(),
            sweep_cursor: 0,
            next_sweep_ms: CLOCK_BASE_MS + SWEEP_INTERVAL_MS,
            frozen: false,
            enforce_handshake: false,
        }
    }

    /// Turns TCP handshake enforcement on or off (off by default). While on, a connection
    /// created by a SYN records the client's ISN, the first SYN-ACK the server's, and a SYN-ACK
    /// that does not acknowledge `client ISN + 1`, or a handshake-completing ACK without
    /// `seq = client ISN + 1, ack = server ISN + 1`, is dropped as out of state
    /// ([`OutOfState::HandshakeMismatch`], counted in `handshake_mismatch`, logged rate-limited)
    /// without advancing the connection. An ISN that is not known (a connection created while
    /// enforcement was off, or by a member without it) lets the packet through unverified
    /// (`handshake_unverified`). Off, nothing is recorded or checked and the change stream
    /// carries no ISNs. Without a rule base a mismatch passes untracked like any out-of-state
    /// packet (the state still does not advance).
    pub fn set_handshake_enforcement(&mut self, on: bool) {
        self.enforce_handshake = on;
    }

    pub fn handshake_enforcement(&self) -> bool {
        self.enforce_handshake
    }

    /// The inspector's clock (see [`Connection`]): [`CLOCK_BASE_MS`] at its creation.
    pub(crate) fn now_ms(&self, now: Instant) -> u64 {
        CLOCK_BASE_MS.saturating_add(ms(now.saturating_duration_since(self.epoch)))
    }

    /// Whether no rule base is configured: everything is accepted, connections are still
    /// tracked (and translated) when they can be.
    pub fn permissive(&self) -> bool {
        self.rules.is_empty()
    }

    /// Starts recording the change stream, keeping at most `limit` undrained changes; past that
    /// changes are dropped and [`Inspector::changes_overflowed`] turns true (a full sync is due).
    pub fn enable_change_stream(&mut self, limit: usize) {
        self.change_limit = limit;
    }

    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// Whether changes were lost since the last call (and clears the flag).
    pub fn changes_overflowed(&mut self) -> bool {
        std::mem::take(&mut self.changes_overflowed)
    }

    pub fn poll_log(&mut self) -> Option<LogRecord> {
        self.logs.pop_front()
    }

    pub fn stats(&self) -> InspectStats {
        let mut s = self.stats;
        s.active = self.table.len() as u64;
        s.capacity = self.table.capacity() as u64;
        s
    }

    pub fn rules(&self) -> &RuleBase {
        &self.rules
    }

    pub fn nat_rule_name(&self, rule: u16) -> &str {
        self.nat.rule_name(rule)
    }

    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.table.iter().map(|(_, c)| c)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.len() == 0
    }

    pub fn bytes_per_entry(&self) -> usize {
        self.table.bytes_per_entry()
    }

    pub fn poll_timeout(&self) -> Instant {
        self.epoch + Duration::from_millis(self.next_sweep_ms - CLOCK_BASE_MS)
    }

    /// Removes expired connections, a bounded number of table positions per call.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_ms = self.now_ms(now);
        if now_ms >= self.next_sweep_ms {
            self.next_sweep_ms = now_ms + SWEEP_INTERVAL_MS;
            if !self.frozen {
                self.sweep(now_ms, SWEEP_BUDGET);
            }
        }
    }

    fn sweep(&mut self, now_ms: u64, budget: usize) {
        let n = self.table.slab_len();
        if n == 0 {
            return;
        }
        for _ in 0..budget.min(n) {
            self.sweep_cursor = (self.sweep_cursor + 1) % n;
            let idx = self.sweep_cursor as u32;
            if self.table.get(idx).is_some_and(|c| c.expires_ms <= now_ms) {
                self.remove(idx);
                self.stats.expired += 1;
            }
        }
    }

    fn remove(&mut self, idx: u32) {
        if let Some(c) = self.unlink(idx) {
            self.push_change(Change::Deleted {
                id: c.id,
                init_side: c.init_side,
                orig: c.orig,
            });
        }
    }

    /// Removes entry `idx` and gives back its NAT allocation, without a change record.
    fn unlink(&mut self, idx: u32) -> Option<Connection> {
        let c = self.table.remove(idx)?;
        self.nat.release(c.nat, &c.xlat);
        Some(c)
    }

    fn push_change(&mut self, c: Change) {
        if self.change_limit == 0 {
            return;
        }
        if self.changes.len() >= self.change_limit {
            self.changes_overflowed = true;
        } else {
            self.changes.push_back(c);
        }
    }

    fn log(&mut self, now_ms: u64, cat: Category, message: impl FnOnce() -> String) {
        if let Some(suppressed) = self.limiter.allow(cat, now_ms) {
            let mut message = message();
            if suppressed > 0 {
                message.push_str(&format!(" ({suppressed} similar messages suppressed)"));
            }
            self.logs.push_back(LogRecord {
                warn: cat != Category::Rule,
                message,
            });
        }
    }

    fn timeout_ms(&self, state: ConnState) -> u64 {
        let i = match state {
            ConnState::Tcp(s) => match s.phase() {
                TcpPhase::Handshake => 0,
                TcpPhase::Established => 1,
                TcpPhase::Closing => 2,
                TcpPhase::Closed => 3,
            },
            ConnState::UdpUnreplied | ConnState::UdpReplied | ConnState::Other => 4,
            ConnState::IcmpEcho => 5,
        };
        self.timeouts_ms[i]
    }

    /// Inspects one IP packet arriving on `side`. On `Accept` the packet may have been
    /// translated in place (same length). On `Reject` the caller answers it
    /// ([`crate::reject::build`]). Never allocates, except for (rate-limited) log records.
    pub fn handle(&mut self, now: Instant, side: Side, pkt: &mut [u8]) -> Verdict {
        let now_ms = self.now_ms(now);
        self.stats.packets += 1;
        let Some(p) = packet::parse(pkt) else {
            self.stats.dropped_malformed += 1;
            return Verdict::Drop(DropCause::Malformed);
        };
        match p.kind {
            Kind::Fragment => self.out_of_state(now_ms, side, &p, OutOfState::NonFirstFragment),
            Kind::IcmpOther => match self.decide(now_ms, side, &p) {
                Ok(_) => Verdict::Accept,
                Err(v) => v,
            },
            Kind::IcmpError { .. } => self.icmp_error(now_ms, side, pkt, &p),
            _ => self.track(now_ms, side, pkt, &p),
        }
    }

    fn out_of_state(&mut self, now_ms: u64, side: Side, p: &Parsed, why: OutOfState) -> Verdict {
        if self.permissive() {
            self.stats.untracked += 1;
            return Verdict::Accept;
        }
        self.stats.dropped_out_of_state += 1;
        let t = p.tuple;
        self.log(now_ms, Category::OutOfState, || {
            format!(
                "drop {} {t} from {}: out of state: {why}",
                proto_name(t.proto),
                side_name(side)
            )
        });
        Verdict::Drop(DropCause::OutOfState(why))
    }

    /// A handshake packet whose numbers do not match (enforcement on): dropped as out of state
    /// and counted in `handshake_mismatch` (under a rule base), logged in its own rate-limited
    /// category; the connection is left as it was.
    fn handshake_mismatch(
        &mut self,
        now_ms: u64,
        side: Side,
        p: &Parsed,
        why: tcp::HandshakeMismatch,
    ) -> Verdict {
        if self.permissive() {
            self.stats.untracked += 1;
            return Verdict::Accept;
        }
        self.stats.dropped_out_of_state += 1;
        self.stats.handshake_mismatch += 1;
        let t = p.tuple;
        self.log(now_ms, Category::Handshake, || {
            format!(
                "drop tcp {t} from {}: out of state: handshake mismatch: {why}",
                side_name(side)
            )
        });
        Verdict::Drop(DropCause::OutOfState(OutOfState::HandshakeMismatch))
    }

    /// Rule base decision for a packet that opens a connection: `Ok` to accept.
    fn decide(&mut self, now_ms: u64, side: Side, p: &Parsed) -> Result<Decision, Verdict> {
        let d = self.rules.decide(p);
        let t = p.tuple;
        let verb = match d.action {
            RuleAction::Accept => {
                if d.log {
                    let rule = self.rules.rule_name(d.rule).to_string();
                    self.log(now_ms, Category::Rule, || {
                        format!(
                            "accept {} {t} from {} by rule {rule}",
                            proto_name(t.proto),
                            side_name(side)
                        )
                    });
                }
                return Ok(d);
            }
            RuleAction::Drop => "drop",
            RuleAction::Reject => "reject",
        };
        self.stats.dropped_by_rule += 1;
        if d.action == RuleAction::Reject {
            self.stats.rejected += 1;
        }
        if d.log {
            let rule = self.rules.rule_name(d.rule).to_string();
            self.log(now_ms, Category::Rule, || {
                format!(
                    "{verb} {} {t} from {} by rule {rule}",
                    proto_name(t.proto),
                    side_name(side)
                )
            });
        }
        Err(if d.action == RuleAction::Reject {
            Verdict::Reject
        } else {
            Verdict::Drop(DropCause::Rule(d.rule))
        })
    }

    fn track(&mut self, now_ms: u64, side: Side, pkt: &mut [u8], p: &Parsed) -> Verdict {
        if let Some((idx, which)) = self.table.find(side, &p.tuple) {
            match self.existing(now_ms, idx, which, pkt, p) {
                Some(v) => return v,
                None => self.remove(idx), // expired, or a SYN reusing a closed connection's ports
            }
        }
        // A new connection.
        match p.kind {
            Kind::Tcp { flags, .. } => {
                if let Err(why) = tcp::start(flags) {
                    return self.out_of_state(now_ms, side, p, why);
                }
            }
            Kind::Echo { request: false } => {
                return self.out_of_state(now_ms, side, p, OutOfState::EchoReplyWithoutRequest)
            }
            _ => {}
        }
        let d = match self.decide(now_ms, side, p) {
            Ok(d) => d,
            Err(v) => return v,
        };
        if self.table.is_full() {
            self.sweep(now_ms, SWEEP_ON_FULL);
        }
        if self.table.is_full() {
            self.stats.table_full += 1;
            let cap = self.table.capacity();
            let t = p.tuple;
            self.log(now_ms, Category::TableFull, || {
                format!(
                    "connection table full ({cap} entries): new connection {} {t} refused",
                    proto_name(t.proto)
                )
            });
            if self.permissive() {
                return Verdict::Accept;
            }
            return Verdict::Drop(DropCause::TableFull);
        }
        let state = match p.kind {
            Kind::Tcp { .. } => ConnState::Tcp(tcp::TcpState::SynSent),
            Kind::Udp => ConnState::UdpUnreplied,
            Kind::Echo { .. } => ConnState::IcmpEcho,
            _ => ConnState::Other,
        };
        let handshake = match p.kind {
            Kind::Tcp { seq, .. } if self.enforce_handshake => tcp::Handshake {
                client_isn: Some(seq),
                server_isn: None,
            },
            _ => tcp::Handshake::default(),
        };
        let mut inserted = None;
        for attempt in 0..NAT_TRIES {
            let plan = match self.nat.plan(side, &p.tuple, attempt) {
                Ok(plan) => plan,
                Err(e) => {
                    self.stats.nat_exhausted += 1;
                    let name = self.nat.rule_name(e.rule).to_string();
                    let t = p.tuple;
                    self.log(now_ms, Category::NatExhausted, || {
                        format!(
                            "NAT {name} exhausted: no port or address left for {} {t}",
                            proto_name(t.proto)
                        )
                    });
                    return Verdict::Drop(DropCause::NatExhausted);
                }
            };
            let c = Connection {
                id: u64::from(self.member_id) << 48 | (self.counter & ((1 << 48) - 1)),
                orig: p.tuple,
                xlat: plan.xlat,
                init_side: side,
                state,
                rule: d.rule,
                service: d.service,
                nat: plan.nat,
                created_ms: now_ms,
                last_seen_ms: now_ms,
                expires_ms: now_ms + self.timeout_ms(state),
                packets: [1, 0],
                bytes: [p.len as u64, 0],
                handshake,
            };
            if let Some(idx) = self.table.insert(c) {
                inserted = Some(idx);
                break;
            }
            self.nat.release(plan.nat, &plan.xlat);
            if plan.nat.kind == NatKind::None || plan.nat.kind == NatKind::Static {
                break; // the same translation again would conflict again
            }
        }
        let Some(idx) = inserted else {
            return self.out_of_state(now_ms, side, p, OutOfState::TupleInUse);
        };
        self.counter += 1;
        self.stats.connections_accepted += 1;
        let Some(c) = self.table.get(idx).copied() else {
            return Verdict::Accept;
        };
        self.push_change(Change::Created(transfer::exported(c, now_ms)));
        translate(pkt, p, &c.orig, &c.xlat);
        Verdict::Accept
    }

    /// A packet of a known connection; `None` when the entry must go (expired, or replaced by
    /// a new SYN) and the packet be treated as new.
    fn existing(
        &mut self,
        now_ms: u64,
        idx: u32,
        which: Which,
        pkt: &mut [u8],
        p: &Parsed,
    ) -> Option<Verdict> {
        let c = *self.table.get(idx)?;
        if c.expires_ms <= now_ms {
            self.stats.expired += 1;
            return None;
        }
        let dir = if which == Which::Orig {
            Dir::Orig
        } else {
            Dir::Reply
        };
        let mut handshake = c.handshake;
        let state = match (c.state, p.kind) {
            (ConnState::Tcp(s), Kind::Tcp { flags, seq, ack }) => {
                let syn_only = flags & (tcp::flags::SYN | tcp::flags::ACK) == tcp::flags::SYN;
                if dir == Dir::Orig && s.reusable() && syn_only {
                    return None;
                }
                let n = match tcp::next(s, dir, flags) {
                    Ok(n) => n,
                    Err(why) => return Some(self.out_of_state(now_ms, c.init_side, p, why)),
                };
                if s == tcp::TcpState::SynSent && n == tcp::TcpState::SynReceived {
                    self.stats.handshake_replies += 1;
                }
                if self.enforce_handshake && s.phase() == TcpPhase::Handshake {
                    match tcp::check_handshake(c.handshake, s, dir, flags, seq, ack) {
                        Ok((hs, check)) => {
                            match check {
                                tcp::HandshakeCheck::Verified => self.stats.handshake_verified += 1,
                                tcp::HandshakeCheck::Unknown => {
                                    self.stats.handshake_unverified += 1
                                }
                                tcp::HandshakeCheck::NotChecked => {}
                            }
                            handshake = hs;
                        }
                        Err(m) => {
                            return Some(self.handshake_mismatch(now_ms, c.init_side, p, m));
                        }
                    }
                }
                ConnState::Tcp(n)
            }
            (ConnState::UdpUnreplied, _) if dir == Dir::Reply => ConnState::UdpReplied,
            (s, _) => s,
        };
        let timeout = self.timeout_ms(state);
        let e = self.table.get_mut(idx)?;
        let d = dir as usize;
        e.packets[d] += 1;
        e.bytes[d] += p.len as u64;
        e.last_seen_ms = now_ms;
        e.state = state;
        e.expires_ms = now_ms + timeout;
        e.handshake = handshake;
        if state != c.state || handshake != c.handshake {
            self.push_change(Change::Updated {
                id: c.id,
                init_side: c.init_side,
                orig: c.orig,
                state,
                expires_ms: CLOCK_BASE_MS + timeout,
                handshake,
            });
        }
        match dir {
            Dir::Orig => translate(pkt, p, &c.orig, &c.xlat),
            Dir::Reply => translate(pkt, p, &c.xlat.reverse(), &c.orig.reverse()),
        }
        Some(Verdict::Accept)
    }

    fn icmp_error(&mut self, now_ms: u64, side: Side, pkt: &mut [u8], p: &Parsed) -> Verdict {
        let Kind::IcmpError {
            quoted,
            inner_l3,
            inner_l4,
        } = p.kind
        else {
            return Verdict::Accept;
        };
        // The quoted packet went the other way: its reverse is a packet of this direction.
        let Some((idx, which)) = self.table.find(side, &quoted.reverse()) else {
            return self.out_of_state(now_ms, side, p, OutOfState::IcmpErrorWithoutConnection);
        };
        let Some(c) = self.table.get(idx).copied() else {
            return Verdict::Accept;
        };
        if c.orig == c.xlat || c.orig.v6 {
            return Verdict::Accept;
        }
        // (quoted as it is, quoted as it must leave), and the outer addresses to match.
        let (q_from, q_to) = match which {
            Which::Reply => (c.xlat, c.orig),
            Which::Orig => (c.orig.reverse(), c.xlat.reverse()),
        };
        let (len, l4) = (p.len, p.l4);
        let outer_src = pkt[12..16] == q_from.dst[..4];
        let outer_dst = pkt[16..20] == q_from.src[..4];
        if outer_dst {
            set_addr_v4(pkt, l4, proto::ICMP, false, End::Dst, v4(&q_to.src));
        }
        if outer_src {
            set_addr_v4(pkt, l4, proto::ICMP, false, End::Src, v4(&q_to.dst));
        }
        if let Some(inner) = pkt.get_mut(inner_l3..len) {
            let il4 = inner_l4 - inner_l3;
            let udp = quoted.proto == proto::UDP;
            set_addr_v4(inner, il4, quoted.proto, udp, End::Src, v4(&q_to.src));
            set_addr_v4(inner, il4, quoted.proto, udp, End::Dst, v4(&q_to.dst));
            match quoted.proto {
                proto::TCP | proto::UDP => {
                    set_port(inner, il4, quoted.proto, End::Src, q_to.sport);
                    set_port(inner, il4, quoted.proto, End::Dst, q_to.dport);
                }
                proto::ICMP => {
                    let id = if quoted.sport != 0 {
                        q_to.sport
                    } else {
                        q_to.dport
                    };
                    set_port(inner, il4, proto::ICMP, End::Src, id);
                }
                _ => {}
            }
        }
        if let Some(icmp) = pkt.get_mut(l4..len) {
            icmp[2] = 0;
            icmp[3] = 0;
            let c = rampart_wire::checksum::checksum(icmp);
            crate::rewrite::put16(icmp, 2, c);
        }
        Verdict::Accept
    }
}

fn v4(b: &[u8; 16]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Rewrites a packet whose tuple is `from` so that its tuple is `to` (IPv4 only).
fn translate(pkt: &mut [u8], p: &Parsed, from: &FlowTuple, to: &FlowTuple) {
    if from == to || from.v6 {
        return;
    }
    let has_l4 = !matches!(p.kind, Kind::Fragment);
    if from.src != to.src {
        set_addr_v4(pkt, p.l4, p.protocol, has_l4, End::Src, v4(&to.src));
    }
    if from.dst != to.dst {
        set_addr_v4(pkt, p.l4, p.protocol, has_l4, End::Dst, v4(&to.dst));
    }
    match p.kind {
        Kind::Tcp { .. } | Kind::Udp => {
            if from.sport != to.sport {
                set_port(pkt, p.l4, p.protocol, End::Src, to.sport);
            }
            if from.dport != to.dport {
                set_port(pkt, p.l4, p.protocol, End::Dst, to.dport);
            }
        }
        Kind::Echo { request } => {
            let (old, new) = if request {
                (from.sport, to.sport)
            } else {
                (from.dport, to.dport)
            };
            if old != new {
                set_port(pkt, p.l4, p.protocol, End::Src, new);
            }
        }
        _ => {}
    }
}

pub(crate) fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::ICMPV6 => "icmpv6",
        _ => "ip",
    }
}

pub(crate) fn side_name(s: Side) -> &'static str {
    match s {
        Side::Inside => "inside",
        Side::Tunnel => "tunnel",
    }
}
