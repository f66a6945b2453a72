//! The batched data path: the buffers a batch lives in, and how a batch of node decisions
//! becomes as few system calls as possible.
//!
//! Outbound (TUN to network): one TUN read returns up to 64 KB of one flow when the device has
//! segmentation offload; it is split into MTU-sized packets in `tun_bufs`, each with ESP head-
//! and tailroom, and the node seals them in place. Consecutive ESP-in-UDP packets to one peer of
//! one size leave in one UDP GSO send (`UDP_SEGMENT`) that the kernel gathers from where they
//! were sealed; raw ESP packets leave in one `sendmmsg`.
//!
//! Inbound (network to TUN): one `recvmmsg` with UDP GRO returns several entries, each possibly
//! holding many datagrams of one peer; the node opens each datagram inside its own range, and
//! [`GroWriter`] coalesces the decrypted packets of one TCP or UDP flow into one TUN write that
//! the kernel gathers from where they were decrypted: no copy in user space.
//!
//! Invariants:
//! - Every buffer is allocated when the loop starts; a packet costs no allocation.
//! - A batch is flushed before its buffers are reused: `tun_pending` only ever holds packets of
//!   the receive arena they point into, and is written before that arena is read into again.
//! - A failure of one send or write is logged and costs that packet (or that GSO send), never
//!   the loop.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use rampart_node::{BatchCounters, Disposition, IcmpCounters};

use crate::errqueue::{self, ErrQueueBuf, IcmpKind, QueuedError};

use crate::raw_esp::{RawPacket, MAX_BATCH as RAW_BATCH};
use crate::runtime::Io;
use crate::tun::{HEADROOM, MAX_PACKET, RAW_READ_LEN, TAILROOM};
use crate::tun_gro::GroWriter;
use crate::udp::{RecvMeta, MAX_GSO_SEGMENTS};

/// The largest MTU the configuration allows; TUN split buffers are sized for it.
const MAX_MTU: usize = 9000;
/// Packets one TUN read can be split into: more than 64 KB / the smallest MTU (576).
pub const TUN_BATCH: usize = 128;
/// Entries one UDP `recvmmsg` asks for; each may hold up to 64 KB of coalesced datagrams.
pub const UDP_BATCH: usize = 8;
/// Room for one UDP receive entry: the largest datagram, or a GRO super-datagram.
const UDP_SLOT: usize = MAX_PACKET;
/// Room for one raw ESP receive: an IPv4 datagram of any size (reassembled by the kernel).
const RAW_SLOT: usize = MAX_PACKET;

/// Every buffer of the data path, allocated once.
pub struct Buffers {
    /// A TUN read as it comes: virtio header and a super-packet.
    tun_read: Box<[u8]>,
    /// The packets a TUN read was split into, each at `HEADROOM` with `TAILROOM` after it.
    tun_bufs: Vec<Box<[u8]>>,
    tun_sizes: Vec<usize>,
    ranges: Vec<Range<usize>>,
    raw_packets: Vec<(IpAddr, Range<usize>)>,
    /// The node's decision for each packet of the current batch.
    out: Vec<Disposition>,
    udp_arena: Box<[u8]>,
    udp_meta: Vec<RecvMeta>,
    raw_arena: Box<[u8]>,
    raw_received: Vec<RawPacket>,
    /// Decrypted packets waiting for the TUN device: ranges of the receive arena they were
    /// decrypted in (`udp_arena` or `raw_arena`, whichever the current receive filled).
    tun_pending: Vec<Range<usize>>,
    /// Plans the coalesced TUN writes of `tun_pending`.
    gro: GroWriter,
    /// System calls against packets, for `rampart status`.
    pub counters: BatchCounters,
    /// Control messages of one error-queue entry.
    errq: ErrQueueBuf,
    /// Errors read from the UDP error queues, for `rampart status`.
    pub icmp: IcmpCounters,
}

impl Buffers {
    pub fn new() -> Buffers {
        let empty = || Disposition::Consumed;
        Buffers {
            tun_read: vec![0u8; RAW_READ_LEN].into_boxed_slice(),
            tun_bufs: (0..TUN_BATCH)
                .map(|_| vec![0u8; HEADROOM + MAX_MTU + TAILROOM].into_boxed_slice())
                .collect(),
            tun_sizes: vec![0; TUN_BATCH],
            ranges: Vec::with_capacity(TUN_BATCH),
            raw_packets: Vec::with_capacity(RAW_BATCH),
            out: (0..TUN_BATCH).map(|_| empty()).collect(),
            udp_arena: vec![0u8; UDP_BATCH * UDP_SLOT].into_boxed_slice(),
            udp_meta: vec![RecvMeta::default(); UDP_BATCH],
            raw_arena: vec![0u8; RAW_BATCH * RAW_SLOT].into_boxed_slice(),
            raw_received: vec![
                RawPacket {
                    remote: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    packet: 0..0,
                };
                RAW_BATCH
            ],
            tun_pending: Vec::with_capacity(UDP_BATCH * TUN_BATCH.max(RAW_BATCH)),
            gro: GroWriter::new(UDP_BATCH * TUN_BATCH.max(RAW_BATCH)),
            counters: BatchCounters::default(),
            errq: ErrQueueBuf::new(),
            icmp: IcmpCounters::default(),
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers::new()
    }
}

/// What one read of a device produced.
pub enum ReadResult {
    /// Packets were handled; read again.
    More,
    /// Nothing is waiting.
    Empty,
}

/// Reads from the TUN device what is waiting, splits it and hands it to the node as one batch,
/// then carries the batch out. Several reads are gathered into one batch while the buffers can
/// still take a whole super-packet, so that small packets (one per read) also leave in one GSO
/// send or one `sendmmsg`; nothing waits for packets that have not arrived. Returns `Empty`
/// when the device ran dry; errors other than `WouldBlock` are the device failing.
pub async fn tun_once<N: rampart_node::Node>(
    node: &mut N,
    io: &mut Io,
    b: &mut Buffers,
) -> io::Result<ReadResult> {
    // Buffers one read may need: a 64 KB super-packet split at the device's MTU.
    let room = MAX_PACKET / usize::from(io.tun.mtu()).max(1) + 2;
    let mut n = 0;
    let mut result = ReadResult::More;
    // Bounded, so that a device failing every read in a way we skip cannot hold the loop.
    for _ in 0..TUN_BATCH {
        if n > 0 && TUN_BATCH - n < room {
            break;
        }
        let read = io.tun.try_recv_batch(
            &mut b.tun_read,
            &mut b.tun_bufs[n..],
            &mut b.tun_sizes[n..],
            HEADROOM,
        );
        match read {
            Ok(k) => {
                b.counters.tun_reads += 1;
                b.counters.tun_read_packets += k as u64;
                n = (n + k).min(TUN_BATCH);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                result = ReadResult::Empty;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A super-packet that cannot be split (bad virtio header, a segment larger than the
            // buffers) costs that read only.
            Err(e)
                if e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::Other =>
            {
                tracing::debug!("TUN {}: read dropped: {e}", io.tun.name());
            }
            Err(e) => return Err(e),
        }
    }
    if n == 0 {
        return Ok(result);
    }
    b.ranges.clear();
    b.ranges.extend(
        b.tun_sizes[..n]
            .iter()
            .map(|&size| HEADROOM..HEADROOM + size),
    );
    node.handle_tun_batch(
        std::time::Instant::now(),
        &mut b.tun_bufs[..n],
        &b.ranges,
        &mut b.out[..n],
    );
    crate::runtime::drain_outputs(node, io).await;
    // Rejects answered towards the inside come back as TUN writes, each alone.
    for i in 0..n {
        if let Disposition::WriteTun { data } = &b.out[i] {
            let data = data.clone();
            let (gro, counters) = (&mut b.gro, &mut b.counters);
            write_tun(
                io,
                gro,
                counters,
                &b.tun_bufs[i],
                std::slice::from_ref(&data),
            )
            .await;
        }
    }
    send_sealed(io, b, n).await;
    Ok(result)
}

/// Sends the sealed packets of a TUN batch (`b.out[..n]`, data in `b.tun_bufs`): runs of
/// ESP-in-UDP packets of one size to one peer as one GSO send, raw ESP as `sendmmsg` batches.
async fn send_sealed(io: &Io, b: &mut Buffers, n: usize) {
    let mut i = 0;
    while i < n {
        match b.out[i].clone() {
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => {
                if io.streams.has(&remote) {
                    // One frame on the peer's stream (no GSO there).
                    match b.tun_bufs[i].get(data.clone()) {
                        Some(packet) => {
                            io.streams.send(remote, packet);
                        }
                        None => tracing::error!(
                            "node returned packet range {data:?} outside its buffer; packet dropped"
                        ),
                    }
                    i += 1;
                    continue;
                }
                let Some(socket) = io.udp_for(local) else {
                    tracing::warn!("no UDP socket is bound to {local}; packet not sent");
                    i += 1;
                    continue;
                };
                let segment = data.len();
                let limit = socket.segments_per_send(segment.max(1), remote.is_ipv6());
                let end = gso_run(&b.out[..n], i, limit);
                // The sealed packets stay where they are: the kernel gathers them.
                let mut run: [&[u8]; MAX_GSO_SEGMENTS] = [&[]; MAX_GSO_SEGMENTS];
                let mut count = 0;
                for k in i..end {
                    let Disposition::SendUdp { data, .. } = &b.out[k] else {
                        continue;
                    };
                    match b.tun_bufs[k].get(data.clone()) {
                        Some(packet) if count < MAX_GSO_SEGMENTS => {
                            run[count] = packet;
                            count += 1;
                        }
                        Some(_) => {}
                        None => tracing::error!(
                            "node returned packet range {data:?} outside its buffer; packet dropped"
                        ),
                    }
                }
                i = end;
                if count > 0 {
                    match socket.send_gathered(remote, &run[..count], segment).await {
                        Ok(_) => {
                            b.counters.udp_sends += 1;
                            b.counters.udp_send_datagrams += count as u64;
                        }
                        Err(e) => tracing::debug!(
                            "UDP {local} -> {remote}: send of {count} packets failed: {e}"
                        ),
                    }
                }
            }
            Disposition::SendRawEsp { local, .. } => {
                let Some(socket) = io.raw_for(local) else {
                    tracing::warn!("no raw ESP socket is bound to {local}; packet not sent");
                    i += 1;
                    continue;
                };
                let mut batch: [(IpAddr, &[u8]); RAW_BATCH] =
                    [(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &[][..]); RAW_BATCH];
                let mut count = 0;
                while i < n && count < RAW_BATCH {
                    let Disposition::SendRawEsp {
                        local: l,
                        remote,
                        data,
                    } = &b.out[i]
                    else {
                        break;
                    };
                    if *l != local {
                        break;
                    }
                    if let Some(packet) = b.tun_bufs[i].get(data.clone()) {
                        batch[count] = (*remote, packet);
                        count += 1;
                    }
                    i += 1;
                }
                if let Err(e) = socket.send_batch(&batch[..count]).await {
                    tracing::debug!("ESP {local}: send of {count} packets failed: {e}");
                }
            }
            Disposition::Dropped(reason) => {
                tracing::trace!("packet dropped: {reason:?}");
                i += 1;
            }
            Disposition::WriteTun { .. } | Disposition::Consumed => i += 1,
        }
    }
}

/// The end (exclusive) of the GSO run that starts at `out[start]`: the `SendUdp` packets from
/// there on with the same local and remote address, none longer than the first, at most
/// `limit` of them (at least one), and none after a shorter one: UDP GSO cuts a send into
/// segments of the first packet's size, so only the last may be shorter.
fn gso_run(out: &[Disposition], start: usize, limit: usize) -> usize {
    let Some(Disposition::SendUdp {
        local,
        remote,
        data,
    }) = out.get(start)
    else {
        return start + 1;
    };
    let segment = data.len();
    let mut end = start + 1;
    while end < out.len() && end - start < limit.max(1) {
        let Disposition::SendUdp {
            local: l,
            remote: r,
            data,
        } = &out[end]
        else {
            break;
        };
        if l != local || r != remote || data.len() > segment {
            break;
        }
        end += 1;
        if data.len() < segment {
            break;
        }
    }
    end
}

/// One `recvmmsg` on UDP socket `index`, every datagram handed to the node, the results carried
/// out. Returns `Empty` when nothing was waiting.
pub async fn udp_once<N: rampart_node::Node>(
    node: &mut N,
    io: &mut Io,
    index: usize,
    b: &mut Buffers,
) -> ReadResult {
    let Some(socket) = io.udp.get(index) else {
        return ReadResult::Empty;
    };
    let local = socket.local();
    let received = {
        let mut slots = b.udp_arena.chunks_exact_mut(UDP_SLOT);
        let mut iov: [IoSliceMut<'_>; UDP_BATCH] =
            std::array::from_fn(|_| IoSliceMut::new(slots.next().unwrap_or_default()));
        socket.try_recv_batch(&mut iov, &mut b.udp_meta)
    };
    let entries = match received {
        Ok(n) => n.min(UDP_BATCH),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadResult::Empty,
        Err(e) if errqueue::is_pending_icmp_error(&e) => {
            // An ICMP error for an earlier datagram, reported once: the queue has it.
            udp_errors(node, io, index, b).await;
            return ReadResult::More;
        }
        Err(e) => {
            // Any other failure costs this read only.
            tracing::debug!("UDP {local}: receive failed: {e}");
            return ReadResult::More;
        }
    };
    for entry in 0..entries {
        let meta = b.udp_meta[entry];
        let slot = &mut b.udp_arena[entry * UDP_SLOT..(entry + 1) * UDP_SLOT];
        let len = meta.len.min(UDP_SLOT);
        let stride = if meta.stride == 0 { len } else { meta.stride };
        b.ranges.clear();
        let mut start = 0;
        while start < len && b.ranges.len() < TUN_BATCH {
            let end = (start + stride).min(len);
            b.ranges.push(start..end);
            start = end;
        }
        let count = b.ranges.len();
        b.counters.udp_receives += 1;
        b.counters.udp_receive_datagrams += count as u64;
        node.handle_udp_batch(
            std::time::Instant::now(),
            local,
            meta.addr,
            slot,
            &b.ranges,
            &mut b.out[..count],
        );
        crate::runtime::drain_outputs(node, io).await;
        let slot = entry * UDP_SLOT..(entry + 1) * UDP_SLOT;
        for k in 0..count {
            carry_out_inbound(
                io,
                &b.out[k],
                &b.udp_arena,
                slot.clone(),
                &mut b.tun_pending,
            )
            .await;
        }
    }
    write_tun(
        io,
        &mut b.gro,
        &mut b.counters,
        &b.udp_arena,
        &b.tun_pending,
    )
    .await;
    b.tun_pending.clear();
    ReadResult::More
}

/// Most error-queue entries read per call, so that a flood of ICMP cannot hold the loop (the
/// rest stay queued and keep the socket's error readiness set).
pub const ERRORS_PER_CALL: usize = 64;

/// Reads what waits in UDP socket `index`'s error queue (at most [`ERRORS_PER_CALL`] entries),
/// counts it, and hands each port or host unreachable to the node as a NAT hint, draining the
/// node's outputs after each. Returns how many entries were read.
pub async fn udp_errors<N: rampart_node::Node>(
    node: &mut N,
    io: &mut Io,
    index: usize,
    b: &mut Buffers,
) -> usize {
    let mut read = 0;
    while read < ERRORS_PER_CALL {
        let Some(socket) = io.udp.get(index) else {
            break;
        };
        let entry = match socket.try_recv_error(&mut b.errq) {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if e.kind() != io::ErrorKind::WouldBlock {
                    tracing::debug!("UDP {}: error queue read failed: {e}", socket.local());
                }
                break;
            }
        };
        read += 1;
        match entry {
            QueuedError::Icmp(icmp) => {
                b.icmp.icmp_errors_received += 1;
                tracing::debug!(
                    "UDP {} -> {}: ICMP {:?}",
                    icmp.local,
                    icmp.remote,
                    icmp.kind
                );
                if icmp.kind.is_nat_hint() {
                    b.icmp.icmp_hints += 1;
                    node.handle_unreachable(std::time::Instant::now(), icmp.local, icmp.remote);
                    crate::runtime::drain_outputs(node, io).await;
                }
                if let IcmpKind::TooBig { mtu } = icmp.kind {
                    b.icmp.too_big += 1;
                    path_mtu(node, io, icmp.local, icmp.remote, mtu).await;
                }
            }
            QueuedError::LocalTooBig { local, remote, mtu } => {
                b.icmp.too_big += 1;
                tracing::debug!("UDP {local} -> {remote}: EMSGSIZE, route MTU {mtu}");
                path_mtu(node, io, local, remote, mtu).await;
            }
            other => {
                b.icmp.other_errors += 1;
                tracing::trace!(
                    "UDP {}: error queue entry dropped: {other:?}",
                    socket.local()
                );
            }
        }
    }
    read
}

/// A path MTU report (ICMP "too big" or the local `EMSGSIZE`) for the node; an MTU of 0 (the
/// report named none) or beyond 16 bits is ignored.
async fn path_mtu<N: rampart_node::Node>(
    node: &mut N,
    io: &mut Io,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    mtu: u32,
) {
    let Some(mtu) = u16::try_from(mtu).ok().filter(|m| *m > 0) else {
        tracing::debug!("UDP {local} -> {remote}: \"too big\" without a usable MTU ({mtu})");
        return;
    };
    node.handle_path_mtu(std::time::Instant::now(), local, remote, mtu);
    crate::runtime::drain_outputs(node, io).await;
}

/// One `recvmmsg` on raw ESP socket `index`, handed to the node as one batch.
pub async fn raw_once<N: rampart_node::Node>(
    node: &mut N,
    io: &mut Io,
    index: usize,
    b: &mut Buffers,
) -> ReadResult {
    let Some(socket) = io.raw.get(index) else {
        return ReadResult::Empty;
    };
    let local = socket.local();
    let received = {
        let mut slots = b.raw_arena.chunks_exact_mut(RAW_SLOT);
        let mut bufs: [&mut [u8]; RAW_BATCH] =
            std::array::from_fn(|_| slots.next().unwrap_or_default());
        socket.try_recv_batch(&mut bufs, &mut b.raw_received)
    };
    let n = match received {
        Ok(n) => n.min(RAW_BATCH),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadResult::Empty,
        Err(e) => {
            tracing::debug!("raw ESP {local}: receive failed: {e}");
            return ReadResult::More;
        }
    };
    b.raw_packets.clear();
    b.raw_packets
        .extend(b.raw_received[..n].iter().enumerate().map(|(i, r)| {
            (
                r.remote,
                i * RAW_SLOT + r.packet.start..i * RAW_SLOT + r.packet.end,
            )
        }));
    node.handle_raw_esp_batch(
        std::time::Instant::now(),
        local,
        &mut b.raw_arena[..],
        &b.raw_packets,
        &mut b.out[..n],
    );
    crate::runtime::drain_outputs(node, io).await;
    for k in 0..n {
        let whole = 0..b.raw_arena.len();
        carry_out_inbound(io, &b.out[k], &b.raw_arena, whole, &mut b.tun_pending).await;
    }
    write_tun(
        io,
        &mut b.gro,
        &mut b.counters,
        &b.raw_arena,
        &b.tun_pending,
    )
    .await;
    b.tun_pending.clear();
    ReadResult::More
}

/// Frames of one stream (see [`crate::stream`]): handed to the node as datagrams from the
/// stream's peer to its local address, in one batch, and carried out exactly like a UDP
/// receive. The batch goes back to the stream's reader afterwards.
pub async fn stream_frames<N: rampart_node::Node>(
    node: &mut N,
    io: &mut Io,
    b: &mut Buffers,
    id: u64,
    remote: std::net::SocketAddr,
    mut batch: crate::stream::Batch,
) {
    let Some(local) = io.streams.local_of(&remote, id) else {
        return;
    };
    let count = batch.frames.len().min(TUN_BATCH);
    node.handle_udp_batch(
        std::time::Instant::now(),
        local,
        remote,
        &mut batch.data,
        &batch.frames[..count],
        &mut b.out[..count],
    );
    crate::runtime::drain_outputs(node, io).await;
    let whole = 0..batch.data.len();
    for k in 0..count {
        carry_out_inbound(
            io,
            &b.out[k],
            &batch.data,
            whole.clone(),
            &mut b.tun_pending,
        )
        .await;
    }
    write_tun(io, &mut b.gro, &mut b.counters, &batch.data, &b.tun_pending).await;
    b.tun_pending.clear();
    io.streams.recycle(id, remote, batch);
}

/// Carries out `out` for a packet that came from the network; its ranges are relative to
/// `arena[slot]`. Decrypted packets are queued in `tun_pending` (as ranges of `arena`) for
/// the coalesced TUN writes; packets for the network (rejects sealed back into a tunnel) are
/// sent at once (over a stream when the remote has one, see [`Io::send_udp`]).
async fn carry_out_inbound(
    io: &Io,
    out: &Disposition,
    arena: &[u8],
    slot: Range<usize>,
    tun_pending: &mut Vec<Range<usize>>,
) {
    let packet = |range: &Range<usize>| {
        let p = arena.get(slot.clone()).and_then(|s| s.get(range.clone()));
        if p.is_none() {
            tracing::error!(
                "node returned packet range {range:?} outside its buffer ({slot:?}); packet dropped"
            );
        }
        p
    };
    match out {
        Disposition::WriteTun { data } => {
            if let Some(p) = packet(data) {
                if !p.is_empty() {
                    tun_pending.push(slot.start + data.start..slot.start + data.end);
                }
            }
        }
        Disposition::SendUdp {
            local,
            remote,
            data,
        } => {
            if let Some(p) = packet(data) {
                io.send_udp(*local, *remote, p).await;
            }
        }
        Disposition::SendRawEsp {
            local,
            remote,
            data,
        } => {
            if let Some(p) = packet(data) {
                io.send_raw_esp(*local, *remote, p).await;
            }
        }
        Disposition::Consumed => {}
        Disposition::Dropped(reason) => tracing::trace!("packet dropped: {reason:?}"),
    }
}

/// Writes the decrypted packets at `packets` (ranges of `arena`) to the TUN device, the
/// packets of one TCP or UDP flow coalesced into one write when the device has offload. A failed
/// write is logged and costs its own packets.
async fn write_tun(
    io: &Io,
    gro: &mut GroWriter,
    counters: &mut BatchCounters,
    arena: &[u8],
    packets: &[Range<usize>],
) {
    if packets.is_empty() {
        return;
    }
    gro.plan(arena, packets, io.tun.offload(), io.tun.udp_offload());
    if gro.skipped() > 0 {
        tracing::error!(
            "{} decrypted packet(s) outside the receive buffer; dropped",
            gro.skipped()
        );
    }
    let outcome = gro.send(&io.tun, arena).await;
    counters.tun_writes += outcome.sent as u64;
    counters.tun_write_packets += outcome.sent_packets as u64;
    if let Some(e) = outcome.error {
        tracing::debug!(
            "TUN {}: {} of {} write(s) failed: {e}",
            io.tun.name(),
            outcome.failed,
            outcome.failed + outcome.sent
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// The (local, remote) pair of a UDP disposition.
    fn udp_target(d: &Disposition) -> Option<(SocketAddr, SocketAddr)> {
        match d {
            Disposition::SendUdp { local, remote, .. } => Some((*local, *remote)),
            _ => None,
        }
    }

    fn udp(remote: &str, len: usize) -> Disposition {
        Disposition::SendUdp {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: remote.parse().unwrap(),
            data: 0..len,
        }
    }

    #[test]
    fn gso_runs_hold_one_peer_one_size_and_end_after_a_shorter_packet() {
        let a = "192.0.2.2:4500";
        let b = "192.0.2.3:4500";
        // Equal sizes to one peer: one run, cut at the limit.
        let out = vec![udp(a, 100); 5];
        assert_eq!(gso_run(&out, 0, 64), 5);
        assert_eq!(gso_run(&out, 0, 3), 3);
        assert_eq!(gso_run(&out, 3, 3), 5);
        // A shorter packet ends the run it is in; a longer one starts a new run.
        let out = vec![udp(a, 100), udp(a, 100), udp(a, 60), udp(a, 100)];
        assert_eq!(gso_run(&out, 0, 64), 3);
        assert_eq!(gso_run(&out, 3, 64), 4);
        let out = vec![udp(a, 60), udp(a, 100)];
        assert_eq!(gso_run(&out, 0, 64), 1);
        // Another peer, another kind of disposition: the run ends there.
        let out = vec![udp(a, 100), udp(b, 100), udp(a, 100)];
        assert_eq!(gso_run(&out, 0, 64), 1);
        assert_eq!(gso_run(&out, 1, 64), 2);
        let out = vec![
            udp(a, 100),
            Disposition::Dropped(rampart_node::DropReason::NoSa),
            udp(a, 100),
        ];
        assert_eq!(gso_run(&out, 0, 64), 1);
        // A limit of 0 still sends the packet; a start that is no SendUdp moves on by one.
        assert_eq!(gso_run(&out, 0, 0), 1);
        assert_eq!(gso_run(&out, 1, 64), 2);
    }

    #[test]
    fn buffers_fit_the_largest_split_and_receive() {
        let b = Buffers::new();
        assert_eq!(b.tun_bufs.len(), TUN_BATCH);
        const {
            assert!(
                TUN_BATCH > MAX_PACKET / 576,
                "a 64 KB read at MTU 576 must fit"
            )
        };
        assert!(b.tun_bufs[0].len() >= HEADROOM + MAX_MTU + TAILROOM);
        assert_eq!(b.udp_arena.len(), UDP_BATCH * UDP_SLOT);
        assert!(b.tun_pending.capacity() >= UDP_BATCH * TUN_BATCH);
        let d = Disposition::SendUdp {
            local: "192.0.2.1:4500".parse().unwrap(),
            remote: "192.0.2.2:4500".parse().unwrap(),
            data: 0..1,
        };
        assert!(udp_target(&d).is_some());
    }
}
