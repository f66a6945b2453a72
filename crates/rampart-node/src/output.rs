//! What a node asks the I/O shell to do, beyond the data-plane answers it writes into the
//! caller's buffer: one stream per node, drained with `poll_output`.

use std::net::SocketAddr;

use ipnet::IpNet;

/// A control-plane output: things that are rare enough to own their bytes.
///
/// Every engine of a node (IKE, inspection, later cluster sync and entry-point probes) writes
/// into the node's one output stream, in the order things happened. Cluster sync messages and
/// probe datagrams are `SendUdp` from their own local port (the shell binds one socket per
/// local address the node names), so no new variant is needed for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    SendUdp {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    /// An ESP packet (protocol 50) from `local` to `remote`: a data-plane packet made by the
    /// timer (a path-MTU probe of a tunnel without UDP encapsulation).
    SendRawEsp {
        local: std::net::IpAddr,
        remote: std::net::IpAddr,
        data: Vec<u8>,
    },
    /// Write `data` (an inner IP packet) to the TUN device: a decrypted packet a Load Sharing
    /// member held (Flush-and-Ack) or parked (update request) and now lets through.
    WriteTun {
        data: Vec<u8>,
    },
    RouteAdd {
        prefix: IpNet,
    },
    RouteDel {
        prefix: IpNet,
    },
    /// Route injection (`[rim]`): install `prefix dev <tun> table <table> proto <protocol>
    /// metric <metric>` (a tunnel to that remote domain is up), for a routing daemon to
    /// redistribute. The shell removes what it installed when it exits.
    RouteInject {
        prefix: IpNet,
        table: u32,
        protocol: u8,
        metric: u32,
    },
    /// Withdraw an injected route (the last tunnel to that remote domain went down).
    RouteWithdraw {
        prefix: IpNet,
        table: u32,
        protocol: u8,
        metric: u32,
    },
    /// Bring `addr` up on `interface` (a cluster's virtual address taken over by this member).
    ClaimAddress {
        interface: String,
        addr: IpNet,
    },
    /// Take `addr` off `interface` again (another member owns it now).
    ReleaseAddress {
        interface: String,
        addr: IpNet,
    },
    /// Open the full-sync stream (TLS over TCP) to cluster member `member` at `address`, feed
    /// what it reads to `Node::full_sync_input` and report a broken stream with
    /// `Node::full_sync_failed`.
    FullSyncConnect {
        member: u8,
        address: SocketAddr,
    },
    /// Remote-access client: the gateway assigned this configuration (Office Mode address,
    /// DNS, split-DNS domains, routes; no subnets = full tunnel). The client shell puts the
    /// address on the TUN device, routes the subnets (or everything) into it, sets DNS, and
    /// undoes all of it on [`Output::VirtualAddressLost`] or exit.
    VirtualAddress {
        peer: String,
        reply: rampart_wire::ike::CfgReply,
    },
    /// Remote-access client: the IKE SA that carried the assignment is gone (deleted, dead
    /// gateway, failed); until the next `VirtualAddress` nothing is routed into the tunnel.
    VirtualAddressLost {
        peer: String,
    },
    /// Remote-access client: the largest inner packet the path to `peer` carries changed
    /// (an active path-MTU search finished, or an ICMP "fragmentation needed" lowered it).
    /// The client shell sets the TUN MTU to `mtu`; the node already clamps TCP MSS to it.
    TunnelMtu {
        peer: String,
        mtu: u16,
        reason: MtuReason,
    },
    /// Remote-access client: the gateway accepted the move of the IKE SA with `peer` to a new
    /// local address (MOBIKE UPDATE_SA_ADDRESSES answered, RFC 4555); the CHILD SAs moved too.
    Roamed {
        peer: String,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Remote-access client: the move started by `Node::roam` failed (no answer, refused, the
    /// peer does not support MOBIKE); the shell reconnects instead.
    RoamFailed {
        peer: String,
        why: String,
    },
    Log(LogRecord),
}

/// A log record the shell writes through `tracing`: `message` is the text for people, `event`
/// the same fact typed for programs (monitoring, the cluster's peer bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: LogLevel,
    pub event: LogEvent,
    pub message: String,
}

impl LogRecord {
    pub fn new(level: LogLevel, event: LogEvent, message: String) -> LogRecord {
        LogRecord {
            level,
            event,
            message,
        }
    }
}

/// What a [`LogRecord`] reports. Ids are the engine's SA ids (`IkeSaId.0`, `ChildSaId.0`);
/// peers are named as in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// An IKE SA with `peer` was established.
    PeerUp { peer: String, ike_sa: u64 },
    /// An IKE SA with `peer` went away; `reason` as the engine names it.
    PeerDown {
        peer: String,
        ike_sa: u64,
        reason: String,
    },
    /// `peer` did not answer liveness checks; its SAs were removed.
    PeerDead { peer: String, remote: String },
    /// A CHILD SA was installed in the data plane (`replaces`: the one it rekeyed).
    TunnelUp {
        peer: String,
        child: u64,
        spi_in: u32,
        spi_out: u32,
        encap: bool,
        replaces: Option<u64>,
    },
    /// A CHILD SA was removed from the data plane.
    TunnelDown {
        peer: String,
        child: u64,
        spi_in: u32,
        spi_out: u32,
    },
    /// A NAT mapping moved: `side` `peer` (we now send to `remote`) or `local` (the peer's
    /// mapping check named a new public address of ours).
    NatMappingMoved {
        peer: String,
        side: String,
        remote: String,
    },
    /// A CHILD SA could not be installed (its keys did not fit its algorithms).
    TunnelFailed { peer: String, child: u64 },
    /// Stateful inspection: a rule's log, a drop or a table limit (the message says which).
    Firewall,
    /// A new configuration was applied (counts of peers per outcome; names in the message).
    Reloaded {
        added: usize,
        removed: usize,
        reestablished: usize,
        updated: usize,
    },
    /// Multiple Entry Points tracking (`tracking = true`): a connection of `group` was
    /// resolved to `entry_point` (a peer name) at `level` (`primary`, `secondary`, `tertiary`,
    /// `backup`), which was `responding` to probes or not.
    MepResolved {
        group: String,
        entry_point: String,
        level: String,
        responding: bool,
        src: String,
        dst: String,
        protocol: u8,
        src_port: u16,
        dst_port: u16,
    },
    /// An entry point started (`up`) or stopped answering probes.
    EntryPoint {
        entry_point: String,
        up: bool,
        /// Round-trip time of the answer that made it up (microseconds).
        rtt_us: Option<u64>,
        /// Consecutive missed probes that made it down.
        misses: Option<u32>,
    },
    /// The first refused probe datagram from `from` (later ones are only counted).
    ProbeRejected { from: String, reason: String },
    /// Route injection: `prefix` of `peer` injected (`up`) or withdrawn.
    RouteInjected {
        peer: String,
        prefix: String,
        up: bool,
    },
    /// Remote-access gateway: `client` (from `remote`) got Office Mode `address` from the
    /// pool of template `peer`.
    LeaseAssigned {
        peer: String,
        client: String,
        address: String,
        remote: String,
    },
    /// Remote-access gateway: the address of `client` went back to the pool.
    LeaseReleased {
        peer: String,
        client: String,
        address: String,
    },
    /// Remote-access gateway: `client` was refused, the pool is exhausted.
    PoolExhausted {
        peer: String,
        client: String,
        remote: String,
    },
    /// Remote-access client: the gateway assigned `address` (`None`: the assignment is lost).
    VirtualAddress {
        peer: String,
        address: Option<String>,
    },
    /// MOBIKE (RFC 4555): the IKE SA with `peer` and its tunnels now run between `local` and
    /// `remote` (`encap`: ESP in UDP). `by_us`: we moved (a client); else the peer did.
    PeerMoved {
        peer: String,
        local: String,
        remote: String,
        encap: bool,
        by_us: bool,
    },
    /// MOBIKE: our move of the IKE SA with `peer` failed (`why`).
    MoveFailed { peer: String, why: String },
    /// Anything else; the message is all there is.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// Why [`Output::TunnelMtu`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtuReason {
    /// The authenticated probe search (RFC 8899 style) found this as the largest size that passes.
    Probed,
    /// An ICMP "fragmentation needed" / "packet too big" for an outer packet reported a smaller path MTU.
    IcmpTooBig,
    /// Probes stopped passing (the path shrank); back to the configured floor until a new search.
    BlackHole,
}

/// What [`crate::Node::roam`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoamOutcome {
    /// UPDATE_SA_ADDRESSES sent from the new address for these peers; `Output::Roamed` or
    /// `Output::RoamFailed` follows for each.
    Moving(Vec<String>),
    /// Some IKE SA cannot move (its peer did not announce MOBIKE, or it runs over a stream):
    /// the shell reconnects. Carries the reason for the log and status.
    Unsupported(String),
    /// No established IKE SA to move.
    Nothing,
}
