//! IKE SA state and its message I/O (window of one request each way).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rampart_crypto::{CipherKey, KeyExchange, Prf, Rng};
use rampart_wire::ike::{flags, Header, Payload, VERSION_2_0};

use crate::child::ChildSa;
use crate::config::{ChildSaId, IkeSaId};
use crate::error::IkeError;
use crate::event::IkeEvent;
use crate::fragment;
use crate::keys::Secret;
use crate::peers::PeerId;
use crate::proposal::IkeAlgs;
use crate::retransmit::{Pending, Request};

/// Where an IKE SA is in its life. Serialises (and displays) as the lower-case variant name:
/// `connecting`, `established`, `rekeyed`, `deleting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IkeSaStateKind {
    /// IKE_SA_INIT / IKE_AUTH in progress (either role).
    Connecting,
    Established,
    /// Replaced by a rekeyed IKE SA; waiting for the Delete (ours or the peer's).
    Rekeyed,
    /// Our Delete is in flight, or a failed SA kept briefly to answer retransmissions.
    Deleting,
}

impl IkeSaStateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IkeSaStateKind::Connecting => "connecting",
            IkeSaStateKind::Established => "established",
            IkeSaStateKind::Rekeyed => "rekeyed",
            IkeSaStateKind::Deleting => "deleting",
        }
    }
}

impl std::fmt::Display for IkeSaStateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's short name for [`IkeSaStateKind`].
pub(crate) type IkeState = IkeSaStateKind;

/// Keys of an established IKE SA. The raw SK_e*/SK_a* bytes the two ciphers were built from are
/// kept (zeroized on drop) so that the SA can be exported.
pub(crate) struct SaKeys {
    pub prf: Prf,
    pub sk_d: Secret,
    pub sk_pi: Secret,
    pub sk_pr: Secret,
    pub sk_ei: Secret,
    pub sk_er: Secret,
    pub sk_ai: Secret,
    pub sk_ar: Secret,
    pub out: CipherKey,
    pub inn: CipherKey,
}

/// Work that needs our own request slot; run in order when the window is free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    NewChild,
    RekeyChild(ChildSaId),
    RekeyIke,
    DeleteChild(Vec<ChildSaId>),
    DeleteIke,
    Liveness,
    /// MOBIKE: tell the peer our new addresses (UPDATE_SA_ADDRESSES).
    UpdateAddresses,
}

/// The peer rekeyed the IKE SA while our own IKE rekey was in flight.
pub(crate) struct IkeCollision {
    pub new_sa: IkeSaId,
    pub nonce: Vec<u8>,
}

pub(crate) struct IkeSa {
    pub id: IkeSaId,
    pub peer: PeerId,
    /// Original initiator of THIS IKE SA (after a rekey: whoever initiated the rekey).
    pub initiator: bool,
    pub state: IkeState,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// We are behind a NAT (or pretend to be).
    pub nat_local: bool,
    pub nat_remote: bool,
    pub algs: Option<IkeAlgs>,
    /// Our key exchange during IKE_SA_INIT.
    pub ke: Option<KeyExchange>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
    /// IKE_SA_INIT request and response as sent (signed in AUTH).
    pub init_request: Vec<u8>,
    pub init_response: Vec<u8>,
    pub cookie: Option<Vec<u8>>,
    pub keys: Option<SaKeys>,
    pub next_msg_id: u32,
    pub peer_msg_id: u32,
    pub pending: Option<Pending>,
    /// Message id and datagrams (one, or its fragments) of the last response, re-sent on a
    /// retransmitted request.
    pub last_response: Option<(u32, Vec<Vec<u8>>)>,
    pub tasks: VecDeque<Task>,
    pub children: Vec<ChildSa>,
    pub established_at: Option<Instant>,
    pub rekey_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    pub last_rx: Instant,
    pub last_tx: Instant,
    /// Tasks wait until then (after TEMPORARY_FAILURE).
    pub retry_at: Option<Instant>,
    pub collision: Option<IkeCollision>,
    /// Our completed IKE rekey: the successor and the lowest nonce of that exchange.
    pub own_rekey: Option<(IkeSaId, Vec<u8>)>,
    /// IkeSaUp was emitted.
    pub announced: bool,
    /// The responder matched the peer by a fallback (no configured address matched); the ID decides.
    pub peer_by_id: bool,
    /// RFC 7383: whether (and up to which size) we fragment, and the peer's partial message.
    pub frag: crate::fragment::FragState,
    /// Mapping checks after NAT hints (see [`crate::nat_follow`]).
    pub follow: crate::nat_follow::NatFollow,
    /// MOBIKE negotiation and updates (see [`crate::mobike`]).
    pub mobike: crate::mobike::MobikeSa,
    /// Remote-access gateway: the client's Office Mode address (released when the SA is
    /// removed, moved to the successor on an IKE rekey).
    pub lease: Option<crate::ra::HeldLease>,
    /// Remote access: the authenticated client identity (gateway) for INITIAL_CONTACT.
    pub ra_client: Option<String>,
    /// EAP inside IKE_AUTH, while it runs (RFC 7296 2.16).
    pub eap: Option<Box<crate::exchange::eap::EapState>>,
    /// Initiator: the IKE_SA_INIT offer holds only the first proposal (retried with all on
    /// NO_PROPOSAL_CHOSEN).
    pub small_offer: bool,
}

impl IkeSa {
    pub(crate) fn new(
        id: IkeSaId,
        peer: PeerId,
        initiator: bool,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> IkeSa {
        IkeSa {
            id,
            peer,
            initiator,
            state: IkeState::Connecting,
            spi_i: 0,
            spi_r: 0,
            local,
            remote,
            nat_local: false,
            nat_remote: false,
            algs: None,
            ke: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_request: Vec::new(),
            init_response: Vec::new(),
            cookie: None,
            keys: None,
            next_msg_id: 0,
            peer_msg_id: 0,
            pending: None,
            last_response: None,
            tasks: VecDeque::new(),
            children: Vec::new(),
            established_at: None,
            rekey_at: None,
            expire_at: None,
            last_rx: now,
            last_tx: now,
            retry_at: None,
            collision: None,
            own_rekey: None,
            announced: false,
            peer_by_id: false,
            frag: crate::fragment::FragState::default(),
            follow: crate::nat_follow::NatFollow::default(),
            mobike: crate::mobike::MobikeSa::default(),
            lease: None,
            ra_client: None,
            eap: None,
            small_offer: false,
        }
    }

    /// Our SPI: the one the peer puts in our slot of the header.
    pub(crate) fn our_spi(&self) -> u64 {
        if self.initiator {
            self.spi_i
        } else {
            self.spi_r
        }
    }

    pub(crate) fn encap(&self) -> bool {
        self.nat_local || self.nat_remote
    }

    pub(crate) fn header(&self, exchange: u8, message_id: u32, response: bool) -> Header {
        let mut f = 0;
        if self.initiator {
            f |= flags::INITIATOR;
        }
        if response {
            f |= flags::RESPONSE;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: 0,
            version: VERSION_2_0,
            exchange,
            flags: f,
            message_id,
            length: 0,
        }
    }

    pub(crate) fn child(&self, id: ChildSaId) -> Option<&ChildSa> {
        self.children.iter().find(|c| c.id == id)
    }
    pub(crate) fn child_mut(&mut self, id: ChildSaId) -> Option<&mut ChildSa> {
        self.children.iter_mut().find(|c| c.id == id)
    }

    /// Encrypts and sends a request, making it the outstanding one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_request(
        &mut self,
        now: Instant,
        timeout: Duration,
        rng: &mut Rng,
        events: &mut VecDeque<IkeEvent>,
        exchange: u8,
        payloads: &[Payload],
        kind: Request,
    ) -> Result<(), IkeError> {
        let to = (self.local, self.remote);
        self.send_request_via(now, timeout, rng, events, exchange, payloads, kind, to)
    }

    /// [`IkeSa::send_request`], with the first transmission going to `to` (local, remote)
    /// instead of the SA's addresses (a NAT mapping check); retransmissions go to the SA's.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_request_via(
        &mut self,
        now: Instant,
        timeout: Duration,
        rng: &mut Rng,
        events: &mut VecDeque<IkeEvent>,
        exchange: u8,
        payloads: &[Payload],
        kind: Request,
        to: (SocketAddr, SocketAddr),
    ) -> Result<(), IkeError> {
        let keys = self.keys.as_ref().ok_or(IkeError::Malformed("no keys"))?;
        let id = self.next_msg_id;
        let msgs = fragment::seal_message(
            &self.header(exchange, id, false),
            payloads,
            &keys.out,
            rng,
            self.frag.limit(to.1),
        )?;
        self.next_msg_id = self.next_msg_id.wrapping_add(1);
        for bytes in &msgs {
            events.push_back(IkeEvent::Transmit {
                local: to.0,
                remote: to.1,
                msg: bytes.clone(),
            });
        }
        self.last_tx = now;
        self.pending = Some(Pending::new(now, id, msgs, timeout, kind));
        Ok(())
    }

    /// Encrypts and sends the response to the current request of the peer, caching it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_response(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        events: &mut VecDeque<IkeEvent>,
        exchange: u8,
        message_id: u32,
        payloads: &[Payload],
        to: (SocketAddr, SocketAddr),
    ) -> Result<(), IkeError> {
        let keys = self.keys.as_ref().ok_or(IkeError::Malformed("no keys"))?;
        let msgs = fragment::seal_message(
            &self.header(exchange, message_id, true),
            payloads,
            &keys.out,
            rng,
            self.frag.limit(to.1),
        )?;
        for bytes in &msgs {
            events.push_back(IkeEvent::Transmit {
                local: to.0,
                remote: to.1,
                msg: bytes.clone(),
            });
        }
        self.last_tx = now;
        self.last_response = Some((message_id, msgs));
        self.peer_msg_id = message_id.wrapping_add(1);
        Ok(())
    }

    /// Earliest instant at which this SA's timers need attention.
    pub(crate) fn next_timer(&self, liveness: Duration, keepalive: Duration) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut add = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        add(self.pending.as_ref().map(|p| p.next_at));
        add(self.expire_at);
        add(self.frag.deadline());
        if self.state == IkeState::Established {
            add(self.lease.as_ref().map(|l| l.renew_at));
            add(self.rekey_at);
            for c in &self.children {
                add(c.rekey_at);
                add(c.expire_at);
            }
            if !self.tasks.is_empty() && self.pending.is_none() {
                add(self.retry_at);
            }
            if !liveness.is_zero() && self.pending.is_none() && self.tasks.is_empty() {
                add(Some(self.last_rx + liveness));
            }
        }
        if self.nat_local && matches!(self.state, IkeState::Established | IkeState::Rekeyed) {
            add(Some(self.last_tx + keepalive));
        }
        t
    }
}
