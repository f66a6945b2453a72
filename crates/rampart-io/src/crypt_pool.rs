//! The threads that run a batch's cipher calls (`[tunnel] crypto_threads`).
//!
//! The node prepares every packet of a batch on the event-loop thread (sequence numbers, replay
//! pre-checks, policy, inspection) and hands the cipher jobs to [`CryptPool::run_all`], which
//! cuts them into one chunk per thread, posts one chunk to each worker, runs the first on the
//! calling thread and returns when every chunk is done; the node then finishes the packets in
//! order. Workers touch read-only keys and their chunk's packets only: no lock anywhere.
//!
//! A batch takes tens of microseconds, about what waking a parked thread costs, so a worker
//! that ran a chunk spins for [`SPIN`] before it parks: under load the next batch finds it awake.
//! That spinning is CPU the rest of the machine does not get, which is why the pool is off by
//! default and pays off only with cores to spare.
//!
//! Invariants:
//! - `run_all` returns only after every chunk it posted is done (also when a task or the
//!   caller's own chunk panics: a guard waits in `Drop`), so workers never see a task after the
//!   borrow it came from has ended.
//! - One `run_all` at a time: a call that finds the pool busy (another thread calling) runs its
//!   batch inline instead of waiting.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use rampart_esp::{CryptRunner, CryptTask, Inline};

use crate::IoError;

/// Below this many jobs a batch stays on the calling thread: handing over costs more.
const MIN_PARALLEL: usize = 8;
/// How long a worker waits for the next chunk, spinning, before it parks.
const SPIN: Duration = Duration::from_micros(50);
/// A parked worker wakes this often on its own (a lost wake-up costs at most this).
const PARK: Duration = Duration::from_millis(100);

/// One worker's mailbox.
#[repr(align(64))]
struct Slot {
    /// Bumped by the caller for each posted chunk.
    posted: AtomicU64,
    /// Set to the value of `posted` by the worker when that chunk is done.
    done: AtomicU64,
    /// The posted chunk: written by the caller before `posted` is bumped, read by the worker
    /// after it saw the bump, untouched by either until `done` catches up.
    chunk: UnsafeCell<(*mut CryptTask<'static>, usize)>,
    /// True while the worker is (about to be) parked.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

// SAFETY: `chunk` is handed over through `posted` / `done` (Release / Acquire): only one side
// touches it at a time, as the invariants above state. The tasks it points to are `Send`.
unsafe impl Sync for Slot {}
unsafe impl Send for Slot {}

struct Shared {
    slots: Box<[Slot]>,
    stop: AtomicBool,
}

/// A pool of cipher threads.
pub struct CryptPool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    busy: AtomicBool,
}

impl CryptPool {
    /// Starts `threads` worker threads (at least one), named `rampart-crypt-<n>`.
    pub fn new(threads: usize) -> Result<CryptPool, IoError> {
        let threads = threads.max(1);
        let slots = (0..threads)
            .map(|_| Slot {
                posted: AtomicU64::new(0),
                done: AtomicU64::new(0),
                chunk: UnsafeCell::new((std::ptr::null_mut(), 0)),
                parked: AtomicBool::new(false),
                thread: OnceLock::new(),
            })
            .collect();
        let shared = Arc::new(Shared {
            slots,
            stop: AtomicBool::new(false),
        });
        let mut pool = CryptPool {
            shared: shared.clone(),
            handles: Vec::with_capacity(threads),
            busy: AtomicBool::new(false),
        };
        for index in 0..threads {
            let for_worker = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("rampart-crypt-{index}"))
                .spawn(move || worker(&for_worker, index))
                .map_err(|e| IoError::CryptPool {
                    message: e.to_string(),
                })?;
            let _ = shared.slots[index].thread.set(handle.thread().clone());
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    pub fn threads(&self) -> usize {
        self.shared.slots.len()
    }
}

fn worker(shared: &Shared, index: usize) {
    let slot = &shared.slots[index];
    let mut seen = 0;
    loop {
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            let posted = slot.posted.load(Ordering::SeqCst);
            if posted != seen {
                seen = posted;
                break;
            }
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || idle_since.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            slot.parked.store(true, Ordering::SeqCst);
            // Checked again after announcing the park: a chunk posted before this load is
            // seen here; one posted after it finds `parked` set and unparks us.
            if slot.posted.load(Ordering::SeqCst) == seen && !shared.stop.load(Ordering::SeqCst) {
                std::thread::park_timeout(PARK);
            }
            slot.parked.store(false, Ordering::SeqCst);
            idle_since = Instant::now();
        }
        // SAFETY: the caller wrote `chunk` before bumping `posted` (seen above with SeqCst)
        // and keeps the tasks alive until `done` equals `seen` (invariants of the module).
        let (ptr, len) = unsafe { *slot.chunk.get() };
        if !ptr.is_null() {
            let tasks = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
            if catch_unwind(AssertUnwindSafe(|| {
                tasks.iter_mut().for_each(CryptTask::run)
            }))
            .is_err()
            {
                tracing::error!("a cipher thread panicked in a batch; its packets are dropped");
            }
        }
        slot.done.store(seen, Ordering::Release);
    }
}

/// Waits, also while unwinding, until every posted chunk is done.
struct WaitGuard<'p> {
    slots: &'p [Slot],
    posted: [u64; MAX_THREADS],
    used: usize,
    busy: &'p AtomicBool,
}

/// Most worker threads one pool has (`[tunnel] crypto_threads` allows 64).
const MAX_THREADS: usize = 64;

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        for (slot, &want) in self.slots.iter().zip(&self.posted).take(self.used) {
            let mut spins = 0u32;
            while slot.done.load(Ordering::Acquire) != want {
                spins = spins.wrapping_add(1);
                if spins < 4096 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        self.busy.store(false, Ordering::Release);
    }
}

impl CryptRunner for CryptPool {
    /// Allocates nothing.
    fn run_all(&self, tasks: &mut [CryptTask<'_>]) {
        if tasks.len() < MIN_PARALLEL
            || self
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            Inline.run_all(tasks);
            return;
        }
        let slots = &self.shared.slots[..self.shared.slots.len().min(MAX_THREADS)];
        let chunk = tasks.len().div_ceil(slots.len() + 1);
        let mut chunks = tasks.chunks_mut(chunk);
        let own = chunks.next();
        let mut guard = WaitGuard {
            slots,
            posted: [0; MAX_THREADS],
            used: 0,
            busy: &self.busy,
        };
        for (i, (slot, part)) in slots.iter().zip(chunks).enumerate() {
            let ptr = part.as_mut_ptr().cast::<CryptTask<'static>>();
            // SAFETY: the worker is idle on this slot (`done == posted`, waited for by the
            // previous call's guard), so nobody reads `chunk` while it is written; the guard
            // keeps `tasks` borrowed until the worker is done with it.
            unsafe { *slot.chunk.get() = (ptr, part.len()) };
            let next = slot.posted.load(Ordering::Relaxed) + 1;
            guard.posted[i] = next;
            guard.used = i + 1;
            slot.posted.store(next, Ordering::SeqCst);
            if slot.parked.load(Ordering::SeqCst) {
                if let Some(t) = slot.thread.get() {
                    t.unpark();
                }
            }
        }
        if let Some(own) = own {
            own.iter_mut().for_each(CryptTask::run);
        }
        drop(guard);
    }
}

impl Drop for CryptPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for slot in self.shared.slots.iter() {
            if let Some(t) = slot.thread.get() {
                t.unpark();
            }
        }
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for CryptPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptPool")
            .field("threads", &self.threads())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_crypto::{Encr, Rng};
    use rampart_esp::{InboundSa, Lifetime, OutboundSa, SaConfig, DEFAULT_REPLAY_WINDOW};

    fn sa_config(key: &[u8]) -> SaConfig<'_> {
        SaConfig {
            spi: 0x0102_0304,
            encr: Encr::AesGcm16_256,
            encr_key: key,
            integ: None,
            esn: false,
            replay_window: DEFAULT_REPLAY_WINDOW,
            lifetime: Lifetime::default(),
        }
    }

    /// Seals `n` packets (packet i: 100 + i bytes of value `fill + i`) through `runner`;
    /// returns the buffers and the ESP ranges, after checking every job succeeded.
    fn seal_batch(
        runner: &dyn CryptRunner,
        key: &[u8],
        seed: u8,
        fill: u8,
        n: usize,
    ) -> (Vec<Vec<u8>>, Vec<std::ops::Range<usize>>) {
        let mut out = OutboundSa::new(&sa_config(key), Rng::from_seed([seed; 32])).unwrap();
        let room = rampart_esp::MAX_HEADROOM + rampart_esp::MAX_TAILROOM;
        let mut bufs: Vec<Vec<u8>> = (0..n)
            .map(|i| vec![fill.wrapping_add(i as u8); 100 + i + room])
            .collect();
        let jobs: Vec<_> = bufs
            .iter_mut()
            .enumerate()
            .map(|(i, b)| {
                let payload = rampart_esp::MAX_HEADROOM..rampart_esp::MAX_HEADROOM + 100 + i;
                out.prepare_seal(b, payload, 4).unwrap()
            })
            .collect();
        let mut tasks: Vec<CryptTask<'_>> = bufs
            .iter_mut()
            .zip(&jobs)
            .map(|(b, (r, job))| CryptTask::new(out.key(), &mut b[r.clone()], *job))
            .collect();
        runner.run_all(&mut tasks);
        assert!(tasks.iter().all(|t| t.result.is_ok()), "n = {n}");
        drop(tasks);
        (bufs, jobs.into_iter().map(|(r, _)| r).collect())
    }

    /// Jobs prepared in order and run on the pool open to the original packets, on any split
    /// (fewer jobs than MIN_PARALLEL, one per thread, many per thread), also after the workers
    /// parked between batches.
    #[test]
    fn pool_runs_every_job_once() {
        let key = [9u8; 36];
        let pool = CryptPool::new(3).unwrap();
        assert_eq!(pool.threads(), 3);
        for (round, n) in [1, 7, 8, 9, 64, 64, 10].into_iter().enumerate() {
            if round == 5 {
                std::thread::sleep(SPIN * 20);
            }
            let (mut bufs, ranges) = seal_batch(&pool, &key, 3, 0, n);
            let mut inb = InboundSa::new(&sa_config(&key)).unwrap();
            for (i, (b, r)) in bufs.iter_mut().zip(ranges).enumerate() {
                let opened = inb.open(b, r).unwrap();
                assert_eq!(&b[opened.payload], &vec![i as u8; 100 + i][..], "n = {n}");
            }
        }
    }

    /// Two threads calling at once: one gets the pool, the other runs inline; both complete.
    #[test]
    fn concurrent_callers_both_complete() {
        let key = [5u8; 36];
        let pool = CryptPool::new(2).unwrap();
        std::thread::scope(|s| {
            for t in 0..2u8 {
                let (pool, key) = (&pool, &key);
                s.spawn(move || {
                    for _ in 0..50 {
                        seal_batch(pool, key, t, t, 32);
                    }
                });
            }
        });
    }
}
