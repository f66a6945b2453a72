//! What the engine tells its caller.

use std::net::SocketAddr;
use std::time::Duration;

use rampart_crypto::{DhGroup, Encr, Integ, Prf};
use rampart_wire::ike::TrafficSelector;
use zeroize::Zeroize;

use crate::config::{ChildSaId, IkeSaId};
use crate::peers::PeerId;
use crate::sa::IkeSaStateKind;

/// Why an IKE SA went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    /// The peer sent a Delete.
    DeletedByPeer,
    /// We deleted it (hard lifetime, shutdown).
    Deleted,
    /// Replaced by a rekeyed IKE SA; its CHILD SAs live on in the new one.
    Rekeyed,
    /// Retransmissions exhausted.
    Timeout,
    AuthenticationFailed,
    NoProposalChosen,
    /// Any other error notify or malformed exchange.
    Failed,
}

/// Whose NAT mapping moved (see [`IkeEvent::NatMappingMoved`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatSide {
    /// The peer's: the SA now sends to a new remote address.
    Peer,
    /// Ours: the peer's mapping check named a new public address of ours.
    Local,
}

/// Output of the engine, drained by [`crate::Ike::poll_event`].
#[derive(Debug)]
pub enum IkeEvent {
    /// IKE message to send, WITHOUT the non-ESP marker (the node adds it on the NAT-T port).
    Transmit {
        local: SocketAddr,
        remote: SocketAddr,
        msg: Vec<u8>,
    },
    /// Send the 1-byte 0xFF NAT keepalive.
    NatKeepalive {
        local: SocketAddr,
        remote: SocketAddr,
    },
    IkeSaUp {
        peer: PeerId,
        ike_sa: IkeSaId,
    },
    IkeSaDown {
        peer: PeerId,
        ike_sa: IkeSaId,
        reason: DownReason,
    },
    /// Install both directions; `replaces` names the SA being rekeyed (keep its inbound until its ChildSaDown).
    ChildSaUp(ChildSaKeys),
    ChildSaDown {
        peer: PeerId,
        child: ChildSaId,
        spi_in: u32,
        spi_out: u32,
    },
    /// The peer's NAT mapping moved (or encapsulation changed).
    ChildSaEndpoint {
        child: ChildSaId,
        local: SocketAddr,
        remote: SocketAddr,
        encap: bool,
    },
    /// A NAT mapping of an IKE SA moved (for the log): the peer's (the SA and its CHILD SAs,
    /// reported with `ChildSaEndpoint`, now use `local`/`remote`), or ours (`remote` unchanged).
    NatMappingMoved {
        peer: PeerId,
        ike_sa: IkeSaId,
        side: NatSide,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Liveness failed; the SAs were already reported down.
    PeerDead {
        peer: PeerId,
    },
    /// Remote-access client: the gateway's CFG_REPLY (Office Mode address, DNS, split-DNS
    /// domains, routes), reported before the first `ChildSaUp` of `ike_sa`, and again after a
    /// reconnect (a new IKE SA) with what the gateway assigned that time.
    VirtualIp {
        peer: PeerId,
        ike_sa: IkeSaId,
        reply: rampart_wire::ike::CfgReply,
    },
    /// Remote-access gateway: `client` (its authenticated identity: the EAP user name, or
    /// the IKE identity as text) holds `address` for `ike_sa`: a new lease after IKE_AUTH, or
    /// the lease of an SA imported from another cluster member (taken from our pool).
    LeaseAssigned {
        peer: PeerId,
        ike_sa: IkeSaId,
        client: String,
        address: std::net::IpAddr,
    },
    /// Remote-access gateway: the lease of `ike_sa` went back to the pool (the IKE SA was
    /// deleted, failed or its client declared dead; not on an IKE rekey, where the lease
    /// moves to the new SA).
    LeaseReleased {
        peer: PeerId,
        ike_sa: IkeSaId,
        address: std::net::IpAddr,
    },
    /// Remote-access gateway: a client was refused an address (pool exhausted); it got
    /// INTERNAL_ADDRESS_FAILURE.
    PoolExhausted {
        peer: PeerId,
        ike_sa: IkeSaId,
        client: String,
    },
    /// MOBIKE (RFC 4555): the IKE SA now uses `local`/`remote`, with UDP encapsulation when
    /// `encap` (its CHILD SAs moved too, one `ChildSaEndpoint` each, reported before this).
    /// Initiator: the peer answered our UPDATE_SA_ADDRESSES; responder: we applied the peer's.
    MobikeMoved {
        peer: PeerId,
        ike_sa: IkeSaId,
        local: SocketAddr,
        remote: SocketAddr,
        encap: bool,
    },
    /// MOBIKE initiator: our UPDATE_SA_ADDRESSES was refused (nothing moved) or got no answer
    /// (the IKE SA fails next, reported as usual).
    MobikeFailed {
        peer: PeerId,
        ike_sa: IkeSaId,
        why: String,
    },
}

/// Keys and parameters of a new CHILD SA. Key bytes are zeroized on drop.
#[derive(Clone)]
pub struct ChildSaKeys {
    pub peer: PeerId,
    pub child: ChildSaId,
    pub ike_sa: IkeSaId,
    pub replaces: Option<ChildSaId>,
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: Encr,
    pub integ: Option<Integ>,
    /// AEAD: key || 4-byte salt.
    pub key_in: Vec<u8>,
    pub integ_key_in: Vec<u8>,
    pub key_out: Vec<u8>,
    pub integ_key_out: Vec<u8>,
    pub esn: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// ESP-in-UDP (RFC 3948) else raw ESP.
    pub encap: bool,
}

impl Drop for ChildSaKeys {
    fn drop(&mut self) {
        self.key_in.zeroize();
        self.integ_key_in.zeroize();
        self.key_out.zeroize();
        self.integ_key_out.zeroize();
    }
}

impl std::fmt::Debug for ChildSaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSaKeys")
            .field("peer", &self.peer)
            .field("child", &self.child)
            .field("ike_sa", &self.ike_sa)
            .field("replaces", &self.replaces)
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .field("esn", &self.esn)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("encap", &self.encap)
            .finish_non_exhaustive()
    }
}

/// Snapshot of one IKE SA for `rampart status`.
#[derive(Debug, Clone, PartialEq)]
pub struct IkeSaStatus {
    pub ike_sa: IkeSaId,
    pub peer: PeerId,
    pub peer_name: String,
    pub state: IkeSaStateKind,
    /// We are the original initiator of this IKE SA.
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub local_id: String,
    pub remote_id: String,
    pub encr: Option<Encr>,
    pub integ: Option<Integ>,
    pub prf: Option<Prf>,
    pub dh: Option<DhGroup>,
    /// We are behind a NAT (or pretend to be: encapsulation = force).
    pub nat_local: bool,
    /// The peer is behind a NAT.
    pub nat_remote: bool,
    /// MOBIKE (RFC 4555) was negotiated: the IKE SA moves instead of being rebuilt.
    pub mobike: bool,
    pub established_for: Option<Duration>,
    pub rekey_in: Option<Duration>,
    pub children: Vec<ChildSaStatus>,
}

/// Snapshot of one CHILD SA.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildSaStatus {
    pub child: ChildSaId,
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: Encr,
    pub integ: Option<Integ>,
    pub dh: Option<DhGroup>,
    pub esn: bool,
    pub encap: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub installed_for: Duration,
    pub rekey_in: Option<Duration>,
}
