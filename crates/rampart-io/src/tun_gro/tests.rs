//! Tests of the GRO writer: every coalesced write is re-segmented as the kernel would and
//! compared with the original packets.
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

fn ip_header(v6: bool, proto: u8, l4_len: usize, id: u16, ttl: u8, tos: u8, df: bool) -> Vec<u8> {
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
                let seq = u32::from_be_bytes([seg[l3 + 4], seg[l3 + 5], seg[l3 + 6], seg[l3 + 7]])
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

    /// The word-at-a-time sum (`rampart_wire::checksum`) equals this file's textbook 16-bit
    /// big-endian sum for any length, odd ones included, and any starting accumulator.
    #[test]
    fn sum_matches_the_textbook_sum(data in proptest::collection::vec(any::<u8>(), 0..3000), start in 0u64..0x1_0000) {
        let want = fold(u64::from(naive_sum(&[&data])) + start);
        prop_assert_eq!(fold(sum(start, &data)), want);
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
