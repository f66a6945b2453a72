//! Zero-copy receive-side coalescing (GRO) for writes to the TUN device.
//!
//! Decrypted inner packets sit where they were opened (e.g. in the UDP receive arena). A
//! [`GroWriter`] plans, for one batch of them, as few TUN writes as possible: TCP segments
//! (and, with USO, UDP datagrams) of one flow become one GSO super-packet that the kernel
//! gathers from an iovec list: a small header block built in the writer's own scratch
//! storage (virtio-net header + the rewritten IP and transport headers of the first packet),
//! followed by the payload of every segment, pointing straight into the arena. No packet byte
//! is copied in user space and nothing is allocated per packet: all storage is allocated by
//! [`GroWriter::new`] (or grown once if a larger batch than announced arrives).
//!
//! Invariant (tested by re-segmenting in the tests): for every coalesced write, the packets
//! the kernel produces when it segments the write again at `gso_size` (copying the header,
//! advancing the TCP sequence number and the IPv4 identification per segment, clearing PSH on
//! all but the last segment, fixing lengths and completing checksums) are exactly the
//! original packets, byte for byte. This is why a packet only joins a group when everything
//! segmentation copies from the first header is equal (TOS/traffic class, flow label, TTL/hop
//! limit, DF, ack, window, urgent pointer, TCP options), its sequence number and IPv4
//! identification follow on, and its own checksums are valid (a corrupted packet is written
//! alone, untouched, rather than healed by the checksum the kernel would compute).
//!
//! Order: writes are planned in the order their first packet arrived, and a packet of a flow
//! that cannot join the flow's open group closes it, so the packets of one flow reach the
//! kernel in arrival order. A packet that might belong to a tracked flow but cannot be
//! attributed to one (an IP fragment, IPv6 extension headers, a malformed header) closes all
//! open groups.

use std::io::{self, IoSlice};
use std::ops::Range;

use rampart_wire::checksum::{fold, pseudo_header, sum};
use rampart_wire::ip::{Ipv4Header, Ipv6Header};
use tun_rs::VIRTIO_NET_HDR_LEN;

use crate::tun::Tun;

/// Most segments one coalesced write carries.
pub const MAX_SEGMENTS: usize = 64;
/// Most iovecs one planned write needs: the header block, then one payload per segment.
pub const MAX_IOV: usize = 1 + MAX_SEGMENTS;
/// Largest coalesced IP packet (IPv4 total length or IPv6 header + payload length).
const MAX_IP_LEN: usize = 65_535;
/// Scratch bytes per write: virtio-net header + IPv6 header + the largest TCP header.
const HDR_SLOT: usize = 128;

// tun-rs never sets TUNSETVNETHDRSZ, so the kernel expects the legacy 10-byte
// `struct virtio_net_hdr`; its multi-byte fields are in native byte order (legacy virtio).
const _: () = assert!(VIRTIO_NET_HDR_LEN == 10);
const _: () = assert!(VIRTIO_NET_HDR_LEN + 40 + 60 <= HDR_SLOT);

/// The header of a write the kernel takes as it is: no GSO, no checksum to complete.
static ZERO_VNET: [u8; VIRTIO_NET_HDR_LEN] = [0; VIRTIO_NET_HDR_LEN];

const VNET_F_NEEDS_CSUM: u8 = 1;
const VNET_GSO_TCPV4: u8 = 1;
const VNET_GSO_TCPV6: u8 = 4;
const VNET_GSO_UDP_L4: u8 = 5;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// Offset of the checksum in the TCP and UDP headers.
const TCP_CSUM: usize = 16;
const UDP_CSUM: usize = 6;

const NONE: u32 = u32::MAX;

/// Plans coalesced TUN writes for one batch of packets, then hands out each write's iovecs.
///
/// Use: [`plan`](GroWriter::plan) a batch, then for `w` in `0..writes()` write
/// [`iovecs`](GroWriter::iovecs) of `w` with [`Tun::write_vectored`] (or call
/// [`send`](GroWriter::send)). The arena must stay unchanged between `plan` and the writes.
pub struct GroWriter {
    /// One entry per accepted packet of the current batch, in arrival order.
    members: Vec<Member>,
    /// The planned writes, in the order they reach the device.
    writes: Vec<Write>,
    /// `HDR_SLOT` bytes per write: the header block of a coalesced write.
    scratch: Box<[u8]>,
    /// Open-addressing table: flow -> index of the flow's latest group in `writes`.
    flows: Box<[u32]>,
    /// Packets per batch the storage holds without growing.
    capacity: usize,
    /// Groups at an index below this were closed by a barrier packet.
    barrier: usize,
    offload: bool,
    skipped: usize,
}

/// Where one packet lies in the arena.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// The packet as given (`start..end`), written as is when it is alone.
    start: usize,
    end: usize,
    /// Its transport payload (the part a coalesced write takes from it).
    payload_start: usize,
    payload_end: usize,
    /// The next packet of the same write, or `NONE`.
    next: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Single,
    Tcp,
    Udp,
}

/// One planned write: a single packet, or a group of segments of one flow.
#[derive(Debug, Clone, Copy)]
struct Write {
    kind: Kind,
    head: u32,
    tail: u32,
    count: u32,
    /// Whether another segment may still join (groups only).
    open: bool,
    key: FlowKey,
    v6: bool,
    l3: usize,
    l4: usize,
    /// Payload size of every segment but the last.
    gso_size: usize,
    /// Sum of the payloads of all segments.
    payload: usize,
    next_seq: u32,
    next_id: u16,
    /// TCP flags of the last segment (they go into the coalesced header).
    last_flags: u8,
    /// Bytes of the header block in scratch; 0 for a write without one.
    hdr_len: usize,
}

/// What segmentation cannot change between the packets of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FlowKey {
    addrs: [u8; 32],
    ports: [u8; 4],
    proto: u8,
    v6: bool,
}

impl FlowKey {
    fn new(proto: u8, v6: bool, addrs: &[u8], ports: &[u8]) -> FlowKey {
        let mut key = FlowKey {
            proto,
            v6,
            ..FlowKey::default()
        };
        let n = addrs.len().min(32);
        key.addrs[..n].copy_from_slice(&addrs[..n]);
        let n = ports.len().min(4);
        key.ports[..n].copy_from_slice(&ports[..n]);
        key
    }

    fn hash(&self) -> u64 {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = u64::from(self.proto) | (u64::from(self.v6) << 8);
        for c in self.addrs.chunks_exact(8) {
            let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let p = u32::from_ne_bytes(self.ports);
        (h.rotate_left(5) ^ u64::from(p)).wrapping_mul(K)
    }
}

/// A packet that may join a group.
#[derive(Debug, Clone, Copy)]
struct Seg {
    l3: usize,
    l4: usize,
    /// Length of the IP packet (from its header; trailing bytes of the range are not part of it).
    ip_len: usize,
    payload: usize,
    seq: u32,
    id: u16,
    flags: u8,
}

enum Parsed {
    /// Not of a flow we coalesce: written alone, no effect on groups.
    Other,
    /// Might belong to a tracked flow but cannot be attributed: closes every open group.
    Barrier,
    /// A packet of a tracked flow; `Some` if it may be coalesced.
    Flow(FlowKey, Option<Seg>),
}

/// The outcome of [`GroWriter::send`].
#[derive(Debug, Default)]
pub struct SendOutcome {
    /// Writes the device accepted.
    pub sent: usize,
    /// Packets those writes carried.
    pub sent_packets: usize,
    /// Writes that failed (each costs its packets only).
    pub failed: usize,
    /// The last error seen.
    pub error: Option<io::Error>,
}

impl GroWriter {
    /// Allocates storage for batches of up to `max_packets` packets (e.g. `TUN_BATCH`).
    pub fn new(max_packets: usize) -> GroWriter {
        let mut gro = GroWriter {
            members: Vec::new(),
            writes: Vec::new(),
            scratch: Box::default(),
            flows: Box::default(),
            capacity: 0,
            barrier: 0,
            offload: false,
            skipped: 0,
        };
        gro.grow(max_packets.max(1));
        gro
    }

    fn grow(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.members = Vec::with_capacity(capacity);
        self.writes = Vec::with_capacity(capacity);
        self.scratch = vec![0u8; capacity * HDR_SLOT].into_boxed_slice();
        // At most half full: probes stay short and always end.
        let slots = (2 * capacity).next_power_of_two().max(16);
        self.flows = vec![NONE; slots].into_boxed_slice();
    }

    /// Plans the writes for `packets`: complete IPv4/IPv6 packets at `arena[range]`, in
    /// arrival order. Without `offload` every packet is its own write without a virtio-net
    /// header. With `offload`, every write starts with a virtio-net header, and TCP segments
    /// of one flow are coalesced; UDP datagrams of one flow too if `udp` (the device must
    /// have USO: `Tun::udp_offload`). Empty ranges and ranges outside `arena` are skipped
    /// (see [`skipped`](GroWriter::skipped)).
    ///
    /// Allocates nothing unless `packets` is longer than the capacity given to `new`.
    pub fn plan(&mut self, arena: &[u8], packets: &[Range<usize>], offload: bool, udp: bool) {
        self.members.clear();
        self.writes.clear();
        self.skipped = 0;
        self.barrier = 0;
        self.offload = offload;
        if packets.len() > self.capacity {
            self.grow(packets.len());
        }
        if offload {
            self.flows.fill(NONE);
        }
        for range in packets {
            let Some(pkt) = arena.get(range.clone()).filter(|p| !p.is_empty()) else {
                self.skipped += 1;
                continue;
            };
            let m = self.members.len() as u32;
            self.members.push(Member {
                start: range.start,
                end: range.end,
                payload_start: range.end,
                payload_end: range.end,
                next: NONE,
            });
            if !offload {
                self.push_single(m);
                continue;
            }
            match parse(pkt, udp) {
                Parsed::Other => self.push_single(m),
                Parsed::Barrier => {
                    self.barrier = self.writes.len();
                    self.push_single(m);
                }
                Parsed::Flow(key, seg) => self.add_flow_packet(arena, pkt, m, key, seg),
            }
        }
        if offload {
            self.finish(arena);
        }
    }

    /// Number of writes planned by the last [`plan`](GroWriter::plan).
    pub fn writes(&self) -> usize {
        self.writes.len()
    }

    /// Packets carried by write `write` (0 if there is no such write).
    pub fn packets(&self, write: usize) -> usize {
        self.writes.get(write).map_or(0, |w| w.count as usize)
    }

    /// Packets the last [`plan`](GroWriter::plan) skipped: empty or outside the arena.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Fills `out` with the iovecs of write `write` and returns how many it used: with offload
    /// `[virtio header, packet]` for a single packet and `[header block, payload, payload, ..]`
    /// for a coalesced one; without offload `[packet]`. `arena` must be the one given to
    /// `plan`, unchanged; 0 if `write` does not exist or the arena no longer fits.
    pub fn iovecs<'a>(
        &'a self,
        arena: &'a [u8],
        write: usize,
        out: &mut [IoSlice<'a>; MAX_IOV],
    ) -> usize {
        let Some(w) = self.writes.get(write) else {
            return 0;
        };
        let Some(head) = self.members.get(w.head as usize) else {
            return 0;
        };
        if w.hdr_len == 0 {
            let Some(pkt) = arena.get(head.start..head.end) else {
                return 0;
            };
            if !self.offload {
                out[0] = IoSlice::new(pkt);
                return 1;
            }
            out[0] = IoSlice::new(&ZERO_VNET);
            out[1] = IoSlice::new(pkt);
            return 2;
        }
        let base = write * HDR_SLOT;
        let Some(hdr) = self.scratch.get(base..base + w.hdr_len) else {
            return 0;
        };
        out[0] = IoSlice::new(hdr);
        let mut n = 1;
        let mut m = w.head;
        while m != NONE && n < MAX_IOV {
            let Some(member) = self.members.get(m as usize) else {
                return 0;
            };
            let Some(payload) = arena.get(member.payload_start..member.payload_end) else {
                return 0;
            };
            out[n] = IoSlice::new(payload);
            n += 1;
            m = member.next;
        }
        n
    }

    /// Writes every planned write to `tun`, in order. A failed write costs its own packets
    /// only; the rest are still written.
    pub async fn send(&self, tun: &Tun, arena: &[u8]) -> SendOutcome {
        let mut outcome = SendOutcome::default();
        for w in 0..self.writes.len() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = self.iovecs(arena, w, &mut iov);
            if n == 0 {
                continue;
            }
            match tun.write_vectored(&iov[..n]).await {
                Ok(_) => {
                    outcome.sent += 1;
                    outcome.sent_packets += self.packets(w);
                }
                Err(e) => {
                    outcome.failed += 1;
                    outcome.error = Some(e);
                }
            }
        }
        outcome
    }

    fn push_single(&mut self, m: u32) {
        self.writes.push(Write {
            kind: Kind::Single,
            head: m,
            tail: m,
            count: 1,
            open: false,
            key: FlowKey::default(),
            v6: false,
            l3: 0,
            l4: 0,
            gso_size: 0,
            payload: 0,
            next_seq: 0,
            next_id: 0,
            last_flags: 0,
            hdr_len: 0,
        });
    }

    fn add_flow_packet(
        &mut self,
        arena: &[u8],
        pkt: &[u8],
        m: u32,
        key: FlowKey,
        seg: Option<Seg>,
    ) {
        let Some(slot) = self.find_slot(&key) else {
            // Unreachable (the table is never more than half full); coalescing is optional.
            self.push_single(m);
            return;
        };
        let current = self.flows[slot];
        if current != NONE {
            let g = current as usize;
            if let Some(seg) = &seg {
                if self.can_join(arena, pkt, g, seg) {
                    self.join(g, m, seg);
                    return;
                }
            }
            self.writes[g].open = false;
        }
        match seg {
            Some(seg) => {
                self.flows[slot] = self.writes.len() as u32;
                self.push_group(m, key, &seg);
            }
            None => self.push_single(m),
        }
    }

    /// The slot of `key` in the flow table, or the empty slot where it belongs.
    fn find_slot(&self, key: &FlowKey) -> Option<usize> {
        let mask = self.flows.len() - 1;
        let mut i = key.hash() as usize & mask;
        for _ in 0..self.flows.len() {
            let w = self.flows[i];
            if w == NONE || self.writes.get(w as usize).is_some_and(|w| w.key == *key) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    fn push_group(&mut self, m: u32, key: FlowKey, seg: &Seg) {
        let member = &mut self.members[m as usize];
        member.payload_start = member.start + seg.l3 + seg.l4;
        member.payload_end = member.start + seg.ip_len;
        self.writes.push(Write {
            kind: if key.proto == PROTO_TCP {
                Kind::Tcp
            } else {
                Kind::Udp
            },
            head: m,
            tail: m,
            count: 1,
            // PSH may only be on the last segment.
            open: seg.flags & TCP_PSH == 0,
            key,
            v6: key.v6,
            l3: seg.l3,
            l4: seg.l4,
            gso_size: seg.payload,
            payload: seg.payload,
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            next_id: seg.id.wrapping_add(1),
            last_flags: seg.flags,
            hdr_len: 0,
        });
    }

    fn can_join(&self, arena: &[u8], pkt: &[u8], g: usize, seg: &Seg) -> bool {
        let w = &self.writes[g];
        if !w.open
            || g < self.barrier
            || w.count as usize >= MAX_SEGMENTS
            || seg.l3 != w.l3
            || seg.l4 != w.l4
            || seg.payload > w.gso_size
            || w.l3 + w.l4 + w.payload + seg.payload > MAX_IP_LEN
            || (!w.v6 && seg.id != w.next_id)
        {
            return false;
        }
        if w.kind == Kind::Tcp && seg.seq != w.next_seq {
            return false;
        }
        let Some(head) = self.members.get(w.head as usize) else {
            return false;
        };
        let Some(first) = arena.get(head.start..head.start + w.l3 + w.l4) else {
            return false;
        };
        let Some(this) = pkt.get(..w.l3 + w.l4) else {
            return false;
        };
        same_headers(first, this, w.v6, w.kind, w.l3)
    }

    fn join(&mut self, g: usize, m: u32, seg: &Seg) {
        let member = &mut self.members[m as usize];
        member.payload_start = member.start + seg.l3 + seg.l4;
        member.payload_end = member.start + seg.ip_len;
        let w = &mut self.writes[g];
        self.members[w.tail as usize].next = m;
        w.tail = m;
        w.count += 1;
        w.payload += seg.payload;
        w.next_seq = w.next_seq.wrapping_add(seg.payload as u32);
        w.next_id = w.next_id.wrapping_add(1);
        w.last_flags = seg.flags;
        if seg.payload < w.gso_size || seg.flags & TCP_PSH != 0 || w.count as usize >= MAX_SEGMENTS
        {
            w.open = false;
        }
    }

    /// Builds the header block of every coalesced write; a group of one is written alone.
    fn finish(&mut self, arena: &[u8]) {
        for (i, w) in self.writes.iter_mut().enumerate() {
            if w.kind == Kind::Single {
                continue;
            }
            if w.count < 2 {
                w.kind = Kind::Single;
                continue;
            }
            let start = self.members[w.head as usize].start;
            let slot = &mut self.scratch[i * HDR_SLOT..(i + 1) * HDR_SLOT];
            match arena.get(start..start + w.l3 + w.l4) {
                Some(first) => w.hdr_len = build_header(slot, first, w),
                // Unreachable: the header was read from this arena while planning.
                None => w.hdr_len = 0,
            }
        }
    }
}

/// Writes the virtio-net header and the coalesced IP and transport headers of `w` into `slot`
/// and returns their length. `first` is the IP + transport header of the first segment.
fn build_header(slot: &mut [u8], first: &[u8], w: &Write) -> usize {
    let (l3, l4) = (w.l3, w.l4);
    let transport_len = l4 + w.payload;
    let (gso_type, csum_at, proto) = match (w.kind, w.v6) {
        (Kind::Udp, _) => (VNET_GSO_UDP_L4, UDP_CSUM, PROTO_UDP),
        (_, false) => (VNET_GSO_TCPV4, TCP_CSUM, PROTO_TCP),
        (_, true) => (VNET_GSO_TCPV6, TCP_CSUM, PROTO_TCP),
    };
    let vnet = &mut slot[..VIRTIO_NET_HDR_LEN];
    vnet[0] = VNET_F_NEEDS_CSUM;
    vnet[1] = gso_type;
    vnet[2..4].copy_from_slice(&((l3 + l4) as u16).to_ne_bytes());
    vnet[4..6].copy_from_slice(&(w.gso_size as u16).to_ne_bytes());
    vnet[6..8].copy_from_slice(&(l3 as u16).to_ne_bytes());
    vnet[8..10].copy_from_slice(&(csum_at as u16).to_ne_bytes());

    let ip = &mut slot[VIRTIO_NET_HDR_LEN..VIRTIO_NET_HDR_LEN + l3 + l4];
    ip.copy_from_slice(first);
    let addrs = if w.v6 { 8..40 } else { 12..20 };
    let pseudo = fold(pseudo_header(&ip[addrs], proto, transport_len));
    if w.v6 {
        ip[4..6].copy_from_slice(&(transport_len as u16).to_be_bytes());
    } else {
        ip[2..4].copy_from_slice(&((l3 + transport_len) as u16).to_be_bytes());
        ip[10..12].fill(0);
        let check = rampart_wire::checksum::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&check.to_be_bytes());
    }
    match w.kind {
        Kind::Udp => ip[l3 + 4..l3 + 6].copy_from_slice(&(transport_len as u16).to_be_bytes()),
        _ => ip[l3 + 13] = w.last_flags,
    }
    // With NEEDS_CSUM the kernel sums from csum_start to the end, over this field too, and
    // stores the complement: the field holds the pseudo-header sum, folded, not complemented.
    ip[l3 + csum_at..l3 + csum_at + 2].copy_from_slice(&pseudo.to_be_bytes());
    VIRTIO_NET_HDR_LEN + l3 + l4
}

/// Whether everything segmentation copies from the first header is equal in `this`. Both are
/// IP + transport headers of the same flow and of the same lengths.
fn same_headers(first: &[u8], this: &[u8], v6: bool, kind: Kind, l3: usize) -> bool {
    let ip_equal = if v6 {
        // Version, traffic class, flow label; hop limit.
        first[0..4] == this[0..4] && first[7] == this[7]
    } else {
        // TOS; flags and fragment offset; TTL.
        first[1] == this[1] && first[6..8] == this[6..8] && first[8] == this[8]
    };
    if !ip_equal {
        return false;
    }
    match kind {
        // Ack and data offset; window; urgent pointer and options.
        Kind::Tcp => {
            let (a, b) = (&first[l3..], &this[l3..]);
            a[8..13] == b[8..13] && a[14..16] == b[14..16] && a[18..] == b[18..]
        }
        _ => true,
    }
}

fn parse(pkt: &[u8], udp: bool) -> Parsed {
    match pkt.first().map(|b| b >> 4) {
        Some(4) => parse_v4(pkt, udp),
        Some(6) => parse_v6(pkt, udp),
        _ => Parsed::Barrier,
    }
}

fn parse_v4(pkt: &[u8], udp: bool) -> Parsed {
    let Ok(hdr) = Ipv4Header::parse(pkt) else {
        return Parsed::Barrier;
    };
    let (l3, total, proto) = (hdr.header_len, hdr.total_len, hdr.protocol);
    let tracked = proto == PROTO_TCP || (udp && proto == PROTO_UDP);
    if !tracked {
        // AH could carry a TCP segment of a tracked flow.
        return if proto == 51 {
            Parsed::Barrier
        } else {
            Parsed::Other
        };
    }
    let ip = &pkt[..total];
    let Some(ports) = ip.get(l3..l3 + 4) else {
        return Parsed::Barrier;
    };
    if hdr.is_fragment() {
        return Parsed::Barrier;
    }
    let key = FlowKey::new(proto, false, &ip[12..20], ports);
    let seg = if l3 == 20 && fold(sum(0, &ip[..20])) == 0xffff {
        segment(ip, proto, l3, false, hdr.ident)
    } else {
        None
    };
    Parsed::Flow(key, seg)
}

fn parse_v6(pkt: &[u8], udp: bool) -> Parsed {
    let Ok(hdr) = Ipv6Header::parse(pkt) else {
        return Parsed::Barrier;
    };
    let (total, proto) = (hdr.total_len(), hdr.next_header);
    match proto {
        PROTO_TCP => {}
        PROTO_UDP if udp => {}
        // Extension headers (hop-by-hop, routing, fragment, AH, destination options,
        // mobility, HIP, shim6, experiments) may hide a segment of a tracked flow.
        0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 | 253 | 254 => return Parsed::Barrier,
        _ => return Parsed::Other,
    }
    let ip = &pkt[..total];
    let Some(ports) = ip.get(40..44) else {
        return Parsed::Barrier;
    };
    let key = FlowKey::new(proto, true, &ip[8..40], ports);
    Parsed::Flow(key, segment(ip, proto, 40, true, 0))
}

/// `ip` (exactly one IP packet with an `l3`-byte header) as a segment that may be
/// coalesced, or `None`: checksum not valid, no payload, TCP flags other than ACK or ACK|PSH.
fn segment(ip: &[u8], proto: u8, l3: usize, v6: bool, id: u16) -> Option<Seg> {
    let transport = ip.get(l3..)?;
    let addrs = if v6 { ip.get(8..40)? } else { ip.get(12..20)? };
    let (l4, seq, flags) = if proto == PROTO_TCP {
        if transport.len() < 20 {
            return None;
        }
        let l4 = usize::from(transport[12] >> 4) * 4;
        let flags = transport[13];
        if l4 < 20 || l4 > transport.len() || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) {
            return None;
        }
        (l4, be32(transport, 4), flags)
    } else {
        if transport.len() < 8
            || usize::from(be16(transport, 4)) != transport.len()
            || be16(transport, 6) == 0
        {
            return None;
        }
        (8, 0, 0)
    };
    let payload = transport.len() - l4;
    if payload == 0 {
        return None;
    }
    let check = pseudo_header(addrs, proto, transport.len());
    if fold(sum(check, transport)) != 0xffff {
        return None;
    }
    Some(Seg {
        l3,
        l4,
        ip_len: ip.len(),
        payload,
        seq,
        id,
        flags,
    })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests;
