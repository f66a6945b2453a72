//! The threads that run a batch's cipher calls (`[tunnel] crypto_threads`).
//!
//! The node prepares every packet of a batch on the event-loop thread (sequence numbers, replay
//! pre-checks, policy, inspection) and hands the cipher jobs to [`CryptPool::run_all`], which
//! cuts them into one chunk per thread, runs one chunk on the calling thread and the others on
//! the pool, and returns when all are done; the node then finishes the packets in order. The
//! threads touch read-only keys and each packet's own bytes only: no lock, no shared counter.

use rampart_esp::{CryptRunner, CryptTask, Inline};

use crate::IoError;

/// Below this many jobs a batch stays on the calling thread: waking a thread costs more.
const MIN_PARALLEL: usize = 8;

/// A pool of cipher threads.
pub struct CryptPool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl CryptPool {
    /// Starts `threads` threads (at least one), named `rampart-crypt-<n>`.
    pub fn new(threads: usize) -> Result<CryptPool, IoError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("rampart-crypt-{i}"))
            .build()
            .map_err(|e| IoError::CryptPool {
                message: e.to_string(),
            })?;
        Ok(CryptPool { pool, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl CryptRunner for CryptPool {
    /// Allocates one small job record per pool thread and batch (rayon's spawn), none per packet.
    fn run_all(&self, tasks: &mut [CryptTask<'_>]) {
        if tasks.len() < MIN_PARALLEL {
            Inline.run_all(tasks);
            return;
        }
        let chunk = tasks.len().div_ceil(self.threads + 1);
        self.pool.in_place_scope(|scope| {
            let mut chunks = tasks.chunks_mut(chunk);
            let own = chunks.next();
            for part in chunks {
                scope.spawn(move |_| part.iter_mut().for_each(CryptTask::run));
            }
            if let Some(own) = own {
                own.iter_mut().for_each(CryptTask::run);
            }
        });
    }
}

impl std::fmt::Debug for CryptPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptPool")
            .field("threads", &self.threads)
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

    /// Jobs prepared in order and run on the pool open to the original packets, on any split:
    /// fewer jobs than MIN_PARALLEL, one per thread, and many per thread.
    #[test]
    fn pool_runs_every_job_once() {
        let key = [9u8; 36];
        let pool = CryptPool::new(3).unwrap();
        assert_eq!(pool.threads(), 3);
        for n in [1, 7, 8, 9, 64] {
            let mut out = OutboundSa::new(&sa_config(&key), Rng::from_seed([3; 32])).unwrap();
            let mut inb = InboundSa::new(&sa_config(&key)).unwrap();
            let room = rampart_esp::MAX_HEADROOM + rampart_esp::MAX_TAILROOM;
            let mut bufs: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 100 + i + room]).collect();
            let payload = |i: usize| rampart_esp::MAX_HEADROOM..rampart_esp::MAX_HEADROOM + 100 + i;
            let jobs: Vec<_> = bufs
                .iter_mut()
                .enumerate()
                .map(|(i, b)| out.prepare_seal(b, payload(i), 4).unwrap())
                .collect();
            let mut tasks: Vec<CryptTask<'_>> = bufs
                .iter_mut()
                .zip(&jobs)
                .map(|(b, (r, job))| CryptTask::new(out.key(), &mut b[r.clone()], *job))
                .collect();
            pool.run_all(&mut tasks);
            assert!(tasks.iter().all(|t| t.result.is_ok()), "n = {n}");
            drop(tasks);
            for (i, (b, (r, _))) in bufs.iter_mut().zip(&jobs).enumerate() {
                let opened = inb.open(b, r.clone()).unwrap();
                assert_eq!(&b[opened.payload], &vec![i as u8; 100 + i][..], "n = {n}");
            }
        }
    }
}
