//! The one outstanding request of an IKE SA (window size 1) and its retransmission schedule.
//!
//! A request is retransmitted with the same bytes; the timeout doubles after each try. After
//! `retransmit_tries` retransmissions and one more timeout the request has failed.

use std::time::{Duration, Instant};

use rampart_crypto::KeyExchange;
use rampart_wire::ike::TrafficSelector;

use crate::config::ChildSaId;

/// What an outstanding request was, so its response can be interpreted.
pub(crate) enum Request {
    Init,
    Auth(ChildPlan),
    CreateChild(ChildPlan),
    RekeyIke {
        spi: u64,
        ni: Vec<u8>,
        ke: KeyExchange,
    },
    Delete(Vec<ChildSaId>),
    DeleteIke,
    Liveness,
    /// MOBIKE UPDATE_SA_ADDRESSES.
    UpdateAddresses,
}

/// A CHILD SA being negotiated by us.
pub(crate) struct ChildPlan {
    /// The SA being rekeyed.
    pub rekey: Option<ChildSaId>,
    pub spi_in: u32,
    pub ni: Vec<u8>,
    pub ke: Option<KeyExchange>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
}

pub(crate) struct Pending {
    pub msg_id: u32,
    /// The request as sent: one datagram, or all of its fragments (all resent each time).
    pub msgs: Vec<Vec<u8>>,
    pub next_at: Instant,
    pub timeout: Duration,
    pub tries: u32,
    pub kind: Request,
}

/// What the retransmission timer asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retransmit {
    NotYet,
    Resend,
    GiveUp,
}

impl Pending {
    pub(crate) fn new(
        now: Instant,
        msg_id: u32,
        msgs: Vec<Vec<u8>>,
        timeout: Duration,
        kind: Request,
    ) -> Pending {
        Pending {
            msg_id,
            msgs,
            next_at: now + timeout,
            timeout,
            tries: 0,
            kind,
        }
    }

    /// Advances the schedule when due.
    pub(crate) fn poll(&mut self, now: Instant, max_tries: u32) -> Retransmit {
        if now < self.next_at {
            return Retransmit::NotYet;
        }
        if self.tries >= max_tries {
            return Retransmit::GiveUp;
        }
        self.tries += 1;
        self.timeout = self.timeout.saturating_mul(2);
        self.next_at = now + self.timeout;
        Retransmit::Resend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_then_give_up() {
        let t0 = Instant::now();
        let mut p = Pending::new(
            t0,
            0,
            vec![vec![1]],
            Duration::from_secs(2),
            Request::Liveness,
        );
        assert_eq!(p.poll(t0 + Duration::from_secs(1), 2), Retransmit::NotYet);
        assert_eq!(p.poll(t0 + Duration::from_secs(2), 2), Retransmit::Resend);
        assert_eq!(p.next_at, t0 + Duration::from_secs(6));
        assert_eq!(p.poll(t0 + Duration::from_secs(6), 2), Retransmit::Resend);
        assert_eq!(p.next_at, t0 + Duration::from_secs(14));
        assert_eq!(p.poll(t0 + Duration::from_secs(13), 2), Retransmit::NotYet);
        assert_eq!(p.poll(t0 + Duration::from_secs(14), 2), Retransmit::GiveUp);
    }
}
