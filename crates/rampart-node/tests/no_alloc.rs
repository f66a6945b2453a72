//! The gateway's data path allocates nothing per packet: TUN -> seal -> wire, and wire ->
//! open -> TUN, both with raw ESP and ESP-in-UDP, once the tunnel is up.
//!
//! A counting global allocator counts per thread, so the harness's own allocations on other
//! test threads cannot leak into the measurement.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::{sealed_datagrams, udp_packet, Pair, HEADROOM};
use rampart_node::Disposition;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn data_path_allocates_nothing(extra: &str) {
    let mut pair = Pair::new(extra, "start_action = \"none\"");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));

    let packet = udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &[0x42; 1200]);
    // Buffers owned by the caller, allocated once, as the I/O shell does.
    let mut buf = vec![0u8; packet.len() + 2 * HEADROOM];
    let mut wire = vec![0u8; packet.len() + 2 * HEADROOM];
    let (now, a_addr, b_addr) = (pair.now, pair.addr[0], pair.addr[1]);
    let [a, b] = &mut pair.gw;
    for round in 0..100 {
        buf[HEADROOM..HEADROOM + packet.len()].copy_from_slice(&packet);
        let before = allocations();
        let sent = a.handle_tun(now, &mut buf, HEADROOM..HEADROOM + packet.len());
        let (range, udp) = match sent {
            Disposition::SendRawEsp { data, .. } => (data, None),
            Disposition::SendUdp {
                local,
                remote,
                data,
            } => (data, Some((local, remote))),
            other => panic!("round {round}: {other:?}"),
        };
        let len = range.len();
        wire[HEADROOM..HEADROOM + len].copy_from_slice(&buf[range]);
        let received = match udp {
            None => b.handle_raw_esp(now, b_addr, a_addr, &mut wire, HEADROOM..HEADROOM + len),
            Some((local, remote)) => {
                b.handle_udp(now, remote, local, &mut wire, HEADROOM..HEADROOM + len)
            }
        };
        let after = allocations();
        let Disposition::WriteTun { data } = received else {
            panic!("round {round}: {received:?}");
        };
        assert_eq!(&wire[data], &packet[..]);
        assert_eq!(after - before, 0, "round {round}: the data path allocated");
    }
}

#[test]
fn raw_esp_data_path_allocates_nothing() {
    data_path_allocates_nothing("");
}

#[test]
fn esp_in_udp_data_path_allocates_nothing() {
    data_path_allocates_nothing("encapsulation = \"force\"");
}

/// The batch calls, shaped like the I/O shell's offload path: 32 packets of one TUN split, each
/// in its own buffer, sealed as one batch; their ESP-in-UDP datagrams laid back to back in one
/// buffer as a UDP GRO read delivers them, opened as one batch. No allocation, every packet
/// whole, every datagram of one size.
#[test]
fn batch_data_path_allocates_nothing() {
    const N: usize = 32;
    let mut pair = Pair::new("encapsulation = \"force\"", "start_action = \"none\"");
    let t = pair.now + Duration::from_secs(3);
    pair.run_until(t);
    assert!(pair.established(0) && pair.established(1));

    let packets: Vec<Vec<u8>> = (0..N)
        .map(|i| udp_packet([10, 1, 0, 5], [10, 2, 0, 7], &[i as u8; 1200]))
        .collect();
    let len = packets[0].len();
    let mut bufs: Vec<Vec<u8>> = (0..N).map(|_| vec![0u8; len + 2 * HEADROOM]).collect();
    let ranges: Vec<_> = (0..N).map(|_| HEADROOM..HEADROOM + len).collect();
    let mut out = vec![Disposition::Consumed; N];
    let mut in_out = vec![Disposition::Consumed; N];
    let mut gro = vec![0u8; N * (len + HEADROOM)];
    let mut gro_ranges = Vec::with_capacity(N);
    let now = pair.now;
    let [a, b] = &mut pair.gw;
    for round in 0..20 {
        for (buf, p) in bufs.iter_mut().zip(&packets) {
            buf[HEADROOM..HEADROOM + len].copy_from_slice(p);
        }
        let before = allocations();
        a.handle_tun_batch(now, &mut bufs, &ranges, &mut out);
        gro_ranges.clear();
        let mut at = 0;
        let mut addrs = None;
        for (local, remote, esp) in sealed_datagrams(&out, &bufs) {
            addrs = Some((local, remote));
            gro[at..at + esp.len()].copy_from_slice(esp);
            gro_ranges.push(at..at + esp.len());
            at += esp.len();
        }
        assert!(
            gro_ranges.iter().all(|r| r.len() == gro_ranges[0].len()),
            "GSO needs equal sizes"
        );
        let (local, remote) = addrs.unwrap();
        b.handle_udp_batch(now, remote, local, &mut gro[..at], &gro_ranges, &mut in_out);
        let after = allocations();
        for (i, d) in in_out.iter().enumerate() {
            let Disposition::WriteTun { data } = d else {
                panic!("round {round}, packet {i}: {d:?}");
            };
            assert_eq!(&gro[data.clone()], &packets[i][..], "packet {i}");
        }
        assert_eq!(after - before, 0, "round {round}: the batch path allocated");
    }
}
