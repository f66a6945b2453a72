//! What the cipher threads (`[tunnel] crypto_threads`) buy: one batch of 64 prepared ESP seal
//! jobs (AES-256-GCM, 1400-byte packets, as one 64 KB TUN read yields) run on the calling thread
//! (`inline`) and on a pool of 1 and 2 extra threads, in the same run.
//!
//! `cargo bench -p rampart-io --bench crypt_pool`. On an otherwise idle machine the pool's row
//! shows the batch's time divided across the cores; on a machine whose cores are all busy (the
//! two-core netns throughput benchmark, where the four endpoints share them) it cannot.

use divan::Bencher;
use rampart_crypto::{Encr, Rng};
use rampart_esp::{
    CryptJob, CryptRunner, CryptTask, Inline, Lifetime, OutboundSa, SaConfig,
    DEFAULT_REPLAY_WINDOW, MAX_HEADROOM, MAX_TAILROOM,
};
use rampart_io::CryptPool;

const BATCH: usize = 64;
const SIZE: usize = 1400;

fn main() {
    divan::main();
}

/// A prepared seal job: the ESP packet's range in its buffer and the job.
type Prepared = (std::ops::Range<usize>, CryptJob);

/// A batch of prepared seal jobs and their buffers. Re-running a seal job re-encrypts the
/// ciphertext: the same work, fine for timing.
fn prepared() -> (OutboundSa, Vec<Vec<u8>>, Vec<Prepared>) {
    let key = [0x42u8; 36];
    let cfg = SaConfig {
        spi: 0x0102_0304,
        encr: Encr::AesGcm16_256,
        encr_key: &key,
        integ: None,
        esn: false,
        replay_window: DEFAULT_REPLAY_WINDOW,
        lifetime: Lifetime::default(),
    };
    let mut sa = OutboundSa::new(&cfg, Rng::from_seed([1; 32])).expect("valid SA");
    let mut bufs: Vec<Vec<u8>> = (0..BATCH)
        .map(|_| vec![0x5a; MAX_HEADROOM + SIZE + MAX_TAILROOM])
        .collect();
    let jobs = bufs
        .iter_mut()
        .map(|b| {
            sa.prepare_seal(b, MAX_HEADROOM..MAX_HEADROOM + SIZE, 4)
                .expect("room")
        })
        .collect();
    (sa, bufs, jobs)
}

fn run(bencher: Bencher, runner: &dyn CryptRunner) {
    let (sa, mut bufs, jobs) = prepared();
    bencher
        .counter(divan::counter::BytesCount::new(BATCH * SIZE))
        .bench_local(|| {
            let mut tasks: [CryptTask<'_>; BATCH] = std::array::from_fn(|_| CryptTask::idle());
            for ((task, buf), (range, job)) in tasks.iter_mut().zip(bufs.iter_mut()).zip(&jobs) {
                *task = CryptTask::new(sa.key(), &mut buf[range.clone()], *job);
            }
            runner.run_all(&mut tasks);
            divan::black_box(tasks[BATCH - 1].result.is_ok())
        });
}

#[divan::bench]
fn inline(bencher: Bencher) {
    run(bencher, &Inline);
}

#[divan::bench(args = [1, 2])]
fn pool(bencher: Bencher, threads: usize) {
    let pool = CryptPool::new(threads).expect("threads");
    run(bencher, &pool);
}
