//! `Mep::resolve` does not allocate once a connection is bound (counted by a global
//! allocator wrapper, per thread).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::{config, flow, Sim, G};
use rampart_mep::{GroupKind, Method};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn resolve_of_a_bound_connection_does_not_allocate() {
    for (method, kind, levels) in [
        (
            Method::FirstToRespond,
            GroupKind::Explicit,
            Default::default(),
        ),
        (Method::Random, GroupKind::Explicit, Default::default()),
        (Method::ByVpnDomain, GroupKind::Explicit, Default::default()),
        (
            Method::PriorityList,
            GroupKind::Explicit,
            [vec![1], vec![0, 2], vec![]],
        ),
        (
            Method::PrimaryBackup,
            GroupKind::ImplicitPrimaryBackup,
            [vec![0], vec![1, 2], vec![]],
        ),
        (
            Method::FirstToRespond,
            GroupKind::ImplicitOverlap,
            Default::default(),
        ),
    ] {
        let mut sim = Sim::new(config(3, method, kind, levels));
        sim.run(Duration::from_secs(2));
        let flows: Vec<_> = (0..100).map(|h| flow(h, 7)).collect();
        let binding = allocs();
        for f in &flows {
            assert!(sim.mep.resolve(sim.now, G, f).new);
        }
        // The counter works: binding 100 connections grew the table.
        assert!(allocs() > binding);
        let now = sim.now;
        let before = allocs();
        for _ in 0..10 {
            for f in &flows {
                assert!(!sim.mep.resolve(now, G, f).new);
            }
        }
        assert_eq!(allocs() - before, 0, "{method:?}");
    }
}
