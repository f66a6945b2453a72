//! The cluster engine: heartbeats, membership and role election, the delta-sync sender and
//! receivers. Sans-IO: datagrams and time go in, datagrams, events and records come out.
//!
//! Election (high availability), evaluated by every member on what it sees:
//! - eligible = announced state Standby or Active, no monitored interface down, not admin down;
//! - every member keeps a takeover `generation`: becoming Active sets it to (the highest
//!   generation seen from any member, or its own) + 1; heartbeats carry it;
//! - two Actives that see each other (a healed split brain): the higher generation stays
//!   Active: the most recent takeover, the member the neighbours' ARP/ND caches point to and
//!   the one with the newest SA and connection state; equal generations (simultaneous start)
//!   fall back to the better rank `(priority, lower id)`. The other yields, becomes Syncing
//!   and pulls a full sync from the winner; the winner emits
//!   [`ClusterEvent::ReannounceAddresses`] so that neighbours still pointing at the loser
//!   come back;
//! - nobody Active in sight: the best candidate becomes Active; candidates are this member and
//!   every live member not Down, ranked by `(has state, priority, lower id)` where "has state"
//!   means Standby (a member without state only wins when no member with state is alive), and
//!   a member still in Init waits the dead time after start before it takes the role;
//! - `switch_back`: the Active hands over to a better-ranked, in-sync Standby.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_crypto::Rng;

use crate::crypto::DatagramKey;
use crate::recv::{Accept, RecvStream};
use crate::replay::ReplayWindow;
use crate::send::SendStream;
use crate::wire::{
    self, AckEntry, DataReader, Header, Heartbeat, MsgType, UpdateQuery, HEADER_LEN, MAX_DATAGRAM,
    MAX_PLAINTEXT, MAX_RECORD_BODY, TAG_LEN,
};
use crate::{
    ClusterConfig, ClusterMode, ClusterStatus, DeltaRecord, FlushAck, FlushAckConfig, LinkId,
    LinkInput, LoadSharingConfig, LoadSharingStatus, MemberId, MemberSet, MemberState,
    MemberStatus, OwnershipKey, OwnershipMap, PeerSyncStats, RecordKind, Rendezvous, Role,
    SyncLinks, SyncLinksConfig, SyncStats, UpdateRequestConfig, UpdateRequests, VipStatus,
    MAX_SYNC_LINKS,
};

mod ls;

pub use ls::{Forwarded, HoldOutcome, Released, UpdateOutcome, UpdateQueryIn, MAX_FORWARD_PACKET};

/// Longest a pushed record waits for more records to share its datagram.
pub const FLUSH_DELAY: Duration = Duration::from_millis(1);
/// A receiver acknowledges at least every this many data datagrams of a sender (besides
/// heartbeats), so the sender's retransmit queue drains at any rate.
const ACK_EVERY_DATAGRAMS: u32 = 32;
/// How long a gap may last before it is NACKed (it may be reordering).
const REORDER_DELAY: Duration = Duration::from_millis(1);
/// Sources whose first refusal was logged (bounded).
const MAX_LOGGED_SOURCES: usize = 1024;
const FULL_SYNC_BACKOFF_MIN: Duration = Duration::from_secs(1);
const FULL_SYNC_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A receiver acknowledges a sender's data once its datagrams stop for this long (the end of
/// a burst), so the sender learns promptly that its tail arrived.
const ACK_IDLE: Duration = Duration::from_millis(2);
/// Least time the sender waits for the ack of its newest datagram before resending it (the
/// probe timeout is `max(2 x measured round trip, this)`; the round trip includes [`ACK_IDLE`]).
const TAIL_PROBE_MIN: Duration = Duration::from_millis(5);
/// Tail probes per datagram (the second after twice the timeout); then the next heartbeat's
/// `next_seq` lets the receiver NACK whatever is still missing.
const MAX_TAIL_PROBES: u8 = 2;

/// A datagram to send (UDP) from this member's address on sync link `link` (link 0:
/// `sync_address`, then `extra_sync_addresses` in order) to `remote`, the peer's address on
/// the same link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub link: LinkId,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// What the node must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEvent {
    /// This member takes the active role: import the replicated SAs, claim the virtual
    /// addresses, start sending.
    BecameActive {
        reason: String,
    },
    /// This member gives up the active role (another member ranks higher, an interface went
    /// down, admin down, switchover): release the virtual addresses, stop initiating.
    BecameStandby {
        reason: String,
    },
    /// Pull a full sync from `member` at `address` (TCP, TLS). The node calls
    /// [`Cluster::full_sync_started`] when the stream is open and
    /// [`Cluster::full_sync_complete`] / [`Cluster::full_sync_failed`] when it ends.
    FullSyncNeeded {
        member: MemberId,
        address: SocketAddr,
    },
    /// A member came up or went down. A member that restarts (a new boot id while it was
    /// alive) raises `MemberDown` then `MemberUp`: what it had (its stream positions, its
    /// acknowledgements, in Load Sharing the state it owned) belongs to its previous life.
    MemberUp {
        member: MemberId,
    },
    MemberDown {
        member: MemberId,
    },
    /// This (active) member just saw a split brain heal in its favour: another member that
    /// was, or may have been, active while they could not hear each other is back and yields.
    /// Announce every virtual address again (gratuitous ARP / unsolicited NA) so that
    /// neighbours still pointing at the other member come back.
    ReannounceAddresses {
        reason: String,
    },
    /// One line for the log (level: warn), e.g. why a datagram was refused the first time.
    Log {
        message: String,
    },
}

/// Why a datagram was refused (each also counted in [`SyncStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("truncated or malformed")]
    Malformed,
    #[error("authentication failed (wrong cluster secret or name?)")]
    Auth,
    #[error("replayed")]
    Replay,
    #[error("sender is not a configured member")]
    UnknownMember,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverError {
    #[error("this member is not active")]
    NotActive,
    #[error("no other member is in sync and eligible to take over")]
    NoEligibleMember,
    #[error("member {0} is not eligible (not in sync, down or unknown)")]
    NotEligible(MemberId),
}

/// Another member as this one knows it.
struct Peer {
    id: MemberId,
    /// Its address per sync link (index: link id); `None` beyond the links it has.
    addrs: [Option<SocketAddr>; MAX_SYNC_LINKS],
    last_heard: Option<Instant>,
    alive: bool,
    /// As announced in its last heartbeat.
    state: MemberState,
    priority: u16,
    /// Its takeover generation, as announced.
    generation: u64,
    admin_down: bool,
    interfaces_down: Vec<String>,
    /// It came back (same boot) after we had declared it dead: it may have been active
    /// meanwhile. Consumed by its next heartbeat.
    rejoined: bool,
    /// Its newest boot seen, the key of that boot and the replay window.
    boot: Option<u64>,
    key: Option<DatagramKey>,
    replay: ReplayWindow,
    /// Its delta stream as we receive it.
    rx: RecvStream,
    last_prompt_ack: Option<Instant>,
    prompt_ack_at: Option<Instant>,
    /// Ack its stream then unless more data comes first (see [`ACK_IDLE`]).
    idle_ack_at: Option<Instant>,
    /// Its cumulative ack of our stream (this boot); `None` until it reports one.
    acked: Option<u64>,
    /// Flush-and-Ack declared it down (it did not acknowledge a hold in time): holds do not
    /// wait for it until it has acknowledged everything we sent, or comes back from dead.
    fa_declared: bool,
    stats: PeerSyncStats,
}

impl Peer {
    fn eligible(&self) -> bool {
        self.alive
            && !self.admin_down
            && self.interfaces_down.is_empty()
            && matches!(self.state, MemberState::Standby | MemberState::Active)
    }
    fn rank(&self) -> (u16, Reverse<MemberId>) {
        (self.priority, Reverse(self.id))
    }
    /// Between active members: the most recent takeover first, then rank.
    fn active_rank(&self) -> (u64, u16, Reverse<MemberId>) {
        (self.generation, self.priority, Reverse(self.id))
    }
}

/// The newest data datagram of new records, watched for tail loss.
struct Tail {
    from: u64,
    to: u64,
    sent_at: Instant,
    /// A round-trip sample was taken (or cannot be: the datagram was probed).
    sampled: bool,
    probes: u8,
    probe_at: Option<Instant>,
}

enum SyncPhase {
    /// `FullSyncNeeded` emitted (again at `retry_at` if set); waiting for the stream to open.
    Wanted { retry_at: Option<Instant> },
    /// The stream is open; the source's records are held.
    Running,
    /// The snapshot is applied; Standby once the source's stream is received up to `until`.
    CatchingUp { until: u64 },
}

struct FullSync {
    member: MemberId,
    phase: SyncPhase,
    backoff: Duration,
}

/// A graceful handover this (active) member started.
struct HandoverOut {
    target: MemberId,
    seq: u64,
    deadline: Instant,
    /// Go Down (admin down) rather than Standby once the target is Active.
    then_down: bool,
}

#[derive(Default)]
struct Counters {
    records_sent: u64,
    records_received: u64,
    records_applied: u64,
    datagrams_sent: u64,
    datagrams_received: u64,
    bytes_sent: u64,
    bytes_received: u64,
    retransmitted: u64,
    nacks_sent: u64,
    nacks_received: u64,
    lost: u64,
    resyncs: u64,
    forwarded_sent: u64,
    forwarded_received: u64,
    forwarded_dropped: u64,
    update_queries_answered: u64,
    update_queries_dropped: u64,
    full_syncs_served: u64,
    full_syncs_received: u64,
    dropped_auth: u64,
    dropped_replay: u64,
    dropped_malformed: u64,
    dropped_unknown_member: u64,
}

/// See the module documentation.
pub struct Cluster {
    config: ClusterConfig,
    me: MemberId,
    priority: u16,
    boot_id: u64,
    rng: Rng,
    dead_time: Duration,
    tx_key: DatagramKey,
    tx_counter: u64,
    state: MemberState,
    reason: String,
    /// Takeover generation: set to (highest generation seen from any member, or ours) + 1
    /// each time this member becomes active; announced in heartbeats.
    generation: u64,
    /// The highest generation seen from any member (or ours).
    highest_generation: u64,
    /// Smoothed round trip from sending a datagram to its ack (includes [`ACK_IDLE`]).
    rtt: Option<Duration>,
    tail: Option<Tail>,
    /// Our replica follows the active member's stream without loss (or we are the source).
    synced: bool,
    /// The active member whose stream our replica tracks; `None`: adopt the next one seen.
    following: Option<MemberId>,
    admin_down: bool,
    interfaces_down: Vec<String>,
    peers: Vec<Peer>,
    send: SendStream,
    /// Encoded size of the unsent records as the next data datagram would hold them, and the
    /// key of the last of them: lets `push_record` send exactly when a datagram is full.
    open_len: usize,
    open_prev_key: u64,
    flush_at: Option<Instant>,
    next_heartbeat: Instant,
    sync: Option<FullSync>,
    handover: Option<HandoverOut>,
    /// A handover we received and wait to complete: (from, seq).
    pending_takeover: Option<(MemberId, u64)>,
    /// After taking over from a member, its Active heartbeats are ignored until then.
    takeover_grace: Option<(MemberId, Instant)>,
    /// Until then a member in Init waits for the cluster before it may take the role.
    init_wait: Option<Instant>,
    failovers: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClusterEvent>,
    records: VecDeque<DeltaRecord>,
    logged_sources: Vec<SocketAddr>,
    c: Counters,
    /// The latest `now` given to any call (for outputs produced by calls without a clock).
    last_now: Instant,
    /// Number of sync links (1 + this member's `extra_sync_addresses`, at most
    /// [`MAX_SYNC_LINKS`]).
    n_links: usize,
    /// Which link carries the delta stream to each peer.
    links: SyncLinks,
    /// Load Sharing: the resolved settings (defaults when the mode is Load Sharing and the
    /// config has none); `None` in high availability.
    ls: Option<LoadSharingConfig>,
    /// Flush-and-Ack (Load Sharing with `holds()`).
    fa: Option<FlushAck>,
    /// Update requests this member asks (Load Sharing).
    ur: Option<UpdateRequests>,
    /// Members up and in sync (this one included when it is), as last computed; the
    /// rendezvous hash and the ownership map follow it.
    up: MemberSet,
    rendezvous: Rendezvous,
    ownership: OwnershipMap,
    released: VecDeque<Released>,
    resolved: VecDeque<(crate::PacketHandle, crate::FlowKey, crate::Resolution)>,
    queries_in: VecDeque<UpdateQueryIn>,
    forwarded: VecDeque<Forwarded>,
    /// Queries to send (batched per peer at the end of the call that produced them).
    asks: Vec<(UpdateQuery, MemberSet)>,
    /// Reused decode buffers of update requests and answers.
    scratch_queries: Vec<UpdateQuery>,
    scratch_answers: Vec<crate::UpdateAnswerEntry>,
    /// Key of the last record pushed (names a `Found` answer's record).
    last_pushed_key: u64,
    /// A forwarded packet was refused and logged (once, until one is sent again).
    logged_forward_drop: bool,
}

impl Cluster {
    /// `boot_id` must grow across restarts of this member (e.g. Unix time in ms at start): it
    /// keys this boot's datagrams, so counters restart at zero without ever reusing a nonce,
    /// and receivers refuse datagrams of an older boot.
    pub fn new(config: ClusterConfig, now: Instant, boot_id: u64, rng: Rng) -> Cluster {
        let me = config.member_id;
        let priority = config.me().priority;
        let tx_key = DatagramKey::derive(&config.auth.secret, &config.name, me, boot_id);
        let peers = config
            .members
            .iter()
            .filter(|m| m.id != me)
            .map(|m| Peer {
                id: m.id,
                addrs: std::array::from_fn(|l| m.link_address(l)),
                last_heard: None,
                alive: false,
                state: MemberState::Init,
                priority: m.priority,
                generation: 0,
                admin_down: false,
                interfaces_down: Vec::new(),
                rejoined: false,
                boot: None,
                key: None,
                replay: ReplayWindow::default(),
                rx: RecvStream::new(m.id),
                last_prompt_ack: None,
                prompt_ack_at: None,
                idle_ack_at: None,
                acked: None,
                fa_declared: false,
                stats: PeerSyncStats {
                    id: m.id,
                    ..PeerSyncStats::default()
                },
            })
            .collect();
        let dead_time = config.heartbeat_interval * config.dead_after.max(1);
        let send = SendStream::new(config.retransmit_queue);
        let n_links = (1 + config.me().extra_sync_addresses.len()).min(MAX_SYNC_LINKS);
        let others: Vec<MemberId> = config
            .members
            .iter()
            .map(|m| m.id)
            .filter(|&id| id != me)
            .collect();
        let links = SyncLinks::new(
            SyncLinksConfig {
                links: (0..n_links)
                    .map(|l| {
                        config
                            .me()
                            .link_address(l)
                            .map_or_else(|| format!("link{l}"), |a| a.to_string())
                    })
                    .collect(),
                dead_after: dead_time,
                hold_down: config.sync_link_hold_down,
            },
            &others,
        )
        .expect("1 to MAX_SYNC_LINKS links");
        let ls = match config.mode {
            ClusterMode::HighAvailability => None,
            ClusterMode::LoadSharing => Some(config.load_sharing.unwrap_or_default()),
        };
        let fa = ls.filter(|l| l.holds()).map(|l| {
            FlushAck::new(FlushAckConfig {
                hold_timeout: l.hold_timeout,
                max_holds: l.max_holds,
                on_timeout: l.hold_timeout_action,
            })
        });
        let ur = ls.map(|l| {
            UpdateRequests::new(UpdateRequestConfig {
                timeout: l.update_timeout,
                max_pending: l.max_pending_updates,
            })
        });
        let ownership_key = OwnershipKey::derive(&config.auth.secret, &config.name);
        Cluster {
            me,
            priority,
            boot_id,
            rng,
            dead_time,
            tx_key,
            tx_counter: 0,
            state: MemberState::Init,
            reason: "starting: listening for the cluster".into(),
            generation: 0,
            highest_generation: 0,
            rtt: None,
            tail: None,
            synced: false,
            following: None,
            admin_down: false,
            interfaces_down: Vec::new(),
            peers,
            send,
            open_len: 0,
            open_prev_key: 0,
            flush_at: None,
            // The first heartbeat goes out at the first `handle_timeout`.
            next_heartbeat: now,
            sync: None,
            handover: None,
            pending_takeover: None,
            takeover_grace: None,
            init_wait: Some(now + dead_time),
            failovers: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            records: VecDeque::new(),
            logged_sources: Vec::new(),
            c: Counters::default(),
            last_now: now,
            n_links,
            links,
            ls,
            fa,
            ur,
            up: MemberSet::EMPTY,
            rendezvous: Rendezvous::new(&ownership_key, []),
            ownership: OwnershipMap::new(config.members.iter().map(|m| m.id)),
            released: VecDeque::new(),
            resolved: VecDeque::new(),
            queries_in: VecDeque::new(),
            forwarded: VecDeque::new(),
            asks: Vec::new(),
            scratch_queries: Vec::with_capacity(crate::MAX_UPDATE_ENTRIES),
            scratch_answers: Vec::with_capacity(crate::MAX_UPDATE_ENTRIES),
            last_pushed_key: 0,
            logged_forward_drop: false,
            config,
        }
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The state this member announces.
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// This member's takeover generation (see the module documentation).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A datagram received on the sync socket of link `link` (0: `sync_address`); decrypted
    /// in place in `buf`. Whichever link brings a datagram, its sender's stream is one: each
    /// sequence number is delivered once, in order.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        link: LinkId,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<(), DropReason> {
        self.last_now = now;
        let len = buf.len();
        let result = self.process(now, link, buf);
        match result {
            Ok(()) => {
                self.c.datagrams_received += 1;
                self.c.bytes_received += len as u64;
            }
            Err(reason) => {
                match reason {
                    DropReason::Malformed => self.c.dropped_malformed += 1,
                    DropReason::Auth => self.c.dropped_auth += 1,
                    DropReason::Replay => self.c.dropped_replay += 1,
                    DropReason::UnknownMember => self.c.dropped_unknown_member += 1,
                }
                if !self.logged_sources.contains(&from)
                    && self.logged_sources.len() < MAX_LOGGED_SOURCES
                {
                    self.logged_sources.push(from);
                    self.log(format!("cluster datagram from {from} refused: {reason}"));
                }
            }
        }
        self.after_input(now);
        result
    }

    fn process(&mut self, now: Instant, link: LinkId, buf: &mut [u8]) -> Result<(), DropReason> {
        let header = Header::parse(buf).ok_or(DropReason::Malformed)?;
        if buf.len() < HEADER_LEN + TAG_LEN {
            return Err(DropReason::Malformed);
        }
        let pi = self
            .peers
            .iter()
            .position(|p| p.id == header.sender)
            .ok_or(DropReason::UnknownMember)?;
        // Replay checks before spending an AEAD operation.
        let new_key = {
            let p = &self.peers[pi];
            match p.boot {
                Some(b) if header.boot_id < b => return Err(DropReason::Replay),
                Some(b) if header.boot_id == b => {
                    if !p.replay.check(header.counter) {
                        return Err(DropReason::Replay);
                    }
                    None
                }
                _ => {
                    if header.counter == 0 {
                        return Err(DropReason::Replay);
                    }
                    Some(DatagramKey::derive(
                        &self.config.auth.secret,
                        &self.config.name,
                        header.sender,
                        header.boot_id,
                    ))
                }
            }
        };
        let plain_len = {
            let key = match &new_key {
                Some(k) => k,
                None => self.peers[pi]
                    .key
                    .as_ref()
                    .expect("a known boot has its key"),
            };
            key.open(header.counter, buf, HEADER_LEN)
                .map_err(|()| DropReason::Auth)?
        };
        match new_key {
            Some(key) => self.new_peer_boot(pi, header.boot_id, key),
            None => {
                let p = &mut self.peers[pi];
                if !p.alive && p.last_heard.is_some() {
                    p.rejoined = true;
                }
            }
        }
        self.peers[pi].replay.commit(header.counter);
        self.heard(now, pi);
        let ack = self.peers[pi].acked;
        self.links.handle(
            now,
            LinkInput::Received {
                member: header.sender,
                link,
                bytes: buf.len(),
                ack,
            },
        );
        self.drain_links(now);
        let msg = &buf[HEADER_LEN..HEADER_LEN + plain_len];
        match header.ty {
            MsgType::Heartbeat => {
                let hb = Heartbeat::read(msg).ok_or(DropReason::Malformed)?;
                self.on_heartbeat(now, pi, hb);
            }
            MsgType::Data => self.on_data(now, pi, msg)?,
            MsgType::Flush => {
                self.on_data(now, pi, msg)?;
                // Flush-and-Ack waits for this ack: send it now, not at the end of the burst.
                self.send_ack(now, pi);
            }
            MsgType::UpdateRequest if self.ls.is_some() => self.on_update_request(now, pi, msg)?,
            MsgType::UpdateAnswer if self.ls.is_some() => self.on_update_answer(now, pi, msg)?,
            MsgType::Forward if self.ls.is_some() => self.on_forward(pi, msg)?,
            MsgType::UpdateRequest | MsgType::UpdateAnswer | MsgType::Forward => {
                return Err(DropReason::Malformed)
            }
            MsgType::Ack => {
                let entry = wire::read_ack(msg).ok_or(DropReason::Malformed)?;
                if entry.peer == self.me {
                    self.on_ack(now, pi, &entry);
                }
            }
            MsgType::Lost => {
                let (to, resume_at) = wire::read_lost(msg).ok_or(DropReason::Malformed)?;
                if to == self.me {
                    self.on_lost(now, pi, resume_at);
                }
            }
            MsgType::Handover => {
                let (to, seq) = wire::read_handover(msg).ok_or(DropReason::Malformed)?;
                if to == self.me {
                    self.on_handover(now, pi, seq);
                }
            }
        }
        Ok(())
    }

    /// A peer restarted (or is heard for the first time): its stream starts over. A restart
    /// of a live member is reported as `MemberDown` then `MemberUp` (to the node and to the
    /// Load Sharing machines: its acks and stream positions belong to its previous boot).
    fn new_peer_boot(&mut self, pi: usize, boot: u64, key: DatagramKey) {
        let restarted = self.peers[pi].boot.is_some();
        let was_alive = self.peers[pi].alive;
        let p = &mut self.peers[pi];
        p.boot = Some(boot);
        p.key = Some(key);
        p.replay = ReplayWindow::default();
        p.rx.reset();
        p.acked = None;
        p.prompt_ack_at = None;
        p.idle_ack_at = None;
        p.rejoined = false;
        p.fa_declared = false;
        let id = p.id;
        if restarted {
            self.log(format!("cluster member {id} restarted"));
            if was_alive {
                self.events
                    .push_back(ClusterEvent::MemberDown { member: id });
                self.member_down_ls(id);
                self.events.push_back(ClusterEvent::MemberUp { member: id });
                self.member_up_ls(id);
            }
            if self.sync.as_ref().is_some_and(|s| s.member == id) {
                // Its snapshot and stream belong to the old boot.
                self.sync = None;
                for p in &mut self.peers {
                    p.rx.hold = None;
                }
            }
            if self.following == Some(id) && self.state != MemberState::Active {
                self.following = None;
                // In Load Sharing every member holds everything: the pivot's restart does not
                // make this member's tables stale.
                if self.ls.is_none() {
                    self.synced = false;
                }
            }
        }
    }

    fn heard(&mut self, now: Instant, pi: usize) {
        let p = &mut self.peers[pi];
        p.last_heard = Some(now);
        if !p.alive {
            p.alive = true;
            p.fa_declared = false;
            let member = p.id;
            self.events.push_back(ClusterEvent::MemberUp { member });
            self.member_up_ls(member);
        }
    }

    fn on_heartbeat(&mut self, now: Instant, pi: usize, hb: Heartbeat) {
        let p = &mut self.peers[pi];
        let rejoined = std::mem::take(&mut p.rejoined);
        let newly_active =
            hb.state == MemberState::Active && (p.state != MemberState::Active || rejoined);
        p.state = hb.state;
        p.priority = hb.priority;
        p.generation = hb.generation;
        self.highest_generation = self.highest_generation.max(hb.generation);
        let p = &mut self.peers[pi];
        p.admin_down = hb.admin_down;
        p.interfaces_down = hb.interfaces_down;
        p.rx.anchor(hb.next_seq);
        p.rx.known_end = p.rx.known_end.max(hb.next_seq);
        if p.rx.has_gap() {
            p.rx.gap_pending = true;
        }
        let id = p.id;
        if hb.state != MemberState::Active && self.takeover_grace.is_some_and(|(m, _)| m == id) {
            self.takeover_grace = None;
        }
        let me = self.me;
        for entry in hb.acks.iter().filter(|a| a.peer == me) {
            self.on_ack(now, pi, entry);
        }
        self.schedule_prompt_ack(now, pi);
        self.check_caught_up(now);
        self.evaluate(now);
        // Still active: a member that was (or may have been) active on its own is back and
        // yields to us; neighbours may still point at it.
        let grace = self.takeover_grace.is_some_and(|(m, t)| m == id && now < t);
        if (rejoined || newly_active)
            && self.state == MemberState::Active
            && self.handover.is_none()
            && !grace
        {
            let reason = if newly_active {
                format!("split brain healed: member {id} was also active and yields")
            } else {
                format!("member {id} is back after being unreachable (possible split brain)")
            };
            // The node logs the re-announcement with the reason (one line, not two).
            self.events
                .push_back(ClusterEvent::ReannounceAddresses { reason });
        }
    }

    fn on_data(&mut self, now: Instant, pi: usize, msg: &[u8]) -> Result<(), DropReason> {
        let mut reader = DataReader::new(msg).ok_or(DropReason::Malformed)?;
        let p = &mut self.peers[pi];
        while let Some((seq, kind, key, body)) =
            reader.next_record().map_err(|()| DropReason::Malformed)?
        {
            match p.rx.accept(&mut self.records, seq, kind, key, body) {
                Accept::Delivered(_) | Accept::Buffered => self.c.records_received += 1,
                Accept::Duplicate | Accept::TooFar => {}
            }
        }
        p.rx.unacked_datagrams += 1;
        if p.rx.unacked_datagrams >= ACK_EVERY_DATAGRAMS {
            self.send_ack(now, pi);
        } else {
            p.idle_ack_at = Some(now + ACK_IDLE);
            self.schedule_prompt_ack(now, pi);
        }
        self.check_takeover(now);
        self.check_caught_up(now);
        Ok(())
    }

    /// A receiver's ack of our stream.
    fn on_ack(&mut self, now: Instant, pi: usize, entry: &AckEntry) {
        if entry.boot_id != self.boot_id {
            return;
        }
        let next = entry.next.min(self.send.next_seq);
        if let Some(t) = &mut self.tail {
            if next >= t.to && !t.sampled {
                t.sampled = true;
                let sample = now.saturating_duration_since(t.sent_at);
                self.rtt = Some(self.rtt.map_or(sample, |r| (r * 7 + sample) / 8));
            }
        }
        let p = &mut self.peers[pi];
        p.acked = Some(p.acked.map_or(next, |a| a.max(next)));
        let (member, acked) = (p.id, p.acked.unwrap_or(next));
        self.ack_ls(now, pi, member, acked);
        let p = &mut self.peers[pi];
        if next < self.send.base {
            // It misses records we no longer have: tell it, it resyncs.
            let (to, resume_at) = (p.id, self.send.base);
            p.stats.lost += resume_at - next;
            self.send_control(now, MsgType::Lost, pi, |out| {
                wire::write_lost(out, to, resume_at)
            });
            return;
        }
        for &(start, len) in entry.nacks() {
            self.c.nacks_received += 1;
            self.peers[pi].stats.nacks_received += 1;
            let from = start.max(self.send.base);
            let to = start.saturating_add(len).min(self.send.sent_upto);
            if from < to {
                self.pack(now, from, to, Some(pi));
            }
        }
        self.release_acked();
    }

    fn release_acked(&mut self) {
        let mut any_alive = false;
        let mut upto: Option<u64> = None;
        for p in self.peers.iter().filter(|p| p.alive) {
            any_alive = true;
            if let Some(a) = p.acked {
                upto = Some(upto.map_or(a, |u| u.min(a)));
            }
        }
        if !any_alive {
            self.send.clear();
            self.open_len = 0;
            self.flush_at = None;
        } else if let Some(u) = upto {
            self.send.release(u.min(self.send.sent_upto));
        }
        let tail_done = self.tail.as_ref().is_some_and(|t| {
            self.peers
                .iter()
                .filter(|p| p.alive)
                .all(|p| p.acked.is_some_and(|a| a >= t.to))
        });
        if tail_done {
            self.tail = None;
        }
    }

    /// Probe timeout of the tail datagram.
    fn tail_pto(&self) -> Duration {
        self.rtt
            .map_or(TAIL_PROBE_MIN, |r| (r * 2).max(TAIL_PROBE_MIN))
    }

    /// The newest datagram is not acknowledged in time: resend its records to every live
    /// member that has not acknowledged them (a lost tail would otherwise wait for the next
    /// heartbeat; a receiver that still misses earlier records sees the gap and NACKs it).
    fn probe_tail(&mut self, now: Instant) {
        let Some(t) = &self.tail else { return };
        let (from, to) = (t.from, t.to);
        for pi in 0..self.peers.len() {
            let p = &self.peers[pi];
            if !p.alive || p.acked.is_some_and(|a| a >= to) {
                continue;
            }
            let start = from.max(p.acked.unwrap_or(0)).max(self.send.base);
            let end = to.min(self.send.sent_upto);
            if start < end {
                // With Flush-and-Ack a probe asks for the ack at once (a hold waits on it).
                let flush = self.fa.is_some();
                self.pack_as(now, start, end, Some(pi), flush);
            }
        }
        let pto = self.tail_pto();
        if let Some(t) = &mut self.tail {
            t.probes += 1;
            t.sampled = true;
            t.probe_at = (t.probes < MAX_TAIL_PROBES).then(|| now + pto * (1 << t.probes));
        }
    }

    fn on_lost(&mut self, now: Instant, pi: usize, resume_at: u64) {
        let id = self.peers[pi].id;
        let missing = self.peers[pi].rx.skip_to(&mut self.records, resume_at);
        // In Load Sharing every member's stream is applied: a loss in any of them resyncs.
        let follows = self.ls.is_some()
            || self.following == Some(id)
            || (self.following.is_none() && self.peers[pi].state == MemberState::Active);
        if missing > 0 && self.synced && self.state != MemberState::Active && follows {
            self.c.lost += missing;
            self.peers[pi].stats.lost += missing;
            self.c.resyncs += 1;
            self.peers[pi].stats.resyncs += 1;
            self.log(format!(
                "lost {missing} delta records of member {id} (it no longer had them): full resync"
            ));
            self.start_sync(now, id);
        }
    }

    fn on_handover(&mut self, now: Instant, pi: usize, seq: u64) {
        let from = self.peers[pi].id;
        if self.state == MemberState::Standby && self.blocked().is_none() {
            self.pending_takeover = Some((from, seq));
            self.check_takeover(now);
        }
    }

    fn check_takeover(&mut self, now: Instant) {
        let Some((from, seq)) = self.pending_takeover else {
            return;
        };
        let Some(p) = self.peers.iter().find(|p| p.id == from) else {
            return;
        };
        if self.state != MemberState::Standby || !p.alive {
            self.pending_takeover = None;
            return;
        }
        if p.rx.next >= seq && p.rx.hold.is_none() {
            self.pending_takeover = None;
            self.takeover_grace = Some((from, now + self.dead_time));
            self.become_active(now, format!("switchover from member {from}"));
        }
    }

    /// A gap was seen: NACK it soon unless it fills first (reordering), at most once per
    /// `heartbeat_interval / 8` per sender.
    fn schedule_prompt_ack(&mut self, now: Instant, pi: usize) {
        let gap = (self.config.heartbeat_interval / 8).max(Duration::from_millis(1));
        let p = &mut self.peers[pi];
        if !p.rx.gap_pending || p.prompt_ack_at.is_some() {
            return;
        }
        let earliest = p.last_prompt_ack.map_or(now, |t| t + gap);
        p.prompt_ack_at = Some(earliest.max(now + REORDER_DELAY));
    }

    fn ack_entry(&self, p: &Peer) -> Option<AckEntry> {
        (p.rx.anchored).then(|| p.rx.ack_entry(p.id, p.boot.unwrap_or(0)))
    }

    fn send_ack(&mut self, now: Instant, pi: usize) {
        self.peers[pi].prompt_ack_at = None;
        self.peers[pi].idle_ack_at = None;
        let Some(entry) = self.ack_entry(&self.peers[pi]) else {
            return;
        };
        let n = u64::from(entry.n_nacks);
        self.c.nacks_sent += n;
        let p = &mut self.peers[pi];
        p.stats.nacks_sent += n;
        p.rx.unacked_datagrams = 0;
        p.rx.gap_pending = false;
        p.last_prompt_ack = Some(now);
        p.prompt_ack_at = None;
        self.send_control(now, MsgType::Ack, pi, |out| entry.write(out));
    }

    /// Seals one message for one peer.
    fn send_control(
        &mut self,
        _now: Instant,
        ty: MsgType,
        pi: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let (mut buf, counter) = self.begin(ty, 128);
        write(&mut buf);
        self.tx_key.seal(counter, &mut buf, HEADER_LEN);
        self.emit_routed(pi, buf, 0);
    }

    fn begin(&mut self, ty: MsgType, capacity: usize) -> (Vec<u8>, u64) {
        self.tx_counter += 1;
        let mut buf = Vec::with_capacity(capacity + HEADER_LEN + TAG_LEN);
        Header {
            ty,
            sender: self.me,
            boot_id: self.boot_id,
            counter: self.tx_counter,
        }
        .write(&mut buf);
        (buf, self.tx_counter)
    }

    /// The link that carries our stream to peer `pi` and its address there: the route
    /// [`SyncLinks`] chose, or link 0 when the peer has no address on it.
    fn route(&self, pi: usize) -> (LinkId, SocketAddr) {
        let p = &self.peers[pi];
        let link = self.links.route(p.id).unwrap_or(0);
        match p.addrs.get(usize::from(link)).copied().flatten() {
            Some(a) => (link, a),
            None => (0, p.addrs[0].expect("link 0 is the sync address")),
        }
    }

    /// Sends `data` to peer `pi` on its route; `records` delta records it carries.
    fn emit_routed(&mut self, pi: usize, data: Vec<u8>, records: u64) {
        let (link, remote) = self.route(pi);
        self.emit(pi, link, remote, data, records);
    }

    fn emit(&mut self, pi: usize, link: LinkId, remote: SocketAddr, data: Vec<u8>, records: u64) {
        self.c.datagrams_sent += 1;
        self.c.bytes_sent += data.len() as u64;
        let member = self.peers[pi].id;
        self.links.handle(
            self.last_now,
            LinkInput::Sent {
                member,
                link,
                bytes: data.len(),
                records,
            },
        );
        self.transmits.push_back(Transmit { link, remote, data });
    }

    /// Sends records `from..to` in as few datagrams as fit, to `only` or every live peer.
    fn pack(&mut self, now: Instant, from: u64, to: u64, only: Option<usize>) {
        self.pack_as(now, from, to, only, false);
    }

    /// [`Cluster::pack`]; with `flush` the last datagram is a flush (type 6): its receivers
    /// acknowledge at once.
    fn pack_as(&mut self, now: Instant, from: u64, to: u64, only: Option<usize>, flush: bool) {
        let mut seq = from;
        while seq < to {
            let first = seq;
            // Type decided once the datagram's end is known; the header byte is patched below.
            let (mut buf, counter) = self.begin(MsgType::Data, MAX_PLAINTEXT);
            wire::put_varint(&mut buf, seq);
            let mut prev_key = 0;
            let mut count = 0u64;
            while seq < to {
                let r = self.send.get(seq).expect("seq within the queue");
                let len = wire::record_len(prev_key, r.key, r.body.len());
                if count > 0 && buf.len() - HEADER_LEN + len > MAX_PLAINTEXT {
                    break;
                }
                wire::write_record(&mut buf, prev_key, r.kind, r.key, &r.body);
                prev_key = r.key;
                seq += 1;
                count += 1;
            }
            if flush && seq >= to {
                wire::set_msg_type(&mut buf, MsgType::Flush);
            }
            self.tx_key.seal(counter, &mut buf, HEADER_LEN);
            match only {
                Some(pi) => {
                    self.c.retransmitted += count;
                    self.peers[pi].stats.retransmitted += count;
                    self.emit_routed(pi, buf, count);
                }
                None => {
                    let alive = self.peers.iter().filter(|p| p.alive).count();
                    self.c.records_sent += count * alive as u64;
                    if alive > 0 {
                        let last = self.peers.iter().rposition(|p| p.alive).expect("alive");
                        for pi in 0..last {
                            if self.peers[pi].alive {
                                self.emit_routed(pi, buf.clone(), count);
                            }
                        }
                        self.emit_routed(last, buf, count);
                        self.tail = Some(Tail {
                            from: first,
                            to: seq,
                            sent_at: now,
                            sampled: false,
                            probes: 0,
                            probe_at: Some(now + self.tail_pto()),
                        });
                    }
                }
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if self.init_wait.is_some_and(|t| now >= t) {
            self.init_wait = None;
        }
        for pi in 0..self.peers.len() {
            let p = &mut self.peers[pi];
            if p.alive && p.last_heard.is_some_and(|t| now >= t + self.dead_time) {
                p.alive = false;
                p.prompt_ack_at = None;
                p.idle_ack_at = None;
                let member = p.id;
                self.events.push_back(ClusterEvent::MemberDown { member });
                self.member_down_ls(member);
                if self.pending_takeover.is_some_and(|(m, _)| m == member) {
                    self.pending_takeover = None;
                }
                self.release_acked();
            }
            let p = &self.peers[pi];
            if p.prompt_ack_at.is_some_and(|t| now >= t) || p.idle_ack_at.is_some_and(|t| now >= t)
            {
                self.send_ack(now, pi);
            }
        }
        if self.flush_at.is_some_and(|t| now >= t) {
            self.flush(now);
        }
        if self
            .tail
            .as_ref()
            .is_some_and(|t| t.probe_at.is_some_and(|p| now >= p))
        {
            self.probe_tail(now);
        }
        if let Some(s) = &mut self.sync {
            if let SyncPhase::Wanted { retry_at: Some(t) } = s.phase {
                if now >= t {
                    s.phase = SyncPhase::Wanted { retry_at: None };
                    let member = s.member;
                    self.emit_full_sync_needed(member);
                }
            }
        }
        if let Some(h) = &self.handover {
            if now >= h.deadline {
                let (target, then_down) = (h.target, h.then_down);
                self.handover = None;
                self.log(format!(
                    "switchover to member {target} timed out: it did not take over"
                ));
                if !then_down {
                    self.reason = "active (switchover failed)".into();
                }
            }
        }
        if now >= self.next_heartbeat {
            self.send_heartbeats(now);
            if let Some(h) = &self.handover {
                let (target, seq) = (h.target, h.seq);
                if let Some(pi) = self.peers.iter().position(|p| p.id == target) {
                    self.send_control(now, MsgType::Handover, pi, |out| {
                        wire::write_handover(out, target, seq)
                    });
                }
            }
        }
        self.evaluate(now);
        self.timeout_ls(now);
        self.after_input(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_heartbeat;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = t.min(x);
            }
        };
        consider(self.flush_at);
        consider(self.tail.as_ref().and_then(|t| t.probe_at));
        for p in &self.peers {
            consider(p.prompt_ack_at);
            consider(p.idle_ack_at);
            if p.alive {
                consider(p.last_heard.map(|h| h + self.dead_time));
            }
        }
        if let Some(FullSync {
            phase: SyncPhase::Wanted { retry_at },
            ..
        }) = &self.sync
        {
            consider(*retry_at);
        }
        consider(self.handover.as_ref().map(|h| h.deadline));
        consider(self.init_wait);
        consider(self.links.poll_timeout());
        consider(self.fa.as_ref().and_then(|f| f.poll_timeout()));
        consider(self.ur.as_ref().and_then(|u| u.poll_timeout()));
        Some(t)
    }

    fn send_heartbeats(&mut self, now: Instant) {
        self.next_heartbeat = now + self.config.heartbeat_interval;
        let acks: Vec<AckEntry> = self
            .peers
            .iter()
            .filter_map(|p| self.ack_entry(p))
            .collect();
        let nacks: u64 = acks.iter().map(|a| u64::from(a.n_nacks)).sum();
        self.c.nacks_sent += nacks;
        for (p, a) in self.peers.iter_mut().filter(|p| p.rx.anchored).zip(&acks) {
            p.stats.nacks_sent += u64::from(a.n_nacks);
            p.idle_ack_at = None;
            p.rx.unacked_datagrams = 0;
            p.rx.gap_pending = false;
        }
        let hb = Heartbeat {
            state: self.state,
            admin_down: self.admin_down,
            priority: self.priority,
            next_seq: self.send.next_seq,
            generation: self.generation,
            interfaces_down: self.interfaces_down.clone(),
            acks,
        };
        // One datagram per link (its own counter: the same datagram on two links would be
        // refused as a replay by the second), sent to every peer on that link.
        for link in 0..self.n_links {
            if !self.links.has_carrier(link as LinkId) {
                continue;
            }
            let (mut buf, counter) = self.begin(MsgType::Heartbeat, 128);
            hb.write(&mut buf);
            self.tx_key.seal(counter, &mut buf, HEADER_LEN);
            for pi in 0..self.peers.len() {
                if let Some(remote) = self.peers[pi].addrs[link] {
                    self.emit(pi, link as LinkId, remote, buf.clone(), 0);
                }
            }
        }
    }

    /// Link state of a monitored interface (ignored for others).
    pub fn set_interface_state(&mut self, now: Instant, interface: &str, up: bool) {
        self.last_now = now;
        if !self
            .config
            .monitored_interfaces
            .iter()
            .any(|i| i == interface)
        {
            return;
        }
        let was_down = self.interfaces_down.iter().any(|i| i == interface);
        if up && was_down {
            self.interfaces_down.retain(|i| i != interface);
        } else if !up && !was_down {
            self.interfaces_down.push(interface.to_string());
        } else {
            return;
        }
        self.evaluate(now);
        self.send_heartbeats(now);
        self.after_input(now);
    }

    /// Administrative down (`rampart cluster down`) or back up. Down on the active member
    /// hands the role over gracefully first when another member can take it.
    pub fn set_admin_down(&mut self, now: Instant, down: bool) {
        self.last_now = now;
        if self.admin_down == down {
            return;
        }
        if down && self.state == MemberState::Active && self.switchover(now, None).is_ok() {
            if let Some(h) = &mut self.handover {
                h.then_down = true;
            }
        }
        self.admin_down = down;
        self.evaluate(now);
        self.send_heartbeats(now);
        self.after_input(now);
    }

    /// Graceful switchover: hand the active role to `to` (or the best eligible member); the
    /// target takes it once it has every record up to now, and this member then becomes
    /// standby.
    pub fn switchover(
        &mut self,
        now: Instant,
        to: Option<MemberId>,
    ) -> Result<(), SwitchoverError> {
        if self.state != MemberState::Active {
            return Err(SwitchoverError::NotActive);
        }
        let ok = |p: &Peer| p.eligible() && p.state == MemberState::Standby;
        let target = match to {
            Some(id) => {
                self.peers
                    .iter()
                    .find(|p| p.id == id && ok(p))
                    .ok_or(SwitchoverError::NotEligible(id))?
                    .id
            }
            None => {
                self.peers
                    .iter()
                    .filter(|p| ok(p))
                    .max_by_key(|p| p.rank())
                    .ok_or(SwitchoverError::NoEligibleMember)?
                    .id
            }
        };
        self.last_now = now;
        self.flush(now);
        let seq = self.send.next_seq;
        self.handover = Some(HandoverOut {
            target,
            seq,
            deadline: now + (self.dead_time * 2).max(Duration::from_secs(1)),
            then_down: false,
        });
        self.reason = format!("handing over to member {target}");
        let pi = self
            .peers
            .iter()
            .position(|p| p.id == target)
            .expect("found");
        self.send_control(now, MsgType::Handover, pi, |out| {
            wire::write_handover(out, target, seq)
        });
        Ok(())
    }

    pub fn role(&self) -> Role {
        if self.state == MemberState::Active {
            Role::Active
        } else {
            Role::Standby
        }
    }

    /// Queues a record for every other live member. Sent with the next datagram: at once when
    /// a datagram fills up, at the latest [`FLUSH_DELAY`] later (or at [`Cluster::flush`]).
    /// With no other live member the record only consumes a sequence number (a joiner full-
    /// syncs). Bodies longer than [`MAX_RECORD_BODY`] are refused with a log line.
    pub fn push_record(&mut self, now: Instant, kind: RecordKind, key: u64, body: &[u8]) {
        if body.len() > MAX_RECORD_BODY {
            self.log(format!(
                "cluster record {kind:?} key {key} of {} bytes exceeds {MAX_RECORD_BODY}: not synced",
                body.len()
            ));
            return;
        }
        self.last_now = self.last_now.max(now);
        self.last_pushed_key = key;
        if !self.peers.iter().any(|p| p.alive) {
            self.send.skip();
            return;
        }
        if self.send.unsent() == 0 {
            self.open_len = wire::varint_len(self.send.next_seq);
            self.open_prev_key = 0;
            self.flush_at = Some(now + FLUSH_DELAY);
        }
        let len = wire::record_len(self.open_prev_key, key, body.len());
        if self.send.unsent() > 0 && self.open_len + len > MAX_PLAINTEXT {
            // The unsent records fill one datagram exactly as `pack` cuts it: send it, this
            // record opens the next one.
            let (from, to) = (self.send.sent_upto, self.send.next_seq);
            self.pack(now, from, to, None);
            self.send.sent_upto = to;
            self.open_len = wire::varint_len(to) + wire::record_len(0, key, body.len());
            self.flush_at = Some(now + FLUSH_DELAY);
        } else {
            self.open_len += len;
        }
        self.open_prev_key = key;
        // On overflow the oldest record is dropped; receivers that still need it get a Lost.
        self.send.push(kind, key, body);
    }

    /// Packs everything queued into datagrams now.
    pub fn flush(&mut self, now: Instant) {
        let (from, to) = (self.send.sent_upto, self.send.next_seq);
        if from < to {
            self.pack(now, from, to, None);
            self.send.sent_upto = to;
        }
        self.open_len = 0;
        self.flush_at = None;
    }

    /// The sequence number the next pushed record will get (a full sync names it so the
    /// receiver knows which delta records the snapshot already contains).
    pub fn next_seq(&self) -> u64 {
        self.send.next_seq
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClusterEvent> {
        self.events.pop_front()
    }

    /// Records from other members (the active one), each sender's in its order, to apply.
    ///
    /// Drain this before [`Cluster::poll_resolved`]: an update request resolves `Found` once
    /// the record carrying the state has been handed out here (so the node has applied it).
    pub fn poll_record(&mut self) -> Option<DeltaRecord> {
        let r = self.records.pop_front()?;
        self.c.records_applied += 1;
        self.applied_ls(r.from, r.seq + 1);
        Some(r)
    }

    /// The full-sync stream from `member` is open; delta records from it are held back until
    /// [`Cluster::full_sync_complete`].
    pub fn full_sync_started(&mut self, now: Instant, member: MemberId) {
        self.last_now = now;
        let Some(s) = &mut self.sync else { return };
        if s.member != member {
            return;
        }
        // Records are held since the sync was wanted (see `start_sync`).
        s.phase = SyncPhase::Running;
    }

    /// The snapshot, taken when the sender's next sequence number was `snapshot_seq`, is
    /// applied: held records from `snapshot_seq` on are released to [`Cluster::poll_record`]
    /// and the member becomes standby once the delta stream has caught up.
    pub fn full_sync_complete(&mut self, now: Instant, member: MemberId, snapshot_seq: u64) {
        self.last_now = now;
        self.full_sync_complete_inner(now, member, snapshot_seq);
        self.after_input(now);
    }

    fn full_sync_complete_inner(&mut self, now: Instant, member: MemberId, snapshot_seq: u64) {
        if !self
            .sync
            .as_ref()
            .is_some_and(|s| s.member == member && !matches!(s.phase, SyncPhase::CatchingUp { .. }))
        {
            self.log(format!(
                "full sync from member {member} completed unexpectedly: ignored"
            ));
            return;
        }
        let Some(pi) = self.peers.iter().position(|p| p.id == member) else {
            return;
        };
        let p = &mut self.peers[pi];
        let (from, held) = p.rx.hold.take().unwrap_or((p.rx.next, Vec::new()));
        if !p.rx.anchored || from > snapshot_seq {
            // Records between the snapshot and what we hold are gone: again.
            self.c.resyncs += 1;
            self.peers[pi].stats.resyncs += 1;
            self.log(format!(
                "full sync from member {member} is older than the delta stream held: again"
            ));
            self.sync = None;
            self.start_sync(now, member);
            return;
        }
        self.records
            .extend(held.into_iter().filter(|r| r.seq >= snapshot_seq));
        // Records below the snapshot point that are still to come are in the snapshot.
        let mut discard = VecDeque::new();
        p.rx.skip_to(&mut discard, snapshot_seq);
        self.records
            .extend(discard.into_iter().filter(|r| r.seq >= snapshot_seq));
        let until = snapshot_seq.max(p.rx.known_end);
        // Load Sharing: the other members' streams, held since the sync was wanted, go on top
        // of the snapshot in their order.
        for q in &mut self.peers {
            if q.id != member {
                if let Some((_, held)) = q.rx.hold.take() {
                    self.records.extend(held);
                }
            }
        }
        self.c.full_syncs_received += 1;
        if let Some(s) = &mut self.sync {
            s.phase = SyncPhase::CatchingUp { until };
        }
        self.check_caught_up(now);
    }

    /// The full-sync stream broke; retried after a back-off.
    pub fn full_sync_failed(&mut self, now: Instant, member: MemberId, why: &str) {
        let Some(s) = &mut self.sync else { return };
        if s.member != member {
            return;
        }
        let jitter = Duration::from_millis(u64::from(self.rng.next_u32() % 250));
        s.phase = SyncPhase::Wanted {
            retry_at: Some(now + s.backoff + jitter),
        };
        let backoff = s.backoff;
        s.backoff = (s.backoff * 2).min(FULL_SYNC_BACKOFF_MAX);
        // Held records stay held for the next attempt.
        self.log(format!(
            "full sync from member {member} failed: {why}; retrying in {} ms",
            backoff.as_millis()
        ));
    }

    /// A full sync was served to another member (counted).
    pub fn full_sync_served(&mut self) {
        self.c.full_syncs_served += 1;
    }

    fn check_caught_up(&mut self, now: Instant) {
        let Some(FullSync {
            member,
            phase: SyncPhase::CatchingUp { until },
            ..
        }) = self.sync
        else {
            return;
        };
        let Some(p) = self.peers.iter().find(|p| p.id == member) else {
            return;
        };
        if p.rx.next >= until {
            self.sync = None;
            self.synced = true;
            self.following = Some(member);
            if self.state == MemberState::Syncing || self.state == MemberState::Init {
                self.set_state(
                    now,
                    MemberState::Standby,
                    format!("in sync with member {member}"),
                );
            }
            self.evaluate(now);
        }
    }

    /// Wants a full sync from `member`. Its stream is held from now on until the snapshot is
    /// applied. In Load Sharing every other member's stream is held too and released after
    /// the snapshot (in each sender's order), so that the snapshot never overwrites a newer
    /// record: the snapshot holds what the source had of every member, and each other
    /// member's stream is applied on top of it from where this member first heard it.
    fn start_sync(&mut self, now: Instant, member: MemberId) {
        self.synced = false;
        self.following = Some(member);
        let cap = self.config.retransmit_queue.max(1024);
        let all = self.ls.is_some();
        for p in &mut self.peers {
            p.rx.hold = None;
            if p.id == member || all {
                p.rx.start_hold(cap);
            }
        }
        self.sync = Some(FullSync {
            member,
            phase: SyncPhase::Wanted { retry_at: None },
            backoff: FULL_SYNC_BACKOFF_MIN,
        });
        if self.state != MemberState::Down {
            self.set_state(
                now,
                MemberState::Syncing,
                format!("full sync from member {member}"),
            );
        }
        self.emit_full_sync_needed(member);
    }

    fn emit_full_sync_needed(&mut self, member: MemberId) {
        if let Some(m) = self.config.member(member) {
            let address = m.sync_address;
            self.events
                .push_back(ClusterEvent::FullSyncNeeded { member, address });
        }
    }

    fn set_state(&mut self, now: Instant, state: MemberState, reason: String) {
        self.reason = reason;
        if self.state != state {
            self.state = state;
            self.send_heartbeats(now);
        }
    }

    fn become_active(&mut self, now: Instant, reason: String) {
        self.synced = true;
        self.following = None;
        self.sync = None;
        for p in &mut self.peers {
            p.rx.hold = None;
        }
        self.failovers += 1;
        self.generation = self.generation.max(self.highest_generation) + 1;
        self.highest_generation = self.generation;
        self.events.push_back(ClusterEvent::BecameActive {
            reason: reason.clone(),
        });
        self.set_state(now, MemberState::Active, reason);
    }

    fn log(&mut self, message: String) {
        self.events.push_back(ClusterEvent::Log { message });
    }

    fn blocked(&self) -> Option<String> {
        if self.admin_down {
            return Some("admin down".into());
        }
        self.interfaces_down
            .first()
            .map(|i| format!("interface {i} down"))
    }

    fn my_rank(&self) -> (u16, Reverse<MemberId>) {
        (self.priority, Reverse(self.me))
    }

    fn my_active_rank(&self) -> (u64, u16, Reverse<MemberId>) {
        (self.generation, self.priority, Reverse(self.me))
    }

    /// The live member announcing Active with the most recent takeover (then the best rank),
    /// ignoring one we just took over from.
    fn visible_active(&self, now: Instant) -> Option<&Peer> {
        self.peers
            .iter()
            .filter(|p| p.alive && p.state == MemberState::Active)
            .filter(|p| {
                !self
                    .takeover_grace
                    .is_some_and(|(m, t)| m == p.id && now < t)
            })
            .max_by_key(|p| p.active_rank())
    }

    /// Whether this member ranks first among the candidates when nobody is Active.
    fn best_candidate(&self) -> bool {
        let class = |s: MemberState| u8::from(s == MemberState::Standby);
        let mine = (
            class(self.state).max(u8::from(self.synced)),
            self.priority,
            Reverse(self.me),
        );
        !self
            .peers
            .iter()
            .filter(|p| p.alive && !p.admin_down && p.interfaces_down.is_empty())
            .filter(|p| {
                matches!(
                    p.state,
                    MemberState::Init | MemberState::Syncing | MemberState::Standby
                )
            })
            .any(|p| (class(p.state), p.priority, Reverse(p.id)) > mine)
    }

    /// Applies the election rule to what this member sees now.
    fn evaluate(&mut self, now: Instant) {
        if let Some(why) = self.blocked() {
            let waiting = self.handover.as_ref().is_some_and(|h| h.then_down)
                && self.state == MemberState::Active;
            if self.state != MemberState::Down && !waiting {
                if self.state == MemberState::Active {
                    self.events.push_back(ClusterEvent::BecameStandby {
                        reason: why.clone(),
                    });
                    self.handover = None;
                    // Our tables are the newest: we keep them and follow the next active.
                    self.following = None;
                }
                self.set_state(now, MemberState::Down, why);
            } else if self.state == MemberState::Down {
                self.reason = why;
            }
            if self.state != MemberState::Active {
                self.check_handover_done(now);
                return;
            }
        } else if self.state == MemberState::Down {
            if self.synced {
                self.set_state(now, MemberState::Standby, "back up, in sync".into());
            } else {
                self.set_state(now, MemberState::Init, "back up".into());
            }
        }
        let active = self.visible_active(now).map(|p| (p.id, p.active_rank()));
        match self.state {
            MemberState::Init | MemberState::Syncing => {
                if let Some((a, _)) = active {
                    if self.sync.as_ref().map(|s| s.member) != Some(a) {
                        self.start_sync(now, a);
                    }
                } else {
                    if self.sync.take().is_some() {
                        for p in &mut self.peers {
                            p.rx.hold = None;
                        }
                    }
                    if self.init_wait.is_none() && self.best_candidate() {
                        self.become_active(now, "no active member in the cluster".into());
                    }
                }
            }
            MemberState::Standby => match active {
                Some((a, _)) => match self.following {
                    None => self.following = Some(a),
                    // Load Sharing: every member holds everything; a new pivot is followed
                    // without a resync.
                    Some(f) if f != a && self.ls.is_some() => self.following = Some(a),
                    Some(f) if f != a => {
                        self.c.resyncs += 1;
                        self.log(format!(
                            "active member changed from {f} to {a}: full resync from {a}"
                        ));
                        self.start_sync(now, a);
                    }
                    Some(_) => {}
                },
                None => {
                    if self.best_candidate() {
                        let reason = match self.following {
                            Some(f) => format!("member {f} is no longer active"),
                            None => "no active member in the cluster".into(),
                        };
                        self.become_active(now, reason);
                    }
                }
            },
            MemberState::Active => {
                if self.check_handover_done(now) {
                    return;
                }
                if let Some((a, rank)) = active {
                    let handing_to = self.handover.as_ref().map(|h| h.target);
                    let mine = self.my_active_rank();
                    if rank > mine && handing_to != Some(a) {
                        self.handover = None;
                        let why = if rank.0 > mine.0 {
                            "took over more recently"
                        } else {
                            "took over at the same time and ranks higher"
                        };
                        self.events.push_back(ClusterEvent::BecameStandby {
                            reason: format!("split brain: member {a} is also active and {why}"),
                        });
                        self.c.resyncs += 1;
                        self.start_sync(now, a);
                        return;
                    }
                }
                if self.config.switch_back && self.handover.is_none() {
                    let better = self
                        .peers
                        .iter()
                        .filter(|p| p.eligible() && p.state == MemberState::Standby)
                        .filter(|p| p.rank() > self.my_rank())
                        .max_by_key(|p| p.rank())
                        .map(|p| p.id);
                    if let Some(b) = better {
                        if self.switchover(now, Some(b)).is_ok() {
                            self.log(format!(
                                "switch back: handing the active role to member {b}"
                            ));
                        }
                    }
                }
            }
            MemberState::Down => {}
        }
    }

    /// Completes our handover once its target announces Active. True if it did.
    fn check_handover_done(&mut self, now: Instant) -> bool {
        let Some(h) = &self.handover else {
            return false;
        };
        let (target, then_down) = (h.target, h.then_down);
        let done = self
            .peers
            .iter()
            .any(|p| p.id == target && p.alive && p.state == MemberState::Active);
        if !done {
            return false;
        }
        self.handover = None;
        self.following = Some(target);
        self.synced = true;
        let reason = format!("switchover to member {target}");
        if self.state == MemberState::Active {
            self.events.push_back(ClusterEvent::BecameStandby {
                reason: reason.clone(),
            });
        }
        if then_down {
            self.set_state(now, MemberState::Down, "admin down".into());
        } else {
            self.set_state(now, MemberState::Standby, reason);
        }
        true
    }

    pub fn status(&self, now: Instant) -> ClusterStatus {
        let owner = if self.state == MemberState::Active {
            Some(self.me)
        } else {
            self.visible_active(now).map(|p| p.id)
        };
        let members = self
            .config
            .members
            .iter()
            .map(|m| {
                if m.id == self.me {
                    return MemberStatus {
                        id: m.id,
                        sync_address: m.sync_address.to_string(),
                        priority: self.priority,
                        state: self.state,
                        alive: true,
                        last_heartbeat_ms: None,
                        interfaces_down: self.interfaces_down.clone(),
                        local: true,
                    };
                }
                let p = self
                    .peers
                    .iter()
                    .find(|p| p.id == m.id)
                    .expect("every member");
                MemberStatus {
                    id: m.id,
                    sync_address: m.sync_address.to_string(),
                    priority: p.priority,
                    state: if p.alive { p.state } else { MemberState::Down },
                    alive: p.alive,
                    last_heartbeat_ms: p
                        .last_heard
                        .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    interfaces_down: p.interfaces_down.clone(),
                    local: false,
                }
            })
            .collect();
        let load_sharing = self.ls.map(|l| LoadSharingStatus {
            distribution: l.distribution,
            pivot: owner,
            ownership: self.ownership.clone(),
            forwarded_sent: self.c.forwarded_sent,
            forwarded_received: self.c.forwarded_received,
            forwarded_dropped: self.c.forwarded_dropped,
        });
        ClusterStatus {
            name: self.config.name.clone(),
            mode: match self.config.mode {
                ClusterMode::HighAvailability => "high-availability".into(),
                ClusterMode::LoadSharing => "load-sharing".into(),
            },
            member_id: self.me,
            state: self.state,
            reason: self.reason.clone(),
            members,
            virtual_addresses: self
                .config
                .virtual_addresses
                .iter()
                .map(|v| VipStatus {
                    interface: v.interface.clone(),
                    address: v.address.to_string(),
                    owner,
                })
                .collect(),
            failovers: self.failovers,
            load_sharing,
        }
    }

    pub fn stats(&self) -> SyncStats {
        let c = &self.c;
        SyncStats {
            member_id: self.me,
            records_sent: c.records_sent,
            records_received: c.records_received,
            records_applied: c.records_applied,
            datagrams_sent: c.datagrams_sent,
            datagrams_received: c.datagrams_received,
            bytes_sent: c.bytes_sent,
            bytes_received: c.bytes_received,
            send_queue: self.send.unsent(),
            retransmit_queue: self.send.len(),
            retransmitted: c.retransmitted,
            nacks_sent: c.nacks_sent,
            nacks_received: c.nacks_received,
            lost: c.lost,
            resyncs: c.resyncs,
            full_syncs_served: c.full_syncs_served,
            full_syncs_received: c.full_syncs_received,
            dropped_auth: c.dropped_auth,
            dropped_replay: c.dropped_replay,
            dropped_malformed: c.dropped_malformed,
            dropped_unknown_member: c.dropped_unknown_member,
            peers: self
                .peers
                .iter()
                .map(|p| PeerSyncStats {
                    acked_seq: p.acked.unwrap_or(0),
                    received_seq: p.rx.next,
                    reorder_queue: p.rx.reorder_len(),
                    ..p.stats.clone()
                })
                .collect(),
            flush_ack: self.fa.as_ref().map(|f| f.stats().clone()),
            update_requests: self.ur.as_ref().map(|u| u.stats().clone()),
            update_queries_answered: c.update_queries_answered,
            update_queries_dropped: c.update_queries_dropped,
            links: self.links.stats(),
        }
    }
}

const _: () = assert!(MAX_DATAGRAM <= 1500);
