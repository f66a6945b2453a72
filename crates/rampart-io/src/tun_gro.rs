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
    let pseudo = fold(sum(&ip[addrs], u64::from(proto) + transport_len as u64));
    if w.v6 {
        ip[4..6].copy_from_slice(&(transport_len as u16).to_be_bytes());
    } else {
        ip[2..4].copy_from_slice(&((l3 + transport_len) as u16).to_be_bytes());
        ip[10..12].fill(0);
        let check = !fold(sum(&ip[..20], 0));
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
    if pkt.len() < 20 {
        return Parsed::Barrier;
    }
    let l3 = usize::from(pkt[0] & 0x0f) * 4;
    let total = usize::from(be16(pkt, 2));
    if l3 < 20 || total < l3 || total > pkt.len() {
        return Parsed::Barrier;
    }
    let proto = pkt[9];
    let tracked = proto == PROTO_TCP || (udp && proto == PROTO_UDP);
    if !tracked {
        // AH could carry a TCP segment of a tracked flow.
        return if proto == 51 {
            Parsed::Barrier
        } else {
            Parsed::Other
        };
    }
    let fragment = be16(pkt, 6) & 0x3fff != 0;
    let ip = &pkt[..total];
    let Some(ports) = ip.get(l3..l3 + 4) else {
        return Parsed::Barrier;
    };
    if fragment {
        return Parsed::Barrier;
    }
    let key = FlowKey::new(proto, false, &ip[12..20], ports);
    let seg = if l3 == 20 && fold(sum(&ip[..20], 0)) == 0xffff {
        segment(ip, proto, l3, false, be16(ip, 4))
    } else {
        None
    };
    Parsed::Flow(key, seg)
}

fn parse_v6(pkt: &[u8], udp: bool) -> Parsed {
    if pkt.len() < 40 {
        return Parsed::Barrier;
    }
    let total = 40 + usize::from(be16(pkt, 4));
    if total > pkt.len() {
        return Parsed::Barrier;
    }
    let proto = pkt[6];
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
    let check = sum(addrs, u64::from(proto) + transport.len() as u64);
    if fold(sum(transport, check)) != 0xffff {
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

/// Adds `data` (big-endian 16-bit words, an odd last byte as the high byte) to the unfolded
/// ones'-complement sum `acc`. Exact for any slice shorter than 8 GB.
///
/// The bulk is summed as native-endian 32-bit words into a 64-bit accumulator (a loop the
/// compiler vectorizes), folded, and swapped to network order: a ones'-complement sum of
/// byte-swapped words is the byte-swapped sum (RFC 1071 2(B)). The tail starts at an offset
/// that is a multiple of 4, so its words keep their big-endian alignment.
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(4);
    let mut native: u64 = 0;
    for c in &mut chunks {
        native += u64::from(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
    }
    let folded = fold(native);
    acc += u64::from(if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    });
    let mut rest = chunks.remainder();
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        acc += u64::from(b) << 8;
    }
    acc
}

/// Folds an unfolded ones'-complement sum to 16 bits (not complemented).
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const PSH: u8 = 0x08;
    const ACK: u8 = 0x10;

    // ---- an independent, naive implementation of the checksums ----

    fn naive_sum(parts: &[&[u8]]) -> u32 {
        let bytes: Vec<u8> = parts.concat();
        let mut acc: u32 = 0;
        for pair in bytes.chunks(2) {
            let word = (u32::from(pair[0]) << 8) | u32::from(*pair.get(1).unwrap_or(&0));
            acc += word;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc
    }

    fn naive_checksum(parts: &[&[u8]]) -> u16 {
        !(naive_sum(parts) as u16)
    }

    fn pseudo(ip: &[u8], proto: u8, len: usize) -> Vec<u8> {
        let addrs = if ip[0] >> 4 == 6 {
            &ip[8..40]
        } else {
            &ip[12..20]
        };
        let mut p = addrs.to_vec();
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p
    }

    fn l3_len(ip: &[u8]) -> usize {
        if ip[0] >> 4 == 6 {
            40
        } else {
            usize::from(ip[0] & 15) * 4
        }
    }

    fn is_icmp(ip: &[u8]) -> bool {
        ip[0] >> 4 == 4 && ip[9] == 1
    }

    fn proto_of(ip: &[u8]) -> u8 {
        if ip[0] >> 4 == 6 {
            ip[6]
        } else {
            ip[9]
        }
    }

    /// Recomputes the IPv4 header and TCP/UDP checksums of a complete packet.
    fn fix_checksums(ip: &mut [u8]) {
        let l3 = l3_len(ip);
        if ip[0] >> 4 == 4 {
            ip[10..12].fill(0);
            let c = naive_checksum(&[&ip[..l3]]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let proto = proto_of(ip);
        let at = match proto {
            6 => 16,
            17 => 6,
            _ => return,
        };
        let len = ip.len() - l3;
        ip[l3 + at..l3 + at + 2].fill(0);
        let p = pseudo(ip, proto, len);
        let mut c = naive_checksum(&[&p, &ip[l3..]]);
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        ip[l3 + at..l3 + at + 2].copy_from_slice(&c.to_be_bytes());
    }

    fn transport_checksum_valid(ip: &[u8]) -> bool {
        let l3 = l3_len(ip);
        let p = pseudo(ip, proto_of(ip), ip.len() - l3);
        naive_sum(&[&p, &ip[l3..]]) == 0xffff
    }

    // ---- packet builders ----

    #[derive(Debug, Clone)]
    struct Tcp {
        v6: bool,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        id: u16,
        ttl: u8,
        tos: u8,
        df: bool,
        options: Vec<u8>,
        payload: usize,
    }

    fn tcp(v6: bool, seq: u32, payload: usize) -> Tcp {
        Tcp {
            v6,
            sport: 40_000,
            dport: 5201,
            seq,
            ack: 77,
            flags: ACK,
            window: 512,
            id: 0,
            ttl: 64,
            tos: 0,
            df: true,
            // NOP, NOP, timestamps.
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            payload,
        }
    }

    fn ip_header(
        v6: bool,
        proto: u8,
        l4_len: usize,
        id: u16,
        ttl: u8,
        tos: u8,
        df: bool,
    ) -> Vec<u8> {
        if v6 {
            let mut h = vec![0x60 | (tos >> 4), (tos << 4) | 0x1, 0x23, 0x45];
            h.extend_from_slice(&(l4_len as u16).to_be_bytes());
            h.extend_from_slice(&[proto, ttl]);
            h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            h.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            h
        } else {
            let mut h = vec![0x45, tos];
            h.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            h.extend_from_slice(&id.to_be_bytes());
            h.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
            h.extend_from_slice(&[ttl, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
            h
        }
    }

    /// Payload bytes depend on the stream position, so misplaced bytes are noticed.
    fn stream_byte(port: u16, pos: u32) -> u8 {
        (pos.wrapping_mul(31) ^ u32::from(port)) as u8
    }

    fn build_tcp(t: &Tcp) -> Vec<u8> {
        assert_eq!(t.options.len() % 4, 0);
        let l4 = 20 + t.options.len();
        let mut p = ip_header(t.v6, 6, l4 + t.payload, t.id, t.ttl, t.tos, t.df);
        p.extend_from_slice(&t.sport.to_be_bytes());
        p.extend_from_slice(&t.dport.to_be_bytes());
        p.extend_from_slice(&t.seq.to_be_bytes());
        p.extend_from_slice(&t.ack.to_be_bytes());
        p.extend_from_slice(&[((l4 / 4) as u8) << 4, t.flags]);
        p.extend_from_slice(&t.window.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&t.options);
        p.extend((0..t.payload as u32).map(|i| stream_byte(t.sport, t.seq.wrapping_add(i))));
        fix_checksums(&mut p);
        p
    }

    /// `count` consecutive segments of `size` bytes of one flow, IPv4 IDs counting up.
    fn run(v6: bool, sport: u16, count: usize, size: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                let mut t = tcp(v6, 1000 + (i * size) as u32, size);
                t.sport = sport;
                t.id = 100 + i as u16;
                build_tcp(&t)
            })
            .collect()
    }

    fn build_udp(v6: bool, sport: u16, id: u16, payload: usize) -> Vec<u8> {
        let mut p = ip_header(v6, 17, 8 + payload, id, 64, 0, false);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&53u16.to_be_bytes());
        p.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend((0..payload as u32).map(|i| stream_byte(sport, u32::from(id) * 7 + i)));
        fix_checksums(&mut p);
        p
    }

    fn build_icmp() -> Vec<u8> {
        let mut p = ip_header(false, 1, 12, 9, 64, 0, false);
        p.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4]);
        fix_checksums(&mut p);
        p
    }

    // ---- what the kernel does with a write ----

    /// Splits one write (as the kernel receives it) into the packets the kernel would
    /// forward, checking the virtio-net header and the partial checksum on the way.
    fn resegment(bytes: &[u8], offload: bool) -> Vec<Vec<u8>> {
        if !offload {
            return vec![bytes.to_vec()];
        }
        let (vnet, pkt) = bytes.split_at(VIRTIO_NET_HDR_LEN);
        let field = |at: usize| usize::from(u16::from_ne_bytes([vnet[at], vnet[at + 1]]));
        let (flags, gso_type) = (vnet[0], vnet[1]);
        if gso_type == 0 {
            assert_eq!(vnet, &ZERO_VNET, "a single packet's header is all zero");
            return vec![pkt.to_vec()];
        }
        let (hdr_len, gso_size, csum_start, csum_offset) = (field(2), field(4), field(6), field(8));
        let l3 = l3_len(pkt);
        let proto = proto_of(pkt);
        let (l4, expected_type, expected_offset) = match proto {
            6 => (
                usize::from(pkt[l3 + 12] >> 4) * 4,
                if l3 == 40 { 4 } else { 1 },
                16,
            ),
            17 => (8, 5, 6),
            other => panic!("GSO write of protocol {other}"),
        };
        assert_eq!(flags, 1, "NEEDS_CSUM");
        assert_eq!(gso_type, expected_type);
        assert_eq!(csum_start, l3);
        assert_eq!(csum_offset, expected_offset);
        assert_eq!(hdr_len, l3 + l4);
        assert!(gso_size > 0);
        assert!(
            pkt.len() - hdr_len > gso_size,
            "a GSO write holds more than one segment"
        );
        assert!(pkt.len() <= 65_535);
        if l3 == 20 {
            assert_eq!(usize::from(u16::from_be_bytes([pkt[2], pkt[3]])), pkt.len());
            assert_eq!(naive_sum(&[&pkt[..20]]), 0xffff, "IPv4 header checksum");
        } else {
            assert_eq!(
                usize::from(u16::from_be_bytes([pkt[4], pkt[5]])),
                pkt.len() - 40
            );
        }
        if proto == 17 {
            assert_eq!(
                usize::from(u16::from_be_bytes([pkt[l3 + 4], pkt[l3 + 5]])),
                pkt.len() - l3
            );
        }
        // The checksum field holds the folded pseudo-header sum of the whole super-packet, so
        // completing it (sum from csum_start, complement, store) yields a valid checksum.
        let at = csum_start + csum_offset;
        let stored = u16::from_be_bytes([pkt[at], pkt[at + 1]]);
        let p = pseudo(pkt, proto, pkt.len() - l3);
        assert_eq!(u32::from(stored), naive_sum(&[&p]));
        let mut completed = pkt.to_vec();
        let c = naive_checksum(&[&completed[csum_start..]]);
        completed[at..at + 2].copy_from_slice(&c.to_be_bytes());
        assert!(transport_checksum_valid(&completed));

        let (header, payload) = pkt.split_at(hdr_len);
        let chunks: Vec<&[u8]> = payload.chunks(gso_size).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(k, chunk)| {
                let mut seg = header.to_vec();
                seg.extend_from_slice(chunk);
                let len = seg.len();
                if l3 == 20 {
                    seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                    let id = u16::from_be_bytes([seg[4], seg[5]]).wrapping_add(k as u16);
                    seg[4..6].copy_from_slice(&id.to_be_bytes());
                } else {
                    seg[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
                }
                if proto == 6 {
                    let seq =
                        u32::from_be_bytes([seg[l3 + 4], seg[l3 + 5], seg[l3 + 6], seg[l3 + 7]])
                            .wrapping_add((k * gso_size) as u32);
                    seg[l3 + 4..l3 + 8].copy_from_slice(&seq.to_be_bytes());
                    if k != last {
                        seg[l3 + 13] &= !(PSH | FIN);
                    }
                } else {
                    seg[l3 + 4..l3 + 6].copy_from_slice(&((len - l3) as u16).to_be_bytes());
                }
                fix_checksums(&mut seg);
                seg
            })
            .collect()
    }

    /// Lays `packets` out in an arena (with odd gaps), plans them and returns, per write, the
    /// packets the kernel would forward.
    fn plan_and_resegment(
        packets: &[Vec<u8>],
        offload: bool,
        udp: bool,
    ) -> (GroWriter, Vec<Vec<Vec<u8>>>) {
        let mut arena = Vec::new();
        let mut ranges = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            arena.extend(std::iter::repeat_n(0xee, 1 + i % 7));
            ranges.push(arena.len()..arena.len() + p.len());
            arena.extend_from_slice(p);
        }
        let mut gro = GroWriter::new(crate::datapath::TUN_BATCH);
        gro.plan(&arena, &ranges, offload, udp);
        let mut out = Vec::new();
        for w in 0..gro.writes() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let n = gro.iovecs(&arena, w, &mut iov);
            assert!(n > 0);
            let bytes: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
            let segs = resegment(&bytes, offload);
            assert_eq!(segs.len(), gro.packets(w));
            if gro.packets(w) > 1 {
                assert_eq!(n, 1 + gro.packets(w), "one iovec per payload");
            }
            out.push(segs);
        }
        assert_eq!(gro.skipped(), 0);
        (gro, out)
    }

    fn sizes(writes: &[Vec<Vec<u8>>]) -> Vec<usize> {
        writes.iter().map(Vec::len).collect()
    }

    #[test]
    fn a_run_of_40_segments_is_one_write_that_resegments_to_the_originals() {
        for v6 in [false, true] {
            let packets = run(v6, 40_000, 40, 1200);
            let (_, writes) = plan_and_resegment(&packets, true, false);
            assert_eq!(sizes(&writes), [40]);
            assert_eq!(writes[0], packets);
            assert!(writes[0].iter().all(|p| transport_checksum_valid(p)));
        }
    }

    #[test]
    fn psh_on_the_last_segment_is_kept_and_closes_the_group() {
        let mut packets = run(false, 40_000, 5, 1000);
        let mut t = tcp(false, 1000 + 2 * 1000, 1000);
        t.flags = ACK | PSH;
        t.id = 102;
        packets[2] = build_tcp(&t);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [3, 2]);
        assert_eq!(writes.concat(), packets);
    }

    #[test]
    fn interleaved_flows_become_one_write_each_in_order() {
        let a = run(false, 1111, 10, 1000);
        let b = run(true, 2222, 10, 800);
        let mut packets = Vec::new();
        for (x, y) in a.iter().zip(&b) {
            packets.push(x.clone());
            packets.push(y.clone());
        }
        // Unrelated traffic in between changes nothing.
        packets.insert(5, build_icmp());
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [10, 10, 1]);
        assert_eq!(writes[0], a);
        assert_eq!(writes[1], b);
        assert_eq!(writes[2], [build_icmp()]);
    }

    #[test]
    fn a_gap_in_sequence_numbers_starts_a_new_write() {
        let mut packets = run(false, 40_000, 6, 1000);
        packets.remove(3);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [3, 2]);
        assert_eq!(writes.concat(), packets);
        // The IPv4 ID gap alone would split them too; make IDs consecutive and check again.
        let mut t = tcp(false, 1000 + 4 * 1000, 1000);
        t.id = 103;
        let mut packets = run(false, 40_000, 3, 1000);
        packets.push(build_tcp(&t));
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [3, 1]);
    }

    #[test]
    fn non_consecutive_ipv4_ids_are_not_merged() {
        let mut packets = run(false, 40_000, 4, 1000);
        let mut t = tcp(false, 1000 + 2 * 1000, 1000);
        t.id = 7;
        packets[2] = build_tcp(&t);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [2, 1, 1]);
        assert_eq!(writes.concat(), packets);
    }

    #[test]
    fn differing_header_fields_are_not_merged() {
        let variants: [fn(&mut Tcp); 6] = [
            |t| t.ack = 78,
            |t| t.window = 513,
            |t| t.ttl = 63,
            |t| t.tos = 0x10,
            |t| t.df = false,
            |t| t.options[11] = 3,
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut packets = run(false, 40_000, 3, 1000);
            let mut t = tcp(false, 1000 + 1000, 1000);
            t.id = 101;
            change(&mut t);
            packets[1] = build_tcp(&t);
            let (_, writes) = plan_and_resegment(&packets, true, false);
            assert_eq!(sizes(&writes), [1, 1, 1], "variant {i}");
            assert_eq!(writes.concat(), packets, "variant {i}");
        }
    }

    #[test]
    fn syn_fin_rst_go_alone_untouched_and_close_the_group() {
        for flags in [SYN | ACK, FIN | ACK, RST | ACK, RST, ACK | 0x20, ACK | 0x80] {
            let mut packets = run(false, 40_000, 4, 1000);
            let mut t = tcp(false, 1000 + 2 * 1000, 1000);
            t.flags = flags;
            t.id = 102;
            packets[2] = build_tcp(&t);
            let (_, writes) = plan_and_resegment(&packets, true, false);
            assert_eq!(sizes(&writes), [2, 1, 1], "flags {flags:#x}");
            assert_eq!(writes[1], [packets[2].clone()]);
        }
    }

    #[test]
    fn a_shorter_segment_ends_the_group() {
        let mut packets = Vec::new();
        let mut seq = 1000;
        for (i, size) in [1000, 1000, 500, 1000, 1000].into_iter().enumerate() {
            let mut t = tcp(true, seq, size);
            t.id = i as u16;
            packets.push(build_tcp(&t));
            seq += size as u32;
        }
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [3, 2]);
        assert_eq!(writes.concat(), packets);
        // Longer after shorter first: the second does not fit the first's segment size.
        let (_, writes) = plan_and_resegment(&packets[2..], true, false);
        assert_eq!(sizes(&writes), [1, 2]);
    }

    #[test]
    fn fragments_and_icmp_go_alone_and_fragments_close_groups() {
        let mut frag = build_tcp(&tcp(false, 1000 + 2000, 1000));
        frag[6] = 0x20; // MF
        frag[10..12].fill(0);
        let c = naive_checksum(&[&frag[..20]]);
        frag[10..12].copy_from_slice(&c.to_be_bytes());
        let mut packets = run(false, 40_000, 4, 1000);
        packets.insert(2, frag.clone());
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [2, 1, 2]);
        assert_eq!(writes[1], [frag]);

        let mut packets = run(false, 40_000, 4, 1000);
        packets.insert(2, build_icmp());
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [4, 1]);
    }

    #[test]
    fn bad_checksums_and_garbage_go_alone_untouched() {
        let mut packets = run(false, 40_000, 4, 1000);
        let last = packets[1].len() - 1;
        packets[1][last] ^= 0xff; // payload corrupted: TCP checksum wrong
        packets.push(vec![0x45, 0, 0]);
        packets.push(vec![0x00; 60]);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [1, 1, 2, 1, 1]);
        assert_eq!(writes.concat(), packets);
    }

    #[test]
    fn at_most_64_segments_per_write() {
        let packets = run(false, 40_000, 100, 100);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [64, 36]);
        assert_eq!(writes.concat(), packets);
    }

    #[test]
    fn at_most_65535_ip_bytes_per_write() {
        // 20 + 32 + 46 * 1400 = 64_452 fits, one more segment does not.
        let packets = run(false, 40_000, 60, 1400);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [46, 14]);
        assert_eq!(writes.concat(), packets);
        // IPv6 counts its 40-byte header too: 40 + 32 + 46 * 1400 = 64_472.
        let packets = run(true, 40_000, 60, 1400);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [46, 14]);
    }

    #[test]
    fn without_offload_every_packet_is_one_bare_write() {
        let mut packets = run(false, 40_000, 10, 1000);
        packets.push(build_icmp());
        let (_, writes) = plan_and_resegment(&packets, false, false);
        assert_eq!(sizes(&writes), [1; 11]);
        assert_eq!(writes.concat(), packets);
    }

    #[test]
    fn udp_is_coalesced_only_when_asked() {
        let mut packets: Vec<Vec<u8>> = (0..8).map(|i| build_udp(false, 9000, i, 1200)).collect();
        packets.push(build_udp(false, 9000, 8, 300));
        let (_, writes) = plan_and_resegment(&packets, true, true);
        assert_eq!(sizes(&writes), [9]);
        assert_eq!(writes[0], packets);
        let (_, writes) = plan_and_resegment(&packets, true, false);
        assert_eq!(sizes(&writes), [1; 9]);

        let packets: Vec<Vec<u8>> = (0..5).map(|i| build_udp(true, 9000, i, 1200)).collect();
        let (_, writes) = plan_and_resegment(&packets, true, true);
        assert_eq!(writes, [packets]);
    }

    #[test]
    fn ranges_outside_the_arena_are_skipped() {
        let packets = run(false, 40_000, 3, 1000);
        let arena: Vec<u8> = packets.concat();
        let len = packets[0].len();
        #[allow(clippy::reversed_empty_ranges)]
        let ranges = [
            0..len,
            len..2 * len,
            arena.len() - 10..arena.len() + 1,
            usize::MAX - 1..usize::MAX,
            5..3,
            7..7,
            2 * len..3 * len,
        ];
        let mut gro = GroWriter::new(2);
        for offload in [false, true] {
            gro.plan(&arena, &ranges, offload, true);
            assert_eq!(gro.skipped(), 4);
            let expected: &[usize] = if offload { &[3] } else { &[1, 1, 1] };
            assert_eq!(
                (0..gro.writes())
                    .map(|w| gro.packets(w))
                    .collect::<Vec<_>>(),
                expected
            );
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            assert_eq!(gro.iovecs(&arena, gro.writes(), &mut iov), 0);
            // A different, shorter arena yields nothing rather than a panic.
            assert_eq!(gro.iovecs(&arena[..10], 0, &mut iov), 0);
        }
    }

    #[test]
    fn the_writer_is_reused_across_batches() {
        let mut gro = GroWriter::new(4);
        let a = run(false, 1, 4, 500);
        let arena_a = a.concat();
        let ranges_a: Vec<_> = (0..4)
            .map(|i| i * a[0].len()..(i + 1) * a[0].len())
            .collect();
        gro.plan(&arena_a, &ranges_a, true, false);
        assert_eq!(gro.writes(), 1);
        let b = run(true, 2, 2, 100);
        let arena_b = b.concat();
        let ranges_b: Vec<_> = (0..2)
            .map(|i| i * b[0].len()..(i + 1) * b[0].len())
            .collect();
        gro.plan(&arena_b, &ranges_b, true, false);
        assert_eq!(gro.writes(), 1);
        assert_eq!(gro.packets(0), 2);
    }

    #[derive(Debug, Clone)]
    enum Event {
        /// Next segment of flow `flow`, `len` bytes (0: a pure ACK).
        Data {
            flow: usize,
            len: usize,
            psh: bool,
        },
        /// Flow `flow` skips `by` bytes (a loss).
        Gap {
            flow: usize,
            by: u32,
        },
        Icmp,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            8 => (0..3usize, prop_oneof![3 => Just(1000usize), 1 => 0..1400usize], proptest::bool::weighted(0.1))
                .prop_map(|(flow, len, psh)| Event::Data { flow, len, psh }),
            1 => (0..3usize, 1..3000u32).prop_map(|(flow, by)| Event::Gap { flow, by }),
            1 => Just(Event::Icmp),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// The word-at-a-time sum equals the textbook 16-bit big-endian sum for any length,
        /// odd ones included, and any starting accumulator.
        #[test]
        fn sum_matches_the_textbook_sum(data in proptest::collection::vec(any::<u8>(), 0..3000), start in 0u64..0x1_0000) {
            let want = fold(u64::from(naive_sum(&[&data])) + start);
            prop_assert_eq!(fold(sum(&data, start)), want);
        }

        /// Random splits of three TCP streams (one IPv6), interleaved with losses and ICMP:
        /// every packet reaches the kernel exactly once, each flow in order, and coalesced
        /// writes re-segment to the original bytes.
        #[test]
        fn random_splits_resegment_to_the_originals(
            events in proptest::collection::vec(event(), 1..128),
            udp in any::<bool>(),
        ) {
            let mut seqs = [5000u32, u32::MAX - 3000, 0];
            let mut ids = [0u16, 65_530, 1];
            let mut packets = Vec::new();
            let mut flow_of = Vec::new();
            for e in &events {
                match *e {
                    Event::Data { flow, len, psh } => {
                        let mut t = tcp(flow == 2, seqs[flow], len);
                        t.sport = 1000 + flow as u16;
                        t.id = ids[flow];
                        if psh { t.flags |= PSH; }
                        packets.push(build_tcp(&t));
                        flow_of.push(Some(flow));
                        seqs[flow] = seqs[flow].wrapping_add(len as u32);
                        ids[flow] = ids[flow].wrapping_add(1);
                    }
                    Event::Gap { flow, by } => seqs[flow] = seqs[flow].wrapping_add(by),
                    Event::Icmp => {
                        packets.push(build_icmp());
                        flow_of.push(None);
                    }
                }
            }
            let (gro, writes) = plan_and_resegment(&packets, true, udp);
            prop_assert!(gro.writes() <= packets.len());
            let out: Vec<Vec<u8>> = writes.concat();
            prop_assert_eq!(out.len(), packets.len());
            for flow in 0..3 {
                let sport = (1000 + flow as u16).to_be_bytes();
                let of_flow = |p: &&Vec<u8>| !is_icmp(p) && p[l3_len(p)..l3_len(p) + 2] == sport;
                let sent: Vec<&Vec<u8>> = out.iter().filter(of_flow).collect();
                let given: Vec<&Vec<u8>> = packets.iter().filter(of_flow).collect();
                prop_assert_eq!(sent, given);
            }
            prop_assert_eq!(
                out.iter().filter(|p| is_icmp(p)).count(),
                flow_of.iter().filter(|f| f.is_none()).count()
            );
            let (_, bare) = plan_and_resegment(&packets, false, udp);
            prop_assert_eq!(bare.concat(), packets);
        }

        /// Whatever the bytes and ranges (an authenticated peer may tunnel anything): no panic,
        /// every range inside the arena is written exactly once, the others are counted as
        /// skipped, and a packet written alone reaches the device byte for byte.
        #[test]
        fn arbitrary_bytes_are_written_once_or_skipped(
            arena in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in proptest::collection::vec((0usize..4200, 0usize..1600), 0..40),
            offload: bool,
            udp: bool,
            tcp_hint in proptest::collection::vec(0usize..4096, 0..8),
        ) {
            let mut arena = arena;
            // Make some of them look like IPv4 TCP so the coalescing paths run too.
            for &at in &tcp_hint {
                if at + 40 <= arena.len() {
                    arena[at] = 0x45;
                    arena[at + 9] = 6;
                    arena[at + 33] = 0x10;
                }
            }
            let ranges: Vec<Range<usize>> = cuts.iter().map(|&(s, l)| s..s + l).collect();
            let inside = ranges
                .iter()
                .filter(|r| !r.is_empty() && r.end <= arena.len())
                .count();
            let mut gro = GroWriter::new(16);
            gro.plan(&arena, &ranges, offload, udp);
            let written: usize = (0..gro.writes()).map(|w| gro.packets(w)).sum();
            prop_assert_eq!(written + gro.skipped(), ranges.len());
            prop_assert_eq!(written, inside);
            let header = if offload { VIRTIO_NET_HDR_LEN } else { 0 };
            for w in 0..gro.writes() {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let n = gro.iovecs(&arena, w, &mut iov);
                prop_assert!(n > 0);
                let bytes: Vec<u8> = iov[..n].iter().flat_map(|s| s.iter().copied()).collect();
                prop_assert!(bytes.len() > header);
                if gro.packets(w) == 1 && n <= 2 {
                    let body = &bytes[header..];
                    prop_assert!(ranges.iter().any(|r| arena.get(r.clone()) == Some(body)));
                }
            }
        }
    }
}
