//! The gateway's data path allocates nothing per packet: TUN -> seal -> wire, and wire ->
//! open -> TUN, both with raw ESP and ESP-in-UDP, once the tunnel is up.
//!
//! A counting global allocator counts per thread, so the harness's own allocations on other
//! test threads cannot leak into the measurement.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::{udp_packet, Pair, HEADROOM};
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
