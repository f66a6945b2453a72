//! Outbound SA: encapsulates inner IP packets into ESP (tunnel mode) in the caller's buffer.

use crate::crypt::{CryptJob, Direction};
use crate::sa::{Auth, ESP_HEADER_LEN, TRAILER_LEN};
use crate::{Lifetime, LifetimeState, OutboundState, SaConfig, SaError, SaStats, SealError};
use rampart_crypto::{CipherKey, Rng};
use std::ops::Range;

/// The sending side of a CHILD SA.
///
/// Invariants: `seq` is the last sequence number used (0 = none yet); it only grows and never
/// passes 2^32 - 1 (or 2^64 - 1 with ESN), so an AEAD IV (= the 64-bit sequence number) is never
/// reused under one key.
pub struct OutboundSa {
    spi: u32,
    key: CipherKey,
    esn: bool,
    seq: u64,
    rng: Rng,
    lifetime: Lifetime,
    stats: SaStats,
    #[cfg(test)]
    pub(crate) test_iv: Option<[u8; 8]>,
}

impl OutboundSa {
    /// `rng` provides the CBC IVs; AEAD SAs do not use it.
    pub fn new(cfg: &SaConfig<'_>, rng: Rng) -> Result<OutboundSa, SaError> {
        let key = CipherKey::new(cfg.encr, cfg.encr_key, cfg.integ)?;
        Ok(OutboundSa {
            spi: cfg.spi,
            key,
            esn: cfg.esn,
            seq: 0,
            rng,
            lifetime: cfg.lifetime,
            stats: SaStats::default(),
            #[cfg(test)]
            test_iv: None,
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

    /// The last sequence number used (0 before the first packet).
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    /// Continues after `last_sent` (e.g. an SA taken over from another cluster member).
    /// Never moves backwards: a smaller value is ignored, so IVs cannot repeat.
    pub fn skip_to(&mut self, last_sent: u64) {
        self.seq = self.seq.max(last_sent);
    }

    /// The counters another member needs to continue this SA ([`Self::import_state`]).
    pub fn export_state(&self) -> OutboundState {
        OutboundState {
            next_sequence: self.seq.saturating_add(1),
            packets: self.stats.packets,
            bytes: self.stats.bytes,
        }
    }

    /// Continues an SA exported by another member, on an SA built with the same keys.
    ///
    /// The next sequence number becomes `state.next_sequence + margin` (the margin covers
    /// packets the exporter may have sent after the export) unless this SA is already further:
    /// the counter never moves backwards, so an IV is never used twice under one key. The
    /// lifetime counters continue from the imported totals (they are replaced, not added).
    pub fn import_state(&mut self, state: &OutboundState, margin: u64) {
        let last = state.next_sequence.saturating_sub(1).saturating_add(margin);
        self.seq = self.seq.max(last);
        self.stats.packets = state.packets;
        self.stats.bytes = state.bytes;
    }

    /// Bytes needed before the payload: ESP header + IV (<= [`crate::MAX_HEADROOM`]).
    pub fn headroom(&self) -> usize {
        ESP_HEADER_LEN + self.key.iv_len()
    }

    /// Bytes needed after a payload of `len` bytes: padding, trailer and ICV
    /// (<= [`crate::MAX_TAILROOM`]).
    pub fn tailroom(&self, len: usize) -> usize {
        self.padding(len) + TRAILER_LEN + self.key.icv_len()
    }

    /// Padding so that payload + trailer is a multiple of the cipher block and of 4 bytes.
    fn padding(&self, len: usize) -> usize {
        let align = self.key.block_len().max(4);
        (align - (len + TRAILER_LEN) % align) % align
    }

    /// The SA's key, for running prepared jobs ([`CryptJob::run`]) on other threads.
    pub fn key(&self) -> &CipherKey {
        &self.key
    }

    /// Protects `buf[payload]` (the inner IP packet, next header 4 for IPv4 or 41 for IPv6) in
    /// place and returns the range of the ESP packet in `buf`.
    ///
    /// Writes SPI | seq | IV into the `headroom()` bytes before `payload`, and padding
    /// (1, 2, 3, ...), pad length, next header and ICV into the `tailroom()` bytes after it.
    /// Allocates nothing. The sequence number advances only when a packet is produced.
    pub fn seal(
        &mut self,
        buf: &mut [u8],
        payload: Range<usize>,
        next_header: u8,
    ) -> Result<Range<usize>, SealError> {
        let (range, job) = self.prepare_seal(buf, payload, next_header)?;
        job.run(&self.key, &mut buf[range.clone()])?;
        Ok(range)
    }

    /// Everything of [`Self::seal`] but the cipher call: takes the next sequence number, writes
    /// header, IV and trailer, counts the packet, and returns the ESP packet's range in `buf`
    /// and the job that encrypts it ([`CryptJob::run`] with [`Self::key`], on any thread).
    ///
    /// Invariant: the sequence number is used up here, so a job that is never run costs a
    /// number but can never make two packets share one IV.
    pub fn prepare_seal(
        &mut self,
        buf: &mut [u8],
        payload: Range<usize>,
        next_header: u8,
    ) -> Result<(Range<usize>, CryptJob), SealError> {
        if self.lifetime_state() == LifetimeState::Hard {
            self.stats.expired_drops += 1;
            return Err(SealError::Expired);
        }
        let max_seq = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if self.seq >= max_seq {
            self.stats.exhausted_drops += 1;
            return Err(SealError::SequenceExhausted);
        }
        let range_err = SealError::Range {
            start: payload.start,
            end: payload.end,
            len: buf.len(),
        };
        if payload.start > payload.end || payload.end > buf.len() {
            return Err(range_err);
        }
        let header_len = self.headroom();
        if payload.start < header_len {
            return Err(SealError::Headroom {
                need: header_len,
                have: payload.start,
            });
        }
        let len = payload.len();
        let pad = self.padding(len);
        let tail = self.tailroom(len);
        if buf.len() - payload.end < tail {
            return Err(SealError::Tailroom {
                need: tail,
                have: buf.len() - payload.end,
            });
        }
        let seq = self.seq + 1;
        let start = payload.start - header_len;
        let end = payload.end + tail;
        let packet = &mut buf[start..end];

        let (header, rest) = packet.split_at_mut(ESP_HEADER_LEN);
        header[..4].copy_from_slice(&self.spi.to_be_bytes());
        header[4..].copy_from_slice(&(seq as u32).to_be_bytes());
        let (iv, rest) = rest.split_at_mut(self.key.iv_len());
        let data = &mut rest[..len + pad + TRAILER_LEN];
        let trailer = &mut data[len..];
        for (i, b) in trailer[..pad].iter_mut().enumerate() {
            *b = (i + 1) as u8; // pad <= 15
        }
        trailer[pad] = pad as u8;
        trailer[pad + 1] = next_header;

        let aead = self.key.encr().is_aead();
        if aead {
            // RFC 4106 8.1: the IV must be unique per key; the 64-bit counter is.
            iv.copy_from_slice(&seq.to_be_bytes());
        } else {
            // RFC 3602: CBC IVs must be unpredictable.
            self.rng.fill(iv);
        }
        #[cfg(test)]
        if let Some(forced) = self.test_iv {
            iv.copy_from_slice(&forced[..iv.len().min(8)]);
        }
        let auth = Auth::new(aead, self.esn, self.spi, seq);
        let job = CryptJob::new(
            Direction::Seal,
            self.key.iv_len(),
            len + pad + TRAILER_LEN,
            self.key.icv_len(),
            seq,
            auth,
        );

        self.seq = seq;
        self.stats.packets += 1;
        self.stats.bytes += len as u64;
        Ok((start..end, job))
    }
}

impl std::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("encr", &self.key.encr())
            .field("esn", &self.esn)
            .field("seq", &self.seq)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
