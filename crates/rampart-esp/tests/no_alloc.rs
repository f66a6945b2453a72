//! `seal` and `open` must not allocate: counted with a global allocator (this thread only).

use rampart_crypto::{Encr, Integ, Rng};
use rampart_esp::{InboundSa, Lifetime, OutboundSa, SaConfig, MAX_HEADROOM, MAX_TAILROOM};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // try_with: the thread-local may already be gone while a thread shuts down.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<T>(f: impl FnOnce() -> T) -> (T, u64) {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    (r, ALLOCATIONS.with(|a| a.get()))
}

#[test]
fn seal_and_open_allocate_nothing() {
    // The counter itself must work, or a zero below would prove nothing.
    let (_, n) = counted(|| std::hint::black_box(vec![1u8; 10]));
    assert!(n >= 1);

    let mut rng = Rng::from_seed([42; 32]);
    for encr in Encr::ALL {
        for esn in [false, true] {
            let mut key = vec![0u8; encr.key_len() + encr.salt_len()];
            rng.fill(&mut key);
            let integ_key = [7u8; 32];
            let cfg = SaConfig {
                spi: 0xabcd,
                encr,
                encr_key: &key,
                integ: (!encr.is_aead()).then_some((Integ::HmacSha256_128, &integ_key[..])),
                esn,
                replay_window: 4096,
                lifetime: Lifetime {
                    soft_bytes: Some(1 << 40),
                    ..Lifetime::default()
                },
            };
            let mut out = OutboundSa::new(&cfg, rng.fork()).unwrap();
            let mut inb = InboundSa::new(&cfg).unwrap();
            let mut buf = vec![0u8; MAX_HEADROOM + 1500 + MAX_TAILROOM];
            let mut tampered = buf.clone();
            let ((), n) = counted(|| {
                for len in [0usize, 1, 20, 333, 1400, 1500] {
                    let range = MAX_HEADROOM..MAX_HEADROOM + len;
                    let esp = out.seal(&mut buf, range.clone(), 4).unwrap();
                    tampered.copy_from_slice(&buf);
                    tampered[esp.end - 1] ^= 1;
                    assert!(inb.open(&mut tampered, esp.clone()).is_err());
                    let opened = inb.open(&mut buf, esp.clone()).unwrap();
                    assert_eq!(opened.payload, range);
                    assert!(inb.open(&mut buf, esp).is_err()); // replay (buffer now plaintext)
                    let _ = rampart_esp::udp_encap::classify(&buf);
                }
            });
            assert_eq!(n, 0, "{encr} esn={esn}: {n} allocations on the data path");
        }
    }
}
