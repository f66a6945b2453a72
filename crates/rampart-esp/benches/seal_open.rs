//! Per-packet cost of ESP `seal` and `open` beside the bare AEAD call they wrap.
//!
//! `cargo bench -p rampart-esp --bench seal_open`. For each AEAD and payload size (64, 512, 1400
//! bytes) it times:
//! - `esp_seal`: `OutboundSa::seal` (ESP header, IV, padding, trailer, AEAD, ICV) in place;
//! - `aead_seal`: aws-lc-rs `LessSafeKey::seal_in_place_separate_tag` over the same bytes
//!   (payload + trailer), 8-byte AAD: the floor `esp_seal` is measured against;
//! - `esp_open` / `aead_open`: the same for the receiving side (`InboundSa::open` also does the
//!   anti-replay check and trailer parsing).
//!
//! The `AllocProfiler` counts allocations inside the timed code: the `esp_*` rows must show
//! none (the test `tests/no_alloc.rs` asserts the same for every algorithm).

use aws_lc_rs::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM, CHACHA20_POLY1305,
};
use divan::{black_box, AllocProfiler, Bencher};
use rampart_crypto::{Encr, Rng};
use rampart_esp::{InboundSa, Lifetime, OutboundSa, SaConfig, MAX_HEADROOM, MAX_TAILROOM};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

const SIZES: [usize; 3] = [64, 512, 1400];

fn main() {
    divan::main();
}

#[derive(Clone, Copy, Debug)]
enum Aead {
    AesGcm128,
    AesGcm256,
    ChaCha20Poly1305,
}

impl Aead {
    const ALL: [Aead; 3] = [Aead::AesGcm128, Aead::AesGcm256, Aead::ChaCha20Poly1305];

    fn encr(self) -> Encr {
        match self {
            Aead::AesGcm128 => Encr::AesGcm16_128,
            Aead::AesGcm256 => Encr::AesGcm16_256,
            Aead::ChaCha20Poly1305 => Encr::ChaCha20Poly1305,
        }
    }

    fn bare_key(self) -> LessSafeKey {
        let alg = match self {
            Aead::AesGcm128 => &AES_128_GCM,
            Aead::AesGcm256 => &AES_256_GCM,
            Aead::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        };
        let key = vec![0x42u8; alg.key_len()];
        LessSafeKey::new(UnboundKey::new(alg, &key).expect("valid key length"))
    }
}

impl std::fmt::Display for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A matching outbound/inbound SA pair for `aead`, no lifetime limits, 4096-packet window.
fn sa_pair(aead: Aead) -> (OutboundSa, InboundSa) {
    let encr = aead.encr();
    let key = vec![0x24u8; encr.key_len() + encr.salt_len()];
    let cfg = SaConfig {
        spi: 0x1000,
        encr,
        encr_key: &key,
        integ: None,
        esn: true,
        replay_window: 4096,
        lifetime: Lifetime::default(),
    };
    let out = OutboundSa::new(&cfg, Rng::from_seed([7; 32])).expect("valid SA");
    let inb = InboundSa::new(&cfg).expect("valid SA");
    (out, inb)
}

fn buffer(len: usize) -> Vec<u8> {
    vec![0x5au8; MAX_HEADROOM + len + MAX_TAILROOM]
}

/// Bytes the AEAD covers in ESP for a `len`-byte payload: payload, padding to 4, 2-byte trailer.
fn aead_len(len: usize) -> usize {
    (len + 2).div_ceil(4) * 4
}

#[divan::bench(args = Aead::ALL, consts = SIZES)]
fn esp_seal<const N: usize>(bencher: Bencher, aead: Aead) {
    let (mut out, _) = sa_pair(aead);
    let mut buf = buffer(N);
    bencher
        .counter(divan::counter::BytesCount::new(N))
        .bench_local(|| {
            black_box(
                out.seal(black_box(&mut buf), MAX_HEADROOM..MAX_HEADROOM + N, 4)
                    .expect("seal"),
            )
        });
}

#[divan::bench(args = Aead::ALL, consts = SIZES)]
fn aead_seal<const N: usize>(bencher: Bencher, aead: Aead) {
    let key = aead.bare_key();
    let mut buf = buffer(N);
    let aad = [0u8; 8];
    let mut counter = 0u64;
    bencher
        .counter(divan::counter::BytesCount::new(N))
        .bench_local(|| {
            counter += 1;
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            let data = &mut buf[MAX_HEADROOM..MAX_HEADROOM + aead_len(N)];
            black_box(
                key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(black_box(aad)),
                    black_box(data),
                )
                .expect("seal"),
            )
        });
}

#[divan::bench(args = Aead::ALL, consts = SIZES)]
fn esp_open<const N: usize>(bencher: Bencher, aead: Aead) {
    let (mut out, mut inb) = sa_pair(aead);
    bencher
        .counter(divan::counter::BytesCount::new(N))
        .with_inputs(|| {
            let mut buf = buffer(N);
            let esp = out
                .seal(&mut buf, MAX_HEADROOM..MAX_HEADROOM + N, 4)
                .expect("seal");
            (buf, esp)
        })
        .bench_local_refs(|(buf, esp)| black_box(inb.open(buf, esp.clone()).expect("open")));
}

#[divan::bench(args = Aead::ALL, consts = SIZES)]
fn aead_open<const N: usize>(bencher: Bencher, aead: Aead) {
    let key = aead.bare_key();
    let aad = [0u8; 8];
    let mut sealed = buffer(N);
    let len = aead_len(N);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([1; 12]),
            Aad::from(aad),
            &mut sealed[..len],
        )
        .expect("seal");
    sealed[len..len + 16].copy_from_slice(tag.as_ref());
    bencher
        .counter(divan::counter::BytesCount::new(N))
        .with_inputs(|| sealed.clone())
        .bench_local_refs(|buf| {
            black_box(
                key.open_in_place(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::from(aad),
                    &mut buf[..len + 16],
                )
                .expect("open")
                .len(),
            )
        });
}
