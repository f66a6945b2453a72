//! Fuzzes the inbound ESP path: arbitrary bytes through `udp_encap::classify` and
//! `InboundSa::open`, and sealed-then-mutated packets so the code after authentication
//! (padding checks, replay commit) is reached too. Nothing may panic.
//!
//! Input: byte 0 selects the algorithm / ESN / replay window, byte 1 the mode, the rest is data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_crypto::{Encr, Integ, Rng};
use rampart_esp::udp_encap::{self, Classified};
use rampart_esp::{InboundSa, Lifetime, OutboundSa, SaConfig, MAX_HEADROOM, MAX_TAILROOM};

const KEY: [u8; 36] = [0x11; 36];
const INTEG_KEY: [u8; 32] = [0x22; 32];

fn config(selector: u8) -> SaConfig<'static> {
    let encr = Encr::ALL[usize::from(selector) % Encr::ALL.len()];
    SaConfig {
        spi: 0x0102_0304,
        encr,
        encr_key: &KEY[..encr.key_len() + encr.salt_len()],
        integ: (!encr.is_aead()).then_some((Integ::HmacSha256_128, &INTEG_KEY[..])),
        esn: selector & 0x08 != 0,
        replay_window: if selector & 0x10 != 0 { 0 } else { 64 },
        lifetime: Lifetime {
            hard_packets: Some(1 << 20),
            ..Lifetime::default()
        },
    }
}

fuzz_target!(|input: &[u8]| {
    let [selector, mode, data @ ..] = input else {
        return;
    };
    let cfg = config(*selector);
    let Ok(mut inbound) = InboundSa::new(&cfg) else {
        return;
    };

    if mode & 1 == 0 {
        // Raw bytes as they would arrive on the NAT-T port, and as raw ESP.
        let mut buf = data.to_vec();
        if let Classified::Esp(range) = udp_encap::classify(&buf) {
            let _ = inbound.open(&mut buf, range);
        }
        let len = buf.len();
        let mut buf = data.to_vec();
        let _ = inbound.open(&mut buf, 0..len);
        // Out-of-range requests must be errors, not panics.
        let _ = inbound.open(&mut buf, len.saturating_sub(3)..len + 5);
        return;
    }

    // Seal `data` as a payload, then open it intact (must round-trip) and mutated.
    let Ok(mut outbound) = OutboundSa::new(&cfg, Rng::from_seed([7; 32])) else {
        return;
    };
    if mode & 2 != 0 {
        outbound.skip_to(0xffff_fff0);
    }
    let mut buf = vec![0u8; MAX_HEADROOM + data.len() + MAX_TAILROOM];
    buf[MAX_HEADROOM..MAX_HEADROOM + data.len()].copy_from_slice(data);
    let Ok(esp) = outbound.seal(&mut buf, MAX_HEADROOM..MAX_HEADROOM + data.len(), 4) else {
        return;
    };
    let mut mutated = buf.clone();
    if let Some(first) = data.first() {
        let at = esp.start + usize::from(*first) % esp.len();
        mutated[at] ^= mode | 1;
        let _ = inbound.open(&mut mutated, esp.clone());
    }
    // A fresh receiver starts at sequence 0: with ESN it cannot place 0xffff_fff1 (that would
    // be subspace -1), so only the other cases must open.
    if mode & 2 == 0 || !cfg.esn {
        let opened = inbound
            .open(&mut buf, esp)
            .expect("a freshly sealed packet must open");
        assert_eq!(&buf[opened.payload], data);
    }
});
