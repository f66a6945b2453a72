//! Time-driven work: retransmissions, rekeys, expiry, liveness checks, NAT keepalives, and the
//! task queue that serialises our own requests (window of one).

use std::time::{Duration, Instant};

use crate::peers::PeerId;

use crate::child::ChildState;
use crate::config::IkeSaId;
use crate::engine::{Ike, HALF_OPEN};
use crate::event::{DownReason, IkeEvent};
use crate::retransmit::Retransmit;
use crate::sa::{IkeState, Task};

impl Ike {
    /// When [`Ike::handle_timeout`] is next due: the top of the per-SA deadline heap, O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.timers.next();
        debug_assert_eq!(next, self.scan_timeout(), "timer heap out of date");
        match (next, self.retries.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles the timers of the SAs that are due at `now` (only those: the heap names them).
    pub fn handle_timeout(&mut self, now: Instant) {
        for peer in self.retries.take_due(now) {
            let busy = self.sas.values().any(|s| {
                s.peer == peer && matches!(s.state, IkeState::Connecting | IkeState::Established)
            });
            let always = self
                .peers
                .get(peer)
                .is_some_and(|p| p.start_action == crate::policy::StartAction::Always);
            if always && !busy {
                tracing::info!(%peer, "retrying the negotiation");
                self.start_ike_sa(now, peer);
            }
        }
        self.refresh_timers();
        for id in self.timers.pop_due(now) {
            self.renew_lease(now, id);
            self.sa_timeout(now, id);
            self.run_tasks(now, id);
        }
        while let Some(k) = self.kick.pop() {
            self.run_tasks(now, k);
        }
        self.refresh_timers();
    }

    fn sa_timeout(&mut self, now: Instant, id: IkeSaId) {
        let tries = self.cfg.retransmit_tries;
        let Some(peer) = self.sas.get(&id).map(|sa| sa.peer) else {
            return;
        };
        let liveness = self.liveness(peer);
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        sa.frag.expire(now);
        if let Some(p) = sa.pending.as_mut() {
            match p.poll(now, tries) {
                Retransmit::NotYet => {}
                Retransmit::Resend => {
                    tracing::debug!(
                        ike_sa = id.0,
                        msg_id = p.msg_id,
                        tries = p.tries,
                        "retransmitting request"
                    );
                    for bytes in &p.msgs {
                        self.events.push_back(IkeEvent::Transmit {
                            local: sa.local,
                            remote: sa.remote,
                            msg: bytes.clone(),
                        });
                    }
                    sa.last_tx = now;
                }
                Retransmit::GiveUp => {
                    tracing::debug!(ike_sa = id.0, "request timed out");
                    if matches!(p.kind, crate::retransmit::Request::UpdateAddresses) {
                        self.update_timed_out(id);
                    }
                    self.fail_sa(now, id, DownReason::Timeout);
                    return;
                }
            }
        }
        if sa.expire_at.is_some_and(|t| t <= now) {
            match sa.state {
                IkeState::Established if sa.pending.is_none() => {
                    tracing::debug!(ike_sa = id.0, "IKE SA hard lifetime reached");
                    sa.tasks.clear();
                    sa.expire_at = Some(now + HALF_OPEN);
                    self.start_delete_ike(now, id);
                }
                IkeState::Connecting if sa.initiator => sa.expire_at = None,
                IkeState::Connecting => self.remove_sa(id, None),
                IkeState::Rekeyed => self.remove_sa(id, Some(DownReason::Rekeyed)),
                IkeState::Established | IkeState::Deleting => {
                    self.remove_sa(id, Some(DownReason::Deleted))
                }
            }
            return;
        }
        if sa.state == IkeState::Established {
            if sa.rekey_at.is_some_and(|t| t <= now) {
                sa.rekey_at = None;
                if !sa.tasks.contains(&Task::RekeyIke) {
                    sa.tasks.push_back(Task::RekeyIke);
                }
            }
            let mut expired = Vec::new();
            for c in sa.children.iter_mut() {
                if c.rekey_at.is_some_and(|t| t <= now) {
                    c.rekey_at = None;
                    if c.state == ChildState::Installed {
                        sa.tasks.push_back(Task::RekeyChild(c.id));
                    }
                }
                if c.expire_at.is_some_and(|t| t <= now) {
                    c.expire_at = None;
                    expired.push(c.id);
                }
            }
            if !expired.is_empty() {
                sa.tasks.push_front(Task::DeleteChild(expired));
            }
            if !liveness.is_zero()
                && sa.pending.is_none()
                && sa.tasks.is_empty()
                && now >= sa.last_rx + liveness
            {
                sa.tasks.push_back(Task::Liveness);
            }
        }
        if sa.nat_local
            && matches!(sa.state, IkeState::Established | IkeState::Rekeyed)
            && now >= sa.last_tx + self.cfg.nat_keepalive
        {
            self.events.push_back(IkeEvent::NatKeepalive {
                local: sa.local,
                remote: sa.remote,
            });
            sa.last_tx = now;
        }
    }

    /// The peer's liveness interval; zero (no checks) for a removed peer.
    fn liveness(&self, peer: PeerId) -> Duration {
        self.peers
            .get(peer)
            .map_or(Duration::ZERO, |p| p.liveness_interval)
    }

    /// Starts queued tasks while our request slot is free.
    pub(crate) fn run_tasks(&mut self, now: Instant, id: IkeSaId) {
        loop {
            let Some(sa) = self.sas.get_mut(&id) else {
                return;
            };
            if sa.pending.is_some() {
                return;
            }
            let ok_state = match sa.state {
                IkeState::Established => true,
                IkeState::Rekeyed => sa.tasks.front() == Some(&Task::DeleteIke),
                _ => false,
            };
            if !ok_state {
                return;
            }
            if let Some(t) = sa.retry_at {
                if now < t {
                    return;
                }
                sa.retry_at = None;
            }
            let Some(task) = sa.tasks.pop_front() else {
                return;
            };
            let started = match task {
                Task::NewChild => self.start_create_child(now, id, None, None),
                Task::RekeyChild(c) => self.start_create_child(now, id, Some(c), None),
                Task::RekeyIke => self.start_ike_rekey(now, id, None),
                Task::DeleteChild(v) => self.start_delete_children(now, id, v),
                Task::DeleteIke => self.start_delete_ike(now, id),
                Task::Liveness => self.start_liveness(now, id),
                Task::UpdateAddresses => self.start_update_addresses(now, id),
            };
            if started {
                return;
            }
        }
    }
}
