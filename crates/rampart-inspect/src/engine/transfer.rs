//! Connection state as values: [`Inspector::export`] takes a snapshot of the table and
//! [`Inspector::apply`] imports what the change stream (or a snapshot) carries, so another
//! member can continue the connections with the same translations.

use std::time::Instant;

use crate::conn::{Change, Connection, CLOCK_BASE_MS};
use crate::table::Which;

use super::Inspector;

/// Why [`Inspector::apply`] did not import a change. The table is unchanged in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("connection table full: connection {id:#x} not imported")]
    TableFull { id: u64 },
    #[error("connection {id:#x} not imported: its tuple belongs to another connection")]
    KeyInUse { id: u64 },
    #[error("connection {id:#x} not imported: its hide NAT port is held by another connection")]
    PortInUse { id: u64 },
    #[error("no connection {id:#x} to update or delete")]
    UnknownConnection { id: u64 },
}

/// `t` moved from a clock that reads `from` now to one that reads `to` now.
fn rebase(t: u64, from: u64, to: u64) -> u64 {
    if to >= from {
        t.saturating_add(to - from)
    } else {
        t.saturating_sub(from - to)
    }
}

/// `c` (on the clock of an inspector that reads `now_ms`) as it leaves the inspector: on a
/// clock that reads [`CLOCK_BASE_MS`] now.
pub(super) fn exported(mut c: Connection, now_ms: u64) -> Connection {
    c.created_ms = rebase(c.created_ms, now_ms, CLOCK_BASE_MS);
    c.last_seen_ms = rebase(c.last_seen_ms, now_ms, CLOCK_BASE_MS);
    c.expires_ms = rebase(c.expires_ms, now_ms, CLOCK_BASE_MS);
    c
}

fn imported(mut c: Connection, now_ms: u64) -> Connection {
    c.created_ms = rebase(c.created_ms, CLOCK_BASE_MS, now_ms);
    c.last_seen_ms = rebase(c.last_seen_ms, CLOCK_BASE_MS, now_ms);
    c.expires_ms = rebase(c.expires_ms, CLOCK_BASE_MS, now_ms);
    c
}

impl Inspector {
    /// Every connection of the table as it would leave in a [`Change::Created`] now (times on
    /// the export clock, see [`Connection`]), ordered by id. Applying each of them as
    /// `Change::Created` into another inspector continues the connections there.
    pub fn export(&self, now: Instant) -> Vec<Connection> {
        let now_ms = self.now_ms(now);
        let mut all: Vec<Connection> = self.connections().map(|c| exported(*c, now_ms)).collect();
        all.sort_unstable_by_key(|c| c.id);
        all
    }

    /// The entry of connection `id` keyed by `(side, orig)`.
    fn find_by_key(&self, id: u64, side: crate::Side, orig: &crate::FlowTuple) -> Option<u32> {
        match self.table.find(side, orig) {
            Some((idx, Which::Orig)) if self.table.get(idx).is_some_and(|c| c.id == id) => {
                Some(idx)
            }
            _ => None,
        }
    }

    /// Imports one change exported by another inspector (its change stream or
    /// [`Inspector::export`]), on this inspector's clock at `now`.
    ///
    /// `Created` inserts the connection (replacing an entry with the same id) and takes over
    /// its NAT allocation: a hide port is marked in use under the local hide rule with the
    /// connection's address, so translated packets keep working in both directions and the
    /// port is not handed out again; a connection whose NAT rule is unknown here keeps its
    /// translation ([`crate::NAT_RULE_GONE`]). `Updated` sets the state and the expiry (and
    /// the last-seen time to now) and adds the ISNs it carries that were not known here;
    /// `Deleted` removes the entry and frees its port. Imports are
    /// not recorded in this inspector's own change stream. On error nothing changed.
    pub fn apply(&mut self, now: Instant, change: Change) -> Result<(), ApplyError> {
        let now_ms = self.now_ms(now);
        match change {
            Change::Created(c) => self.import(now_ms, imported(c, now_ms)),
            Change::Updated {
                id,
                init_side,
                orig,
                state,
                expires_ms,
                handshake,
            } => {
                let idx = self
                    .find_by_key(id, init_side, &orig)
                    .ok_or(ApplyError::UnknownConnection { id })?;
                if let Some(e) = self.table.get_mut(idx) {
                    e.handshake = e.handshake.merge(handshake);
                    e.state = state;
                    e.last_seen_ms = now_ms;
                    e.expires_ms = rebase(expires_ms, CLOCK_BASE_MS, now_ms);
                }
                Ok(())
            }
            Change::Deleted {
                id,
                init_side,
                orig,
            } => {
                let idx = self
                    .find_by_key(id, init_side, &orig)
                    .ok_or(ApplyError::UnknownConnection { id })?;
                self.unlink(idx);
                Ok(())
            }
        }
    }

    fn import(&mut self, now_ms: u64, mut c: Connection) -> Result<(), ApplyError> {
        let id = c.id;
        let replaced = self
            .find_by_key(id, c.init_side, &c.orig)
            .and_then(|idx| self.unlink(idx));
        let restore = |me: &mut Inspector, e| {
            if let Some(old) = replaced {
                me.reinsert(old);
            }
            Err(e)
        };
        if self.table.conflicts(&c) {
            return restore(self, ApplyError::KeyInUse { id });
        }
        if self.table.is_full() {
            self.sweep(now_ms, super::SWEEP_ON_FULL);
        }
        if self.table.is_full() {
            return restore(self, ApplyError::TableFull { id });
        }
        if self.nat.adopt(&mut c.nat, &c.xlat, None).is_err() {
            return restore(self, ApplyError::PortInUse { id });
        }
        if self.table.insert(c).is_none() {
            self.nat.release(c.nat, &c.xlat);
            return restore(self, ApplyError::KeyInUse { id });
        }
        // A connection of this member (a takeover of its own state): never reuse its id.
        if c.id >> 48 == u64::from(self.member_id) {
            self.counter = self.counter.max((c.id & ((1 << 48) - 1)) + 1);
        }
        Ok(())
    }

    /// Puts back an entry `unlink` just removed (its keys and port are free again).
    fn reinsert(&mut self, mut c: Connection) {
        if self.nat.adopt(&mut c.nat, &c.xlat, None).is_ok() && self.table.insert(c).is_none() {
            self.nat.release(c.nat, &c.xlat);
        }
    }

    /// Freezes expiry (a cluster standby: its entries are replicas, the active member sends
    /// their deletions) or lets it run again.
    pub fn set_frozen(&mut self, frozen: bool) {
        self.frozen = frozen;
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Restarts every connection's idle timer at `now` (a takeover: the replicas' expiry was
    /// frozen and packets kept them alive at the old member). Returns how many there are.
    pub fn refresh_all(&mut self, now: Instant) -> usize {
        let now_ms = self.now_ms(now);
        let idxs: Vec<u32> = self.table.iter().map(|(i, _)| i).collect();
        for idx in &idxs {
            let timeout = self.table.get(*idx).map(|c| self.timeout_ms(c.state));
            if let (Some(t), Some(c)) = (timeout, self.table.get_mut(*idx)) {
                c.last_seen_ms = now_ms;
                c.expires_ms = now_ms.saturating_add(t);
            }
        }
        idxs.len()
    }

    /// The newest change of the change stream not drained yet (a Load Sharing member reads the
    /// connection the packet it just inspected created). `None` without a change stream.
    pub fn last_change(&self) -> Option<&Change> {
        self.changes.back()
    }

    /// Whether `pkt`, arriving on `side`, belongs to no live connection and cannot open one:
    /// a TCP packet other than a SYN (or a RST), an echo reply or an ICMP error for no known
    /// connection, which [`Inspector::handle`] would drop as out of state. Returns the tuple of
    /// the connection it would belong to (for an ICMP error: the quoted connection's, in this
    /// packet's direction) and the reason. `None` for everything else, for a packet that does
    /// not parse, and without a rule base (nothing is out of state then). Reads only: nothing
    /// is counted or logged, nothing allocates.
    pub fn orphan(
        &self,
        now: Instant,
        side: crate::Side,
        pkt: &[u8],
    ) -> Option<(crate::FlowTuple, crate::OutOfState)> {
        use crate::packet::Kind;
        use crate::OutOfState;
        if self.permissive() {
            return None;
        }
        let p = crate::packet::parse(pkt)?;
        let (tuple, why) = match p.kind {
            Kind::Tcp { flags, .. } => match crate::tcp::start(flags) {
                Err(why @ (OutOfState::FirstPacketNotSyn | OutOfState::RstWithoutConnection)) => {
                    (p.tuple, why)
                }
                _ => return None,
            },
            Kind::Echo { request: false } => (p.tuple, OutOfState::EchoReplyWithoutRequest),
            Kind::IcmpError { quoted, .. } => {
                (quoted.reverse(), OutOfState::IcmpErrorWithoutConnection)
            }
            _ => return None,
        };
        let now_ms = self.now_ms(now);
        let live = self
            .table
            .find(side, &tuple)
            .and_then(|(idx, _)| self.table.get(idx))
            .is_some_and(|c| c.expires_ms > now_ms);
        (!live).then_some((tuple, why))
    }

    /// The live connection a packet with `tuple` belongs to, looked up in both directions and
    /// from both sides (an update request names a flow without direction), as it would leave
    /// in a [`Change::Created`] now.
    pub fn find_flow(&self, now: Instant, tuple: &crate::FlowTuple) -> Option<Connection> {
        use crate::Side;
        let now_ms = self.now_ms(now);
        let reverse = tuple.reverse();
        let found = [
            (Side::Inside, tuple),
            (Side::Tunnel, tuple),
            (Side::Inside, &reverse),
            (Side::Tunnel, &reverse),
        ]
        .into_iter()
        .find_map(|(side, t)| {
            let (idx, _) = self.table.find(side, t)?;
            let c = self.table.get(idx)?;
            (c.expires_ms > now_ms).then(|| exported(*c, now_ms))
        });
        found
    }

    /// Connection `id` keyed by `(side, orig)` as it would leave in a [`Change::Created`] now.
    pub fn lookup(
        &self,
        now: Instant,
        id: u64,
        side: crate::Side,
        orig: &crate::FlowTuple,
    ) -> Option<Connection> {
        let idx = self.find_by_key(id, side, orig)?;
        Some(exported(*self.table.get(idx)?, self.now_ms(now)))
    }
}
