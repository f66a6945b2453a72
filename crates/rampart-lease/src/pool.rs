//! The pool itself. Addresses are kept as offsets from the prefix's network address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use thiserror::Error;

/// How a pool is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// The prefix addresses come from, e.g. `10.99.0.0/24`.
    pub prefix: IpNet,
    /// Addresses never handed out besides the automatic ones (the gateway's own address,
    /// addresses reserved for servers). Each must lie inside `prefix`.
    pub exclude: Vec<IpAddr>,
    /// How long a lease lives without [`Pool::renew`]; the caller renews while the client's
    /// IKE SA is alive, so a client that vanished (dead peer) loses its address after this.
    pub lease_time: Duration,
}

/// The configuration cannot make a pool.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PoolError {
    #[error("excluded address {0} is not inside the pool prefix")]
    ExcludedOutside(IpAddr),
    #[error("the pool {0} has no usable address")]
    Empty(IpNet),
    #[error("lease time must be non-zero")]
    ZeroLeaseTime,
}

/// Every address is leased; the client gets no address (the gateway tells it so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("address pool exhausted ({size} addresses, all leased)")]
pub struct PoolExhausted {
    pub size: u128,
}

/// A lease handed back that the pool does not hold (already released, expired, or never
/// given out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("no live lease for {0}")]
pub struct LeaseError(pub IpAddr);

/// One client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease<K> {
    pub client: K,
    pub address: IpAddr,
    /// When the lease lapses unless renewed.
    pub expires: Instant,
}

/// Counters for `rampart status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Addresses the pool can hand out (prefix less the excluded ones).
    pub size: u128,
    pub in_use: u128,
    pub free: u128,
    /// `allocate` calls refused because the pool was full.
    pub exhausted_refusals: u64,
    pub allocations: u64,
    pub releases: u64,
    pub expirations: u64,
}

#[derive(Debug)]
struct Live<K> {
    client: K,
    expires: Instant,
}

/// An address pool keyed by client id `K` (e.g. the IKE identity).
#[derive(Debug)]
pub struct Pool<K> {
    prefix: IpNet,
    lease_time: Duration,
    /// One past the last offset that may be handed out (the first is the initial cursor).
    end: u128,
    /// Offsets in `first..end` that are never handed out.
    excluded: BTreeSet<u128>,
    /// Offsets at or above the cursor taken out of order by [`Pool::claim`]: the cursor skips
    /// them (once released they live in the free list like any other).
    claimed_ahead: BTreeSet<u128>,
    size: u128,
    /// Offsets `>= cursor` (and not excluded) have never been handed out.
    cursor: u128,
    /// Released offsets below the cursor, oldest release first (by sequence number).
    free_order: BTreeMap<u64, u128>,
    free_seq: HashMap<u128, u64>,
    next_seq: u64,
    /// Live leases by offset, and the offset each leasing client holds.
    live: HashMap<u128, Live<K>>,
    by_client: HashMap<K, u128>,
    /// For free offsets: who had them last (sticky preference), and the reverse.
    last_owner: HashMap<u128, K>,
    previous: HashMap<K, u128>,
    counters: PoolStatus,
}

fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl<K: Clone + Eq + Hash> Pool<K> {
    /// Builds a pool. For IPv4 prefixes shorter than /31 the network and broadcast addresses
    /// are excluded; for IPv6 prefixes shorter than /127 the Subnet-Router anycast address
    /// (the first, RFC 4291 section 2.6.1) is.
    pub fn new(config: PoolConfig) -> Result<Self, PoolError> {
        if config.lease_time.is_zero() {
            return Err(PoolError::ZeroLeaseTime);
        }
        let prefix = config.prefix.trunc();
        let host_bits = u32::from(prefix.max_prefix_len() - prefix.prefix_len());
        // A /0 IPv6 prefix spans 2^128 offsets; cap at u128::MAX (one address is lost there).
        let span = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
        let (first, end) = match prefix {
            IpNet::V4(_) if prefix.prefix_len() < 31 => (1, span - 1),
            IpNet::V6(_) if prefix.prefix_len() < 127 => (1, span),
            _ => (0, span),
        };
        let base = to_u128(prefix.network());
        let mut excluded = BTreeSet::new();
        for &addr in &config.exclude {
            if !prefix.contains(&addr) {
                return Err(PoolError::ExcludedOutside(addr));
            }
            let off = to_u128(addr) - base;
            if (first..end).contains(&off) {
                excluded.insert(off);
            }
        }
        let size = end - first - excluded.len() as u128;
        if size == 0 {
            return Err(PoolError::Empty(prefix));
        }
        Ok(Self {
            prefix,
            lease_time: config.lease_time,
            end,
            excluded,
            claimed_ahead: BTreeSet::new(),
            size,
            cursor: first,
            free_order: BTreeMap::new(),
            free_seq: HashMap::new(),
            next_seq: 0,
            live: HashMap::new(),
            by_client: HashMap::new(),
            last_owner: HashMap::new(),
            previous: HashMap::new(),
            counters: PoolStatus {
                size,
                ..PoolStatus::default()
            },
        })
    }

    /// The prefix the pool hands out from.
    pub fn prefix(&self) -> IpNet {
        self.prefix
    }

    fn address(&self, off: u128) -> IpAddr {
        let v = to_u128(self.prefix.network()) + off;
        match self.prefix {
            // In range by construction: off < 2^(32 - prefix_len).
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(v as u32)),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }

    fn offset(&self, addr: IpAddr) -> Option<u128> {
        if !self.prefix.contains(&addr) {
            return None;
        }
        Some(to_u128(addr) - to_u128(self.prefix.network()))
    }

    fn lease(&self, off: u128) -> Lease<K> {
        let live = &self.live[&off];
        Lease {
            client: live.client.clone(),
            address: self.address(off),
            expires: live.expires,
        }
    }

    /// Takes a released offset out of the free list, forgetting its previous owner.
    fn take_free(&mut self, off: u128) {
        if let Some(seq) = self.free_seq.remove(&off) {
            self.free_order.remove(&seq);
        }
        if let Some(owner) = self.last_owner.remove(&off) {
            self.previous.remove(&owner);
        }
    }

    /// The next never-used offset, skipping excluded ones.
    fn take_fresh(&mut self) -> Option<u128> {
        while self.cursor < self.end {
            let off = self.cursor;
            self.cursor += 1;
            if self.claimed_ahead.remove(&off) {
                continue;
            }
            if !self.excluded.contains(&off) {
                return Some(off);
            }
        }
        None
    }

    /// Leases an address to `client`. Preference: the client's live lease (renewed), then the
    /// address it had last if still free, then a never-used address, then the address
    /// released longest ago (so a returning client most likely finds its old one).
    pub fn allocate(&mut self, client: K, now: Instant) -> Result<Lease<K>, PoolExhausted> {
        let expires = now + self.lease_time;
        if let Some(&off) = self.by_client.get(&client) {
            if let Some(live) = self.live.get_mut(&off) {
                live.expires = expires;
            }
            return Ok(self.lease(off));
        }
        let off = if let Some(off) = self
            .previous
            .get(&client)
            .copied()
            .filter(|o| self.free_seq.contains_key(o))
        {
            self.take_free(off);
            off
        } else if let Some(off) = self.take_fresh() {
            off
        } else if let Some((_, off)) = self.free_order.pop_first() {
            self.free_seq.remove(&off);
            if let Some(owner) = self.last_owner.remove(&off) {
                self.previous.remove(&owner);
            }
            off
        } else {
            self.counters.exhausted_refusals += 1;
            return Err(PoolExhausted { size: self.size });
        };
        self.live.insert(
            off,
            Live {
                client: client.clone(),
                expires,
            },
        );
        self.by_client.insert(client, off);
        self.counters.allocations += 1;
        Ok(self.lease(off))
    }

    /// [`allocate`](Self::allocate), but first trying `prefer` (the address a returning
    /// client asks for, e.g. in its CFG_REQUEST) when it was released and is free now. An
    /// address never handed out, excluded, outside the prefix or leased to someone else is
    /// not taken; the client then gets what `allocate` gives.
    pub fn allocate_preferred(
        &mut self,
        client: K,
        prefer: IpAddr,
        now: Instant,
    ) -> Result<Lease<K>, PoolExhausted> {
        if self.by_client.contains_key(&client) {
            return self.allocate(client, now);
        }
        let Some(off) = self
            .offset(prefer)
            .filter(|o| self.free_seq.contains_key(o))
        else {
            return self.allocate(client, now);
        };
        self.take_free(off);
        self.live.insert(
            off,
            Live {
                client: client.clone(),
                expires: now + self.lease_time,
            },
        );
        self.by_client.insert(client, off);
        self.counters.allocations += 1;
        Ok(self.lease(off))
    }

    /// Takes exactly `address` for `client` (a lease another cluster member handed out,
    /// continued here). Refused when the address is outside the prefix, excluded, leased, or
    /// when `client` already holds a lease.
    pub fn claim(
        &mut self,
        client: K,
        address: IpAddr,
        now: Instant,
    ) -> Result<Lease<K>, LeaseError> {
        let refused = LeaseError(address);
        let off = self.offset(address).ok_or(refused)?;
        let first = self.end - self.size - self.excluded.len() as u128;
        if off < first
            || off >= self.end
            || self.excluded.contains(&off)
            || self.live.contains_key(&off)
            || self.by_client.contains_key(&client)
        {
            return Err(refused);
        }
        if self.free_seq.contains_key(&off) {
            self.take_free(off);
        } else if off >= self.cursor {
            if !self.claimed_ahead.insert(off) {
                return Err(refused);
            }
        } else {
            return Err(refused);
        }
        self.live.insert(
            off,
            Live {
                client: client.clone(),
                expires: now + self.lease_time,
            },
        );
        self.by_client.insert(client, off);
        self.counters.allocations += 1;
        Ok(self.lease(off))
    }

    /// Returns an offset to the free list, remembering its owner for stickiness.
    fn free(&mut self, off: u128) -> Option<Live<K>> {
        let live = self.live.remove(&off)?;
        self.by_client.remove(&live.client);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.free_order.insert(seq, off);
        self.free_seq.insert(off, seq);
        self.last_owner.insert(off, live.client.clone());
        self.previous.insert(live.client.clone(), off);
        Some(live)
    }

    fn holds(&self, lease: &Lease<K>) -> Option<u128> {
        let off = self.offset(lease.address)?;
        let live = self.live.get(&off)?;
        (live.client == lease.client).then_some(off)
    }

    /// Releases a lease (disconnect). Refuses a lease the pool does not hold for that client.
    pub fn release(&mut self, lease: &Lease<K>) -> Result<(), LeaseError> {
        let off = self.holds(lease).ok_or(LeaseError(lease.address))?;
        self.free(off);
        self.counters.releases += 1;
        Ok(())
    }

    /// Extends a live lease to `now + lease_time`.
    pub fn renew(&mut self, lease: &Lease<K>, now: Instant) -> Result<Lease<K>, LeaseError> {
        let off = self.holds(lease).ok_or(LeaseError(lease.address))?;
        if let Some(live) = self.live.get_mut(&off) {
            live.expires = now + self.lease_time;
        }
        Ok(self.lease(off))
    }

    /// Moves a live lease to another client id without changing its address or expiry (an
    /// IKE SA rekeyed: the address stays with the client, under the new SA's id). Refused when
    /// the pool does not hold `lease` for its client, or when `to` already holds a lease.
    pub fn transfer(&mut self, lease: &Lease<K>, to: K) -> Result<Lease<K>, LeaseError> {
        let off = self.holds(lease).ok_or(LeaseError(lease.address))?;
        if self.by_client.contains_key(&to) {
            return Err(LeaseError(lease.address));
        }
        self.by_client.remove(&lease.client);
        self.by_client.insert(to.clone(), off);
        if let Some(live) = self.live.get_mut(&off) {
            live.client = to;
        }
        Ok(self.lease(off))
    }

    /// Frees every lease whose expiry is at or before `now` and returns them (to log and to
    /// tear down what is left of those clients).
    pub fn expire(&mut self, now: Instant) -> Vec<Lease<K>> {
        let mut due: Vec<u128> = self
            .live
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(&off, _)| off)
            .collect();
        due.sort_unstable();
        let mut out = Vec::with_capacity(due.len());
        for off in due {
            let address = self.address(off);
            if let Some(live) = self.free(off) {
                self.counters.expirations += 1;
                out.push(Lease {
                    client: live.client,
                    address,
                    expires: live.expires,
                });
            }
        }
        out
    }

    /// The earliest expiry among live leases (when to call [`expire`](Self::expire) next).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.live.values().map(|l| l.expires).min()
    }

    /// The live lease of `client`, if any.
    pub fn lease_of(&self, client: &K) -> Option<Lease<K>> {
        self.by_client.get(client).map(|&off| self.lease(off))
    }

    /// Every live lease, in address order.
    pub fn leases(&self) -> Vec<Lease<K>> {
        let mut offs: Vec<u128> = self.live.keys().copied().collect();
        offs.sort_unstable();
        offs.into_iter().map(|off| self.lease(off)).collect()
    }

    /// Counters. `free` is counted from the free structures (never-used offsets left plus
    /// released ones), independently of `in_use`, so `in_use + free == size` is a real check.
    pub fn status(&self) -> PoolStatus {
        let excluded_ahead = self.excluded.range(self.cursor..).count() as u128;
        let claimed_ahead = self.claimed_ahead.len() as u128;
        let fresh = self.end - self.cursor - excluded_ahead - claimed_ahead;
        PoolStatus {
            in_use: self.live.len() as u128,
            free: fresh + self.free_order.len() as u128,
            ..self.counters
        }
    }
}
