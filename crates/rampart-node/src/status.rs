//! What `rampart status` shows: a serialisable snapshot of the gateway's peers and tunnels.

use serde::{Deserialize, Serialize};

use crate::dataplane::DataPlaneCounters;
use crate::gateway::peer_policies;

/// A snapshot of one gateway, produced by [`crate::Gateway::status`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GatewayStatus {
    pub name: String,
    /// Seconds since the gateway started.
    pub uptime_secs: u64,
    pub peers: Vec<PeerStatus>,
    pub counters: DataPlaneCounters,
    /// The IKE_SA_INIT defences (RFC 7296 2.6 cookies, per-source half-open limit).
    #[serde(default)]
    pub ike_defence: IkeDefenceCounters,
    /// What the I/O shell's batching achieved: filled in by the shell, zero from a bare node.
    #[serde(default)]
    pub batching: BatchCounters,
    /// Configuration reloads (`rampart reload`, SIGHUP): filled in by the shell, which reads
    /// and validates the file; zero from a bare node.
    #[serde(default)]
    pub reloads: ReloadCounters,
    /// Following peers' NAT mappings: `hints`, `checks_sent`, `checks_rate_limited`,
    /// `mappings_moved`, `local_mapping_changes` (gateway-wide).
    #[serde(default)]
    pub nat: rampart_ike::NatFollowStats,
    /// Errors read from the UDP sockets' error queues: filled in by the shell, zero from a
    /// bare node.
    #[serde(default)]
    pub icmp: IcmpCounters,
    /// This member's view of its cluster (`None` without `[cluster]`).
    #[serde(default)]
    pub cluster: Option<rampart_cluster::ClusterStatus>,
    /// The cluster's sync counters (`None` without `[cluster]`).
    #[serde(default)]
    pub sync: Option<rampart_cluster::SyncStats>,
    /// IKE SAs (with their CHILD SAs) this member holds as replicas of other members' SAs,
    /// ready to continue them (`None` without `[cluster]`): on a standby, every SA the active
    /// member synced; in Load Sharing, every other member's.
    #[serde(default)]
    pub replicated_sas: Option<u64>,
    /// Multiple Entry Points: groups, entry points, probe responder (`None` when the gateway
    /// neither probes nor answers probes). Serialised only: a client reads it from the JSON
    /// document (`rampart_mep::MepStatus` is not deserialisable).
    #[serde(default, skip_deserializing)]
    pub mep: Option<rampart_mep::MepStatus>,
    /// Remote access: Office Mode pools and clients (gateway), virtual addresses (client);
    /// `None` without remote-access peers. Also the answer to the `ra status` request.
    #[serde(default)]
    pub remote_access: Option<RaStatus>,
}

/// `rampart ra status`: the remote-access side of a node. Names are stable (JSON keys).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RaStatus {
    /// One per remote-access gateway template.
    pub pools: Vec<RaPoolStatus>,
    /// Every client holding an address, by address.
    pub clients: Vec<RaClientStatus>,
    /// One per remote-access client peer that holds an assignment now.
    pub virtual_addresses: Vec<RaVirtualAddress>,
    /// Path MTU of each remote-access client peer with a tunnel (client side): `peer`,
    /// `configured`, `current`, `searching`, `reason`, `probes_sent`, `probes_acked`,
    /// `searches`, `icmp_too_big`, `black_holes`.
    #[serde(default)]
    pub path_mtu: Vec<crate::pmtu::PathMtuStatus>,
    /// MOBIKE (RFC 4555) counters of this node: `negotiated`, `updates_sent`,
    /// `updates_answered`, `updates_failed` (client side), `updates_applied`,
    /// `updates_refused` (gateway side).
    #[serde(default)]
    pub mobike: rampart_ike::MobikeStats,
    /// Load Sharing: IKE SAs of this member deleted because their client reconnected at
    /// another member (INITIAL_CONTACT, same identity) and took its address along.
    #[serde(default)]
    pub moved_to_other_member: u64,
}

/// An Office Mode pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RaPoolStatus {
    /// The template peer's name.
    pub peer: String,
    /// e.g. `10.99.0.0/24`.
    pub prefix: String,
    /// Addresses the pool can hand out (prefix less network, broadcast and excluded ones).
    pub size: u64,
    pub in_use: u64,
    pub free: u64,
    /// Leases handed out and given back since the gateway started.
    pub allocations: u64,
    pub releases: u64,
    /// Clients refused because every address was leased (INTERNAL_ADDRESS_FAILURE).
    pub exhausted_refusals: u64,
    /// Load Sharing: this member's share of the prefix, the only addresses it hands out
    /// fresh; `null` in high availability and standalone (the whole prefix). `size` and
    /// `free` count the share.
    #[serde(default)]
    pub share: Option<RaShareStatus>,
    /// Load Sharing: addresses other members lease (learned from their SAs), never handed
    /// out here.
    #[serde(default)]
    pub reserved_elsewhere: u64,
    /// Leases (adopted clients) and reservations outside the share; `in_use +
    /// reserved_elsewhere + free == size + outside_share`.
    #[serde(default)]
    pub outside_share: u64,
}

/// A Load Sharing member's share of an Office Mode pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RaShareStatus {
    /// This member's position among the configured members sorted by id (from 0).
    pub index: u32,
    /// How many members share the pool.
    pub of: u32,
    /// The share as CIDR blocks, e.g. `["10.99.0.0/25"]`.
    pub blocks: Vec<String>,
}

/// A client holding an address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RaClientStatus {
    /// The template peer's name.
    pub peer: String,
    /// The authenticated identity: EAP user name or IKE identity.
    pub client: String,
    pub address: String,
    /// The client's IKE SA id (as in `peers[].ike_sa.id`).
    pub ike_sa: u64,
    /// Where the client is reached now (`ip:port`; `?` when unknown).
    pub remote: String,
    /// Seconds since it got the address.
    pub since_secs: u64,
}

/// What a remote-access gateway assigned to this client.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RaVirtualAddress {
    /// The client peer's name.
    pub peer: String,
    /// The Office Mode address (`None`: the gateway sent none).
    pub address: Option<String>,
    pub dns: Vec<String>,
    pub dns_domains: Vec<String>,
    /// Split tunnel routes; empty: full tunnel.
    pub routes: Vec<String>,
    pub ike_sa: u64,
    pub since_secs: u64,
}

/// What the shell read from its UDP sockets' error queues (`IP_RECVERR`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IcmpCounters {
    /// ICMP and ICMPv6 errors that answered a datagram of ours.
    pub icmp_errors_received: u64,
    /// Of those, port or host unreachables handed to the node as NAT hints.
    pub icmp_hints: u64,
    /// ICMP "fragmentation needed" / "packet too big" and local `EMSGSIZE` reports handed to
    /// the node as path MTU (`Node::handle_path_mtu`).
    #[serde(default)]
    pub too_big: u64,
    /// Local errors (e.g. `EMSGSIZE`), other origins and entries that could not be parsed:
    /// counted and dropped.
    pub other_errors: u64,
}

/// Reloads applied and refused since the gateway started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadCounters {
    /// Reloads applied.
    pub applied: u64,
    /// Reloads refused (errors in the file, keys that need a restart, sockets that could not
    /// be opened); the gateway was left unchanged each time.
    pub refused: u64,
    /// Why the last refused reload was refused.
    pub last_error: Option<String>,
}

/// System calls against the packets they moved: with offload working, a TUN read or write and
/// a UDP send or receive carries many packets.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BatchCounters {
    /// TUN reads, and the packets they were split into.
    pub tun_reads: u64,
    pub tun_read_packets: u64,
    /// TUN writes, and the packets they carried (several per write when coalesced).
    pub tun_writes: u64,
    pub tun_write_packets: u64,
    /// UDP sends of sealed packets (one GSO send carries many), and the datagrams they carried.
    pub udp_sends: u64,
    pub udp_send_datagrams: u64,
    /// UDP receive entries (one GRO entry holds many datagrams), and the datagrams.
    pub udp_receives: u64,
    pub udp_receive_datagrams: u64,
    /// Raw ESP receives skipped because the IPv4 header the kernel passed up was malformed.
    pub raw_esp_skipped: u64,
}

/// How the responder defended itself against IKE_SA_INIT floods.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IkeDefenceCounters {
    /// Half-open responder IKE SAs right now.
    pub half_open: u64,
    /// IKE_SA_INIT requests answered with a COOKIE instead of state.
    pub cookies_sent: u64,
    /// Requests that came back with a valid cookie.
    pub cookies_accepted: u64,
    /// Requests with a cookie that did not verify.
    pub cookies_invalid: u64,
    /// Requests dropped because their source had `half_open_per_source` half-open SAs.
    pub per_source_drops: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    pub name: String,
    pub local: String,
    pub remote: String,
    /// `down`, `connecting`, `established`, `rekeying`, `deleting`.
    pub state: String,
    pub ike_sa: Option<IkeSaInfo>,
    pub tunnels: Vec<TunnelStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IkeSaInfo {
    pub id: u64,
    /// Initiator and responder SPIs in hex.
    pub spi_i: String,
    pub spi_r: String,
    pub initiator: bool,
    /// e.g. `aes256gcm16-prfsha256-x25519`.
    pub algorithms: String,
    pub local_id: String,
    pub remote_id: String,
    pub nat_local: bool,
    pub nat_remote: bool,
    /// MOBIKE (RFC 4555) was negotiated: the peer's address changes move this IKE SA.
    #[serde(default)]
    pub mobike: bool,
    /// The addresses the IKE SA uses now (`ip:port`; they follow NAT mapping moves).
    #[serde(default)]
    pub local_endpoint: String,
    #[serde(default)]
    pub remote_endpoint: String,
    pub established_secs: u64,
    pub rekey_in_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TunnelStatus {
    pub id: u64,
    /// Inbound and outbound SPIs in hex.
    pub spi_in: String,
    pub spi_out: String,
    /// e.g. `aes256gcm16` or `aes128-sha256`, with `-esn` when extended sequence numbers are on.
    pub algorithms: String,
    /// `esp` (raw IP protocol 50) or `esp-in-udp`.
    pub encapsulation: String,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    pub bytes_in: u64,
    pub packets_in: u64,
    pub bytes_out: u64,
    pub packets_out: u64,
    pub replay_drops: u64,
    pub auth_failures: u64,
    pub established_secs: u64,
    pub rekey_in_secs: Option<u64>,
}

/// Builds the snapshot from the IKE engine's view and the data plane's counters.
pub(crate) fn build(gw: &crate::Gateway, now: std::time::Instant) -> GatewayStatus {
    let config = gw.config();
    let ike = gw.ike().status(now);
    let peers = peer_policies(gw.ike())
        .map(|(index, p)| {
            // The newest established IKE SA of the peer, else any (connecting).
            let sa = ike.iter().filter(|s| s.peer == index).max_by_key(|s| {
                (
                    s.state == rampart_ike::IkeSaStateKind::Established,
                    std::cmp::Reverse(s.established_for),
                )
            });
            let tunnels = gw
                .dataplane()
                .tunnels()
                .iter()
                .filter(|(_, t)| t.peer == index)
                .map(|(id, t)| tunnel_status(id.0, t, &ike, now))
                .collect();
            PeerStatus {
                name: p.name.clone(),
                local: p.local_address.to_string(),
                remote: p.remote_address.to_string(),
                state: sa.map_or_else(|| "down".to_string(), |s| s.state.to_string()),
                ike_sa: sa.map(|s| IkeSaInfo {
                    id: s.ike_sa.0,
                    spi_i: format!("{:016x}", s.spi_i),
                    spi_r: format!("{:016x}", s.spi_r),
                    initiator: s.initiator,
                    algorithms: ike_algorithms(s),
                    local_id: s.local_id.clone(),
                    remote_id: s.remote_id.clone(),
                    nat_local: s.nat_local,
                    nat_remote: s.nat_remote,
                    mobike: s.mobike,
                    local_endpoint: s.local.to_string(),
                    remote_endpoint: s.remote.to_string(),
                    established_secs: s.established_for.map_or(0, |d| d.as_secs()),
                    rekey_in_secs: s.rekey_in.map(|d| d.as_secs()),
                }),
                tunnels,
            }
        })
        .collect();
    GatewayStatus {
        name: config.gateway.name.clone(),
        uptime_secs: secs(now, gw.started()),
        peers,
        counters: gw.dataplane().counters().clone(),
        ike_defence: {
            let dos = gw.ike().dos_stats();
            IkeDefenceCounters {
                half_open: gw.ike().half_open_count() as u64,
                cookies_sent: dos.cookies_sent,
                cookies_accepted: dos.cookies_accepted,
                cookies_invalid: dos.cookies_invalid,
                per_source_drops: dos.per_source_drops,
            }
        },
        batching: BatchCounters::default(),
        reloads: ReloadCounters::default(),
        nat: gw.ike().nat_stats(),
        icmp: IcmpCounters::default(),
        cluster: gw.cluster_status(now).map(|(c, _)| c),
        sync: gw.cluster_status(now).map(|(_, s)| s),
        replicated_sas: gw.cluster_status(now).map(|_| gw.replica_count() as u64),
        mep: gw.mep().status(now),
        remote_access: ra_status(gw, now),
    }
}

fn first_address(reply: &rampart_wire::ike::CfgReply) -> Option<String> {
    reply
        .ip4_addresses
        .first()
        .map(|a| a.to_string())
        .or_else(|| reply.ip6_addresses.first().map(|a| a.addr().to_string()))
}

/// The remote-access status: pools and clients from the IKE engine, assignments (client side)
/// and lease times from the node's records. `None` without remote-access peers.
pub(crate) fn ra_status(gw: &crate::Gateway, now: std::time::Instant) -> Option<RaStatus> {
    let ra = gw.ra();
    let pools = gw.ike().ra_pools();
    let mut any = false;
    let mut status = RaStatus::default();
    for (id, p) in peer_policies(gw.ike()) {
        match &p.remote_access {
            rampart_ike::RemoteAccess::None => {}
            rampart_ike::RemoteAccess::Gateway(g) => {
                any = true;
                // The engine's pool is the truth (it also sees leases moved by an IKE rekey or
                // imported from a cluster member, which raise no event).
                let pool = pools.iter().find(|(peer, _)| *peer == id).map(|(_, s)| *s);
                let wide = |n: u128| u64::try_from(n).unwrap_or(u64::MAX);
                let counts = ra.counts.get(&id).copied().unwrap_or_default();
                status.pools.push(match pool {
                    Some(ps) => RaPoolStatus {
                        peer: p.name.clone(),
                        prefix: g.pool.prefix.trunc().to_string(),
                        size: wide(ps.size),
                        in_use: wide(ps.in_use),
                        free: wide(ps.free),
                        allocations: ps.allocations,
                        releases: ps.releases + ps.expirations,
                        exhausted_refusals: ps.exhausted_refusals,
                        share: gw.ike().ra_pool_share(id).map(|(s, blocks)| RaShareStatus {
                            index: s.index,
                            of: s.of,
                            blocks: blocks.iter().map(ToString::to_string).collect(),
                        }),
                        reserved_elsewhere: wide(ps.reserved_elsewhere),
                        outside_share: wide(ps.outside_share),
                    },
                    None => RaPoolStatus {
                        peer: p.name.clone(),
                        prefix: g.pool.prefix.trunc().to_string(),
                        allocations: counts.allocations,
                        releases: counts.releases,
                        exhausted_refusals: counts.exhausted_refusals,
                        ..RaPoolStatus::default()
                    },
                });
            }
            rampart_ike::RemoteAccess::Client(_) => {
                any = true;
                if let Some(a) = ra.assigned.get(&id) {
                    let r = &a.reply;
                    status.virtual_addresses.push(RaVirtualAddress {
                        peer: p.name.clone(),
                        address: first_address(r),
                        dns: r
                            .ip4_dns
                            .iter()
                            .map(|a| a.to_string())
                            .chain(r.ip6_dns.iter().map(|a| a.to_string()))
                            .collect(),
                        dns_domains: r.dns_domains.clone(),
                        routes: r
                            .ip4_subnets
                            .iter()
                            .map(|n| n.to_string())
                            .chain(r.ip6_subnets.iter().map(|n| n.to_string()))
                            .collect(),
                        ike_sa: a.ike_sa.0,
                        since_secs: secs(now, a.since),
                    });
                }
            }
        }
    }
    // Clients from the engine's leases (current IKE SA and endpoint, also after an IKE rekey or
    // a NAT mapping change); when each got its address from the node's records.
    for lease in gw.ike().ra_leases() {
        let name = gw
            .ike()
            .peer(lease.peer)
            .map_or_else(String::new, |p| p.name.clone());
        let since = ra.clients.get(&lease.address).map(|c| c.since);
        status.clients.push(RaClientStatus {
            peer: name,
            client: lease.client,
            address: lease.address.to_string(),
            ike_sa: lease.ike_sa.0,
            remote: lease.remote.to_string(),
            since_secs: since.map_or(0, |t| secs(now, t)),
        });
    }
    status.path_mtu = gw.dataplane().path_mtu_status();
    status.mobike = gw.ike().mobike_stats();
    status.moved_to_other_member = ra.moved_to_other_member;
    any.then_some(status)
}

fn tunnel_status(
    id: u64,
    t: &crate::dataplane::Tunnel,
    ike: &[rampart_ike::IkeSaStatus],
    now: std::time::Instant,
) -> TunnelStatus {
    let inbound = t.inbound.stats();
    let outbound = t.outbound.stats();
    let rekey_in = ike
        .iter()
        .flat_map(|s| s.children.iter())
        .find(|c| c.child.0 == id)
        .and_then(|c| c.rekey_in);
    TunnelStatus {
        id,
        spi_in: format!("{:08x}", t.inbound.spi()),
        spi_out: format!("{:08x}", t.outbound.spi()),
        algorithms: t.algorithms.clone(),
        encapsulation: if t.encap { "esp-in-udp" } else { "esp" }.to_string(),
        local_ts: t.local_ts.iter().map(ts_string).collect(),
        remote_ts: t.remote_ts.iter().map(ts_string).collect(),
        bytes_in: inbound.bytes,
        packets_in: inbound.packets,
        bytes_out: outbound.bytes,
        packets_out: outbound.packets,
        replay_drops: inbound.replay_drops,
        auth_failures: inbound.auth_failures,
        established_secs: secs(now, t.established),
        rekey_in_secs: rekey_in.map(|d| d.as_secs()),
    }
}

fn ts_string(ts: &rampart_wire::ike::TrafficSelector) -> String {
    let nets = ts.to_nets();
    let mut s = nets
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    if ts.ip_protocol != 0 {
        s.push_str(&format!(
            "[{}/{}-{}]",
            ts.ip_protocol, ts.start_port, ts.end_port
        ));
    }
    s
}

fn secs(now: std::time::Instant, then: std::time::Instant) -> u64 {
    now.saturating_duration_since(then).as_secs()
}

fn ike_algorithms(s: &rampart_ike::IkeSaStatus) -> String {
    let mut parts = Vec::new();
    if let Some(e) = s.encr {
        parts.push(e.to_string());
    }
    if let Some(i) = s.integ {
        parts.push(i.to_string());
    }
    if let Some(p) = s.prf {
        parts.push(p.to_string());
    }
    if let Some(d) = s.dh {
        parts.push(d.to_string());
    }
    parts.join("-")
}
