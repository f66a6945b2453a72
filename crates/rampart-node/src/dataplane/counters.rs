//! The data plane's counters, and the one place a drop is counted.

use rampart_esp::{OpenError, SealError};
use serde::{Deserialize, Serialize};

use crate::DropReason;

/// Data-plane counters of one node (shown by `rampart status`).
///
/// Names are stable: they are the keys of the status JSON. Counters added later carry
/// `#[serde(default)]` so an older snapshot still reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DataPlaneCounters {
    pub tun_packets_in: u64,
    pub tun_packets_out: u64,
    pub esp_packets_in: u64,
    pub esp_packets_out: u64,
    pub dropped_no_policy: u64,
    /// No usable outbound SA: none installed, or its hard lifetime or sequence space is used up.
    pub dropped_no_sa: u64,
    pub dropped_unknown_spi: u64,
    pub dropped_auth: u64,
    pub dropped_replay: u64,
    pub dropped_malformed: u64,
    pub dropped_policy_mismatch: u64,
    /// Dropped or rejected by stateful inspection (details: `rampart conn stats`).
    #[serde(default)]
    pub dropped_firewall: u64,
    /// Packets the outbound SA refused to seal, by reason (each also counts in `dropped_no_sa`
    /// or `dropped_malformed`, see [`seal_drop_reason`]).
    #[serde(default)]
    pub seal_expired: u64,
    #[serde(default)]
    pub seal_sequence_exhausted: u64,
    /// The packet's buffer lacked the range, headroom or tailroom ESP needs.
    #[serde(default)]
    pub seal_no_room: u64,
    #[serde(default)]
    pub seal_crypto: u64,
    /// TCP SYN and SYN-ACK whose MSS option was lowered entering or leaving a remote-access
    /// tunnel.
    #[serde(default)]
    pub mss_clamped: u64,
    /// Path-MTU probes (ESP next header 253) answered with an ack.
    #[serde(default)]
    pub pmtu_probes_answered: u64,
    /// Next-header-253 payloads refused (malformed, no room for the ack).
    #[serde(default)]
    pub pmtu_probes_refused: u64,
    /// ICMP "fragmentation needed" / "packet too big" reports that named a tunnel's peer.
    #[serde(default)]
    pub pmtu_icmp_too_big: u64,
}

impl DataPlaneCounters {
    /// Counts a dropped packet under `reason`.
    pub(crate) fn drop(&mut self, reason: DropReason) {
        match reason {
            DropReason::Malformed => self.dropped_malformed += 1,
            DropReason::NoPolicy => self.dropped_no_policy += 1,
            DropReason::NoSa | DropReason::Lifetime => self.dropped_no_sa += 1,
            DropReason::UnknownSpi => self.dropped_unknown_spi += 1,
            DropReason::Authentication => self.dropped_auth += 1,
            DropReason::Replay => self.dropped_replay += 1,
            DropReason::PolicyMismatch => self.dropped_policy_mismatch += 1,
            DropReason::Firewall => self.dropped_firewall += 1,
        }
    }

    /// Takes back one [`Self::drop`] of `reason` (the packet was handled after all).
    pub(crate) fn undo_drop(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Malformed => &mut self.dropped_malformed,
            DropReason::NoPolicy => &mut self.dropped_no_policy,
            DropReason::NoSa | DropReason::Lifetime => &mut self.dropped_no_sa,
            DropReason::UnknownSpi => &mut self.dropped_unknown_spi,
            DropReason::Authentication => &mut self.dropped_auth,
            DropReason::Replay => &mut self.dropped_replay,
            DropReason::PolicyMismatch => &mut self.dropped_policy_mismatch,
            DropReason::Firewall => &mut self.dropped_firewall,
        };
        *c = c.saturating_sub(1);
    }

    /// Counts a seal refusal by its own reason; returns the drop reason the packet gets.
    pub(crate) fn seal_failed(&mut self, e: &SealError) -> DropReason {
        match e {
            SealError::Expired => self.seal_expired += 1,
            SealError::SequenceExhausted => self.seal_sequence_exhausted += 1,
            SealError::Range { .. } | SealError::Headroom { .. } | SealError::Tailroom { .. } => {
                self.seal_no_room += 1
            }
            SealError::Crypto(_) => self.seal_crypto += 1,
        }
        let reason = seal_drop_reason(e);
        self.drop(reason);
        reason
    }
}

/// The drop reason for a packet its SA would not seal: an SA at the end of its life is
/// `Lifetime`; a buffer without room, or a cipher failure, is `Malformed`.
pub fn seal_drop_reason(e: &SealError) -> DropReason {
    match e {
        SealError::Expired | SealError::SequenceExhausted => DropReason::Lifetime,
        SealError::Range { .. }
        | SealError::Headroom { .. }
        | SealError::Tailroom { .. }
        | SealError::Crypto(_) => DropReason::Malformed,
    }
}

/// The drop reason for an ESP packet that failed to open.
pub fn open_drop_reason(e: &OpenError) -> DropReason {
    match e {
        OpenError::Replayed(_) | OpenError::TooOld(_) => DropReason::Replay,
        OpenError::AuthenticationFailed => DropReason::Authentication,
        OpenError::Expired => DropReason::Lifetime,
        _ => DropReason::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_errors_are_counted_by_their_own_reason() {
        let mut c = DataPlaneCounters::default();
        assert_eq!(c.seal_failed(&SealError::Expired), DropReason::Lifetime);
        assert_eq!(
            c.seal_failed(&SealError::SequenceExhausted),
            DropReason::Lifetime
        );
        assert_eq!(
            c.seal_failed(&SealError::Headroom { need: 8, have: 0 }),
            DropReason::Malformed
        );
        assert_eq!(
            c.seal_failed(&SealError::Tailroom { need: 8, have: 0 }),
            DropReason::Malformed
        );
        assert_eq!(
            (
                c.seal_expired,
                c.seal_sequence_exhausted,
                c.seal_no_room,
                c.seal_crypto
            ),
            (1, 1, 2, 0)
        );
        assert_eq!((c.dropped_no_sa, c.dropped_malformed), (2, 2));
    }

    #[test]
    fn counters_without_the_seal_keys_still_read() {
        let mut json = serde_json::to_value(DataPlaneCounters::default()).unwrap();
        let map = json.as_object_mut().unwrap();
        for key in [
            "seal_expired",
            "seal_sequence_exhausted",
            "seal_no_room",
            "seal_crypto",
        ] {
            assert!(map.remove(key).is_some(), "{key}");
        }
        let back: DataPlaneCounters = serde_json::from_value(json).unwrap();
        assert_eq!(back, DataPlaneCounters::default());
    }
}
