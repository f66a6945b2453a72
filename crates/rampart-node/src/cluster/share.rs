//! What a Load Sharing member keeps besides the engine: the packets it holds or parks, the
//! routes it announces, and its counters. The decisions that need the whole gateway (continue
//! a packet, adopt an SA) are in `gateway/share.rs`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;
use rampart_cluster::{FlowKey, LoadSharingConfig, MemberId, MemberSet, PacketHandle};
use serde::{Deserialize, Serialize};

use super::HeldPool;

/// Protocol number of the routes a routed-distribution member announces (`proto` of the
/// kernel route; the routing daemon learns them by table).
pub(crate) const ANNOUNCE_PROTOCOL: u8 = 201;
/// Metric of the announced routes.
pub(crate) const ANNOUNCE_METRIC: u32 = 100;

/// The placeholder address of a forwarded packet that has none (inspected cleartext, TUN
/// packets).
pub(crate) const NO_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// Packets forwarded between members, by kind (`rampart cluster status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardCounts {
    /// IKE or ESP-in-UDP datagrams of an SA another member owns.
    pub udp: u64,
    /// Raw ESP packets of an SA another member owns.
    pub raw_esp: u64,
    /// Inspected cleartext for a tunnel another member owns.
    pub inspected: u64,
    /// TUN packets of a flow another member owns (unicast distribution).
    pub tun: u64,
}

/// This member's Load Sharing counters (`Gateway::load_sharing_stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadSharingStats {
    /// This member is up and in sync: it carries traffic and announces its routes.
    pub carrying: bool,
    /// The election picked this member (unicast distribution: it owns the virtual addresses).
    pub pivot: bool,
    /// First packets held for Flush-and-Ack.
    pub held: u64,
    /// Of `held`: SYN-ACKs held until the others had the connection's new state (SYN
    /// received, with enhanced_handshake the server's ISN).
    #[serde(default)]
    pub held_syn_ack: u64,
    /// First packets not held because every slot of the pool was in use (sent at once).
    pub hold_pool_full: u64,
    /// Held packets that continued, and those dropped (`hold_timeout_action = "drop"`).
    pub released: u64,
    pub released_dropped: u64,
    /// Packets of no known connection parked while the other members were asked (UPD_REQ).
    pub orphans: u64,
    /// Of those, the ones whose connection arrived (the rest were judged by the rules).
    pub orphans_found: u64,
    pub orphans_not_found: u64,
    /// Orphans not parked because every slot was in use (judged by the rules at once).
    pub orphan_pool_full: u64,
    /// Update requests of other members answered, with and without the connection.
    pub answered_found: u64,
    pub answered_unknown: u64,
    pub forwarded_out: ForwardCounts,
    /// Of `forwarded_out.inspected`: cleartext for a remote-access client's virtual IP whose
    /// SA another member owns, forwarded to that member (found by the packet's destination).
    #[serde(default)]
    pub forwarded_to_client: u64,
    pub forwarded_in: ForwardCounts,
    /// Forwarded packets this member could not handle (malformed, no SA any more).
    pub forwarded_in_dropped: u64,
    /// SAs of a member that went down, continued by this member.
    pub adoptions: u64,
    /// Packets kept now (held and parked).
    pub kept_now: u64,
    /// Routes announced now (routed distribution).
    pub routes_announced: u64,
}

/// A Load Sharing member's own state (see the module documentation).
pub(crate) struct LoadShare {
    pub config: LoadSharingConfig,
    pub me: MemberId,
    /// Up and in sync: carries traffic, pushes its own records, announces its routes.
    pub carrying: bool,
    /// Elected by the engine (unicast: owns the virtual addresses).
    pub pivot: bool,
    pub pool: HeldPool,
    /// Packets kept for Flush-and-Ack since the last pump, not yet handed to the engine.
    pub new_holds: Vec<PacketHandle>,
    /// Orphans kept since the last pump, not yet asked about.
    pub new_orphans: Vec<(PacketHandle, FlowKey)>,
    /// The routes announced now (routed distribution).
    pub announced: Vec<IpNet>,
    /// IKE SPIs of SAs this member adopted (their home is another member).
    pub adopted_ike_spis: std::collections::HashSet<u64>,
    pub stats: LoadSharingStats,
    /// Packets and bytes handled as owner since the last report to the engine.
    pub share_packets: u64,
    pub share_bytes: u64,
    /// The inspector's count of accepted connections at the last report.
    pub flows_reported: u64,
    /// The buffer a kept or forwarded packet continues in (reused).
    pub scratch: Vec<u8>,
    /// `sync_after` connections not synced yet, with their due time (the key of their entry in
    /// `ClusterMember::delayed`): exactly the delayed entries whose connection is still in
    /// `ClusterMember::unsynced`, when holds are on.
    pub delayed_due: std::collections::HashMap<u64, std::time::Instant>,
    /// `sync_after` connections whose first packet at their age was just held: their record
    /// is pushed at the next pump, whatever the timer says.
    pub sync_now: Vec<u64>,
    /// `sync_after` connections the timer pushed (idle at their due time), by the instant it
    /// did, for `hold_timeout`: their first packet in that window is held until the other
    /// members have the record. Every id here is in `watch_order`, which is in push order.
    pub synced_watch: std::collections::HashMap<u64, std::time::Instant>,
    /// The engine's members up at the last pump: a member that leaves it, alive or not,
    /// hands its SAs to their rendezvous owners among the rest.
    pub up_seen: MemberSet,
    pub watch_order: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl LoadShare {
    pub fn new(config: LoadSharingConfig, me: MemberId) -> LoadShare {
        LoadShare {
            pool: HeldPool::new(config.max_holds + config.max_pending_updates),
            config,
            me,
            carrying: false,
            pivot: false,
            new_holds: Vec::new(),
            new_orphans: Vec::new(),
            announced: Vec::new(),
            adopted_ike_spis: Default::default(),
            stats: LoadSharingStats::default(),
            share_packets: 0,
            share_bytes: 0,
            flows_reported: 0,
            scratch: Vec::new(),
            delayed_due: Default::default(),
            sync_now: Vec::new(),
            synced_watch: Default::default(),
            up_seen: MemberSet::EMPTY,
            watch_order: Default::default(),
        }
    }

    /// Routed distribution (any member may receive any packet).
    pub fn routed(&self) -> bool {
        self.config.distribution == rampart_cluster::Distribution::Routed
    }

    /// The data plane's checks for this member now.
    pub fn hooks(&self) -> crate::dataplane::LsHooks {
        let on = self.carrying;
        crate::dataplane::LsHooks {
            hold_creates: on && self.config.holds(),
            // The SYN-ACK too: the originator's next packet may reach a member that saw
            // only the SYN (SYN sent refuses a bare ACK), and with enhanced_handshake it
            // must know the server's ISN there.
            hold_handshake: on && self.config.holds(),
            // Unicast too: a reply decrypted at the SA owner may overtake the record of the
            // connection its flow owner created.
            ask_orphans: on,
            // Out of sync too: a member that left (admin down, a monitored interface down)
            // hands cleartext for the tunnels it gave away to their new owners.
            forward_inspected: true,
            dispatch_tun: on && !self.routed(),
            sync_due: None,
        }
    }

    /// The `sync_after` connections whose first packet at their age is held: one not pushed
    /// yet (`delayed_due`) or one the timer pushed less than `hold_timeout` ago
    /// (`synced_watch`; older entries are dropped here: by then the others have the record
    /// or a hold would have timed out). Returns [`crate::dataplane::LsHooks::sync_due`]: the
    /// earliest instant such a packet can come, `None` without holds or without any.
    pub fn sync_due(
        &mut self,
        now: std::time::Instant,
        first_delayed: Option<std::time::Instant>,
    ) -> Option<std::time::Instant> {
        while let Some(&(at, id)) = self.watch_order.front() {
            if at + self.config.hold_timeout > now {
                break;
            }
            self.watch_order.pop_front();
            if self.synced_watch.get(&id) == Some(&at) {
                self.synced_watch.remove(&id);
            }
        }
        if !(self.carrying && self.config.holds()) {
            return None;
        }
        let watched = self.watch_order.front().map(|&(at, _)| at);
        let pending = first_delayed.filter(|_| !self.delayed_due.is_empty());
        match (pending, watched) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts a packet this member handled as the owner of its flow or SA.
    pub fn count(&mut self, bytes: usize) {
        self.share_packets += 1;
        self.share_bytes += bytes as u64;
    }
}

/// The connection key of a flow tuple (either direction gives the same key).
pub(crate) fn conn_key(t: &rampart_inspect::FlowTuple) -> FlowKey {
    FlowKey::conn(
        t.proto,
        SocketAddr::new(t.src_ip(), t.sport),
        SocketAddr::new(t.dst_ip(), t.dport),
    )
}

/// The tuple of a connection key (one of its two directions).
pub(crate) fn tuple_of(key: &FlowKey) -> Option<rampart_inspect::FlowTuple> {
    match *key {
        FlowKey::Conn { protocol, lo, hi } => Some(rampart_inspect::FlowTuple::new(
            lo.ip(),
            hi.ip(),
            protocol,
            lo.port(),
            hi.port(),
        )),
        FlowKey::Esp { .. } => None,
    }
}

/// The member whose SPI this is (IKE SPIs carry the allocating member in their top 16 bits).
pub(crate) fn ike_spi_home(spi: u64) -> MemberId {
    rampart_ike::SpiGenerator::ike_spi_member(spi) as MemberId
}

/// What the node reads of an IKE datagram on an IKE or NAT-T port (after the non-ESP
/// marker): the SPI this side chose and whether it is a new IKE_SA_INIT request (no SPI of
/// ours yet). `None` when it is not IKE.
pub(crate) fn ike_header(datagram: &[u8], nat_t: bool) -> Option<IkeHeader> {
    let ike = if nat_t {
        let (marker, rest) = datagram.split_at_checked(4)?;
        if marker != [0; 4] {
            return None;
        }
        rest
    } else {
        datagram
    };
    let header = ike.get(..28)?;
    let spi_i = u64::from_be_bytes(header[0..8].try_into().ok()?);
    let spi_r = u64::from_be_bytes(header[8..16].try_into().ok()?);
    const IKE_SA_INIT: u8 = 34;
    /// Set by the original initiator of the IKE SA (RFC 7296 3.1).
    const INITIATOR: u8 = 0x08;
    let from_initiator = header[19] & INITIATOR != 0;
    Some(IkeHeader {
        ours: if from_initiator { spi_r } else { spi_i },
        new_sa: header[18] == IKE_SA_INIT && spi_r == 0,
    })
}

/// See [`ike_header`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IkeHeader {
    /// The SPI this cluster chose (the responder's when the peer initiated); 0 in a new
    /// IKE_SA_INIT request.
    pub ours: u64,
    pub new_sa: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuple_and_its_key_round_trip_in_either_direction() {
        let t = rampart_inspect::FlowTuple::new(
            "10.1.0.5".parse().unwrap(),
            "10.2.0.7".parse().unwrap(),
            6,
            40000,
            443,
        );
        let key = conn_key(&t);
        assert_eq!(key, conn_key(&t.reverse()));
        let back = tuple_of(&key).unwrap();
        assert!(back == t || back == t.reverse());
        assert_eq!(tuple_of(&FlowKey::Esp { spi: 7 }), None);
    }

    #[test]
    fn ike_headers_are_read_behind_the_marker_only() {
        let mut ike = vec![0u8; 28];
        ike[0..8].copy_from_slice(&0x0002_0000_0000_0001u64.to_be_bytes());
        ike[18] = 34;
        ike[19] = 0x08;
        let init = IkeHeader {
            ours: 0,
            new_sa: true,
        };
        assert_eq!(ike_header(&ike, false), Some(init));
        // The responder's answer names our SPI as the initiator's.
        ike[8..16].copy_from_slice(&7u64.to_be_bytes());
        ike[19] = 0x20;
        let answer = ike_header(&ike, false).unwrap();
        assert_eq!(answer.ours, 0x0002_0000_0000_0001);
        assert!(!answer.new_sa);
        assert_eq!(ike_spi_home(answer.ours), 2);
        let mut framed = vec![0u8; 4];
        framed.extend_from_slice(&ike);
        assert_eq!(ike_header(&framed, true), Some(answer));
        // ESP-in-UDP (a non-zero SPI where the marker would be) is not IKE.
        let mut esp = framed.clone();
        esp[0] = 1;
        assert_eq!(ike_header(&esp, true), None);
        assert_eq!(ike_header(&ike[..20], false), None);
    }
}
