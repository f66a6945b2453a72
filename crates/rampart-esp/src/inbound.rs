//! Inbound SA: authenticates, replay-checks and decapsulates ESP packets in place.

use crate::crypt::{CryptJob, Direction};
use crate::replay::{ReplayVerdict, ReplayWindow};
use crate::sa::{Auth, ESP_HEADER_LEN, TRAILER_LEN};
use crate::{InboundState, Lifetime, LifetimeState, OpenError, SaConfig, SaError, SaStats};
use rampart_crypto::{CipherKey, CryptoError};
use std::ops::Range;

/// A successfully opened packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The inner payload (the tunnelled IP packet) inside the caller's buffer.
    pub payload: Range<usize>,
    /// 4 = IPv4, 41 = IPv6, 59 = dummy packet (RFC 4303 2.6), anything else is the caller's call.
    pub next_header: u8,
    /// The full (ESN-reconstructed) sequence number.
    pub seq: u64,
}

/// The receiving side of a CHILD SA.
///
/// Processing order of [`open`](Self::open): parse, replay pre-check, authenticate and decrypt,
/// then record the sequence number. Only authenticated packets move the replay window, so a
/// forged packet can neither advance it nor burn a sequence number.
pub struct InboundSa {
    spi: u32,
    key: CipherKey,
    esn: bool,
    window: ReplayWindow,
    lifetime: Lifetime,
    stats: SaStats,
}

impl InboundSa {
    pub fn new(cfg: &SaConfig<'_>) -> Result<InboundSa, SaError> {
        let window =
            ReplayWindow::new(cfg.replay_window).ok_or(SaError::ReplayWindow(cfg.replay_window))?;
        let key = CipherKey::new(cfg.encr, cfg.encr_key, cfg.integ)?;
        Ok(InboundSa {
            spi: cfg.spi,
            key,
            esn: cfg.esn,
            window,
            lifetime: cfg.lifetime,
            stats: SaStats::default(),
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn stats(&self) -> SaStats {
        self.stats
    }

    pub fn lifetime_state(&self) -> LifetimeState {
        self.lifetime.state(self.stats.packets, self.stats.bytes)
    }

    /// Highest authenticated sequence number (0 before the first packet).
    pub fn highest_sequence(&self) -> u64 {
        self.window.top()
    }

    /// The counters and the replay window another member needs to continue this SA
    /// ([`Self::import_state`]).
    pub fn export_state(&self) -> InboundState {
        InboundState {
            highest: self.window.top(),
            window: self.window.export_bits(),
            packets: self.stats.packets,
            bytes: self.stats.bytes,
            replay_drops: self.stats.replay_drops,
            auth_failures: self.stats.auth_failures,
        }
    }

    /// Continues an SA exported by another member, on an SA built with the same keys.
    ///
    /// The replay window is merged: the highest sequence number becomes the larger of both and
    /// every number either window saw stays refused, so an import never reopens a replay (with
    /// ESN the high half is inferred from the imported top from now on). The counters are
    /// replaced by the imported ones, so lifetimes trigger at the exporter's totals.
    pub fn import_state(&mut self, state: &InboundState) {
        self.window.import_bits(state.highest, &state.window);
        self.stats.packets = state.packets;
        self.stats.bytes = state.bytes;
        self.stats.replay_drops = state.replay_drops;
        self.stats.auth_failures = state.auth_failures;
    }

    /// Smallest ESP packet this SA can accept: header, IV, one block (CBC) or the two trailer
    /// bytes (AEAD), and the ICV.
    pub fn min_packet_len(&self) -> usize {
        ESP_HEADER_LEN
            + self.key.iv_len()
            + self.key.block_len().max(TRAILER_LEN)
            + self.key.icv_len()
    }

    /// The SA's key, for running prepared jobs ([`CryptJob::run`]) on other threads.
    pub fn key(&self) -> &CipherKey {
        &self.key
    }

    /// Opens the ESP packet `buf[packet]` in place. On success the inner payload is plaintext
    /// at `Opened::payload`. Allocates nothing and never panics, whatever the bytes.
    ///
    /// On error the packet must be dropped; its ciphertext area may have been zeroed (AEAD
    /// authentication failure, see [`CipherKey::open`]) but never holds unauthenticated plaintext.
    pub fn open(&mut self, buf: &mut [u8], packet: Range<usize>) -> Result<Opened, OpenError> {
        let job = self.prepare_open(buf, packet.clone())?;
        let crypted = job.run(&self.key, &mut buf[packet.clone()]);
        self.finish_open(buf, packet, &job, crypted)
    }

    /// The checks of [`Self::open`] that need no key: lengths, SPI, lifetime, the sequence
    /// number (inferred with ESN) and a replay pre-check that records nothing. Returns the job
    /// that authenticates and decrypts `buf[packet]` ([`CryptJob::run`] on that range, with
    /// [`Self::key`], on any thread); [`Self::finish_open`] completes it.
    pub fn prepare_open(
        &mut self,
        buf: &[u8],
        packet: Range<usize>,
    ) -> Result<CryptJob, OpenError> {
        let range_err = OpenError::Range {
            start: packet.start,
            end: packet.end,
            len: buf.len(),
        };
        let Some(bytes) = buf.get(packet) else {
            self.stats.malformed += 1;
            return Err(range_err);
        };
        let iv_len = self.key.iv_len();
        let icv_len = self.key.icv_len();
        let min = self.min_packet_len();
        if bytes.len() < min {
            self.stats.malformed += 1;
            return Err(OpenError::Truncated {
                len: bytes.len(),
                min,
            });
        }
        let ct_len = bytes.len() - ESP_HEADER_LEN - iv_len - icv_len;
        let block = self.key.block_len();
        if !ct_len.is_multiple_of(block) {
            self.stats.malformed += 1;
            return Err(OpenError::NotBlockAligned { len: ct_len, block });
        }
        let spi = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let seq_lo = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if spi != self.spi {
            self.stats.malformed += 1;
            return Err(OpenError::SpiMismatch {
                expected: self.spi,
                got: spi,
            });
        }
        if self.lifetime_state() == LifetimeState::Hard {
            self.stats.expired_drops += 1;
            return Err(OpenError::Expired);
        }
        let Some(seq) = self.window.infer(seq_lo, self.esn) else {
            self.stats.malformed += 1;
            return Err(OpenError::InvalidSequence);
        };
        self.replay_check(seq)?;
        let auth = Auth::new(self.key.encr().is_aead(), self.esn, spi, seq);
        Ok(CryptJob::new(
            Direction::Open,
            iv_len,
            ct_len,
            icv_len,
            seq,
            auth,
        ))
    }

    /// Completes a job of [`Self::prepare_open`] for `buf[packet]` after it ran with `crypted`
    /// as its result: counts an authentication failure, or records the sequence number (checked
    /// against the window again: an earlier packet of the same batch may have taken it) and
    /// returns the inner payload.
    ///
    /// Invariant: only an authenticated packet moves the replay window, and each sequence number
    /// is accepted at most once however the batch was split across threads.
    pub fn finish_open(
        &mut self,
        buf: &[u8],
        packet: Range<usize>,
        job: &CryptJob,
        crypted: Result<(), CryptoError>,
    ) -> Result<Opened, OpenError> {
        match crypted {
            Ok(()) => {}
            Err(CryptoError::AuthenticationFailed) => {
                self.stats.auth_failures += 1;
                return Err(OpenError::AuthenticationFailed);
            }
            Err(_) => {
                // The prepare step validated every length, so this is unreachable in practice.
                self.stats.malformed += 1;
                return Err(OpenError::AuthenticationFailed);
            }
        }
        let seq = job.seq();
        self.replay_check(seq)?;
        self.window.commit(seq);

        let iv_len = self.key.iv_len();
        let ct_len = job.len() - ESP_HEADER_LEN - iv_len - self.key.icv_len();
        let data_start = packet.start + ESP_HEADER_LEN + iv_len;
        let Some(data) = buf.get(data_start..data_start + ct_len) else {
            self.stats.malformed += 1;
            return Err(OpenError::Range {
                start: packet.start,
                end: packet.end,
                len: buf.len(),
            });
        };
        // ct_len >= 2 (min_packet_len), so these indices exist.
        let pad_len = usize::from(data[ct_len - 2]);
        let next_header = data[ct_len - 1];
        let Some(payload_len) = ct_len.checked_sub(TRAILER_LEN + pad_len) else {
            self.stats.malformed += 1;
            return Err(OpenError::BadPadding);
        };
        // RFC 4303 2.4: the default padding is 1, 2, 3, ...; we only emit and accept that.
        let padding_ok = data[payload_len..ct_len - TRAILER_LEN]
            .iter()
            .enumerate()
            .all(|(i, &b)| usize::from(b) == i + 1);
        if !padding_ok {
            self.stats.malformed += 1;
            return Err(OpenError::BadPadding);
        }
        self.stats.packets += 1;
        self.stats.bytes += payload_len as u64;
        Ok(Opened {
            payload: data_start..data_start + payload_len,
            next_header,
            seq,
        })
    }

    fn replay_check(&mut self, seq: u64) -> Result<(), OpenError> {
        self.window.check(seq).map_err(|verdict| {
            self.stats.replay_drops += 1;
            match verdict {
                ReplayVerdict::Duplicate => OpenError::Replayed(seq),
                ReplayVerdict::TooOld => OpenError::TooOld(seq),
            }
        })
    }

    #[cfg(test)]
    pub(crate) fn set_highest_for_test(&mut self, top: u64) {
        self.window.set_top(top);
    }
}

impl std::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("encr", &self.key.encr())
            .field("esn", &self.esn)
            .field("highest", &self.window.top())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
