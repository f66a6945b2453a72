//! SA configuration and the parts shared by both directions.

use crate::Lifetime;
use rampart_crypto::{Encr, Integ};

/// ESP header: SPI (4) + low 32 bits of the sequence number (4).
pub(crate) const ESP_HEADER_LEN: usize = 8;
/// Pad Length + Next Header.
pub(crate) const TRAILER_LEN: usize = 2;

/// Everything needed to build one direction of a CHILD SA.
#[derive(Debug, Clone, Copy)]
pub struct SaConfig<'a> {
    pub spi: u32,
    pub encr: Encr,
    /// AEAD: key || 4-byte salt; CBC: the AES key.
    pub encr_key: &'a [u8],
    /// `None` for AEAD; `Some` for AES-CBC.
    pub integ: Option<(Integ, &'a [u8])>,
    /// 64-bit Extended Sequence Numbers negotiated (RFC 4303 2.2.1).
    pub esn: bool,
    /// Anti-replay window in packets: 0 = off, else a multiple of 64 up to 65536 (inbound only).
    pub replay_window: u32,
    pub lifetime: Lifetime,
}

/// Builds the data the ICV covers besides the ciphertext, without allocating.
///
/// AEAD (RFC 4106 5 / RFC 7634 2.1): AAD = SPI || seq_lo, or SPI || seq_hi || seq_lo with ESN.
/// CBC + HMAC (RFC 4303 2.2.1 / 3.3.2.1): AAD = the ESP header, trailer = seq_hi with ESN.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Auth {
    aad: [u8; 12],
    aad_len: usize,
    trailer: [u8; 4],
    trailer_len: usize,
}

impl Auth {
    pub(crate) fn new(aead: bool, esn: bool, spi: u32, seq: u64) -> Auth {
        let spi = spi.to_be_bytes();
        let hi = ((seq >> 32) as u32).to_be_bytes();
        let lo = (seq as u32).to_be_bytes();
        let mut a = Auth {
            aad: [0; 12],
            aad_len: 8,
            trailer: [0; 4],
            trailer_len: 0,
        };
        a.aad[..4].copy_from_slice(&spi);
        if aead && esn {
            a.aad[4..8].copy_from_slice(&hi);
            a.aad[8..12].copy_from_slice(&lo);
            a.aad_len = 12;
        } else {
            a.aad[4..8].copy_from_slice(&lo);
            if esn {
                a.trailer = hi;
                a.trailer_len = 4;
            }
        }
        a
    }

    pub(crate) fn aad(&self) -> &[u8] {
        &self.aad[..self.aad_len]
    }

    pub(crate) fn trailer(&self) -> &[u8] {
        &self.trailer[..self.trailer_len]
    }
}
