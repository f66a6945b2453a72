//! The pool itself. Addresses are kept as offsets from the prefix's network address.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use thiserror::Error;

use crate::share::{to_u128, Layout, Share};

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
    #[error("member index {index} is not below the member count {of}")]
    BadShare { index: u32, of: u32 },
    #[error("the pool {prefix} is too small to split among {of} load-sharing members: the share of member {index} (sorted by id, from 0) holds no usable address")]
    ShareEmpty { prefix: IpNet, index: u32, of: u32 },
}

/// A reservation refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReserveError {
    /// Outside the prefix, or an address the pool never hands out (network, broadcast,
    /// excluded).
    #[error("{0} is not an address of the pool")]
    NotInPool(IpAddr),
    /// This member leases the address (or the key holds a lease here): the two members
    /// disagree; the lease here stays.
    #[error("{0} is leased by this member")]
    LeasedHere(IpAddr),
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

/// Counters for `rampart status`. Invariant:
/// `in_use + reserved_elsewhere + free == size + outside_share` (without a share and without
/// reservations: `in_use + free == size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStatus {
    /// Addresses the pool can hand out fresh: the usable addresses of its share (the whole
    /// prefix without one) less the excluded ones.
    pub size: u128,
    /// Live leases here, wherever in the prefix (an adopted client keeps its address).
    pub in_use: u128,
    /// Addresses of the share neither leased nor reserved.
    pub free: u128,
    /// Addresses another cluster member leases (never handed out here).
    pub reserved_elsewhere: u128,
    /// Live leases and reservations outside the share (counted in `in_use` or
    /// `reserved_elsewhere`, not in `size`).
    pub outside_share: u128,
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

/// An address pool keyed by client id `K` (e.g. the IKE SA id), optionally restricted to a
/// Load Sharing member's [`Share`] and holding *reservations*: addresses another member
/// leases, keyed by that member's client id.
///
/// Every usable offset of the share is in exactly one of: fresh (ordinal at or above the
/// cursor and not in `taken_ahead`), released (`free_order`), live, reserved. Offsets outside
/// the share are only ever live (claimed) or reserved, and forgotten when given back.
#[derive(Debug)]
pub struct Pool<K> {
    prefix: IpNet,
    lease_time: Duration,
    /// Usable offsets of the prefix: `first..=last_usable`, less `excluded`.
    first: u128,
    last_usable: u128,
    /// Configured exclusions inside the usable range.
    excluded: BTreeSet<u128>,
    share: Option<Share>,
    layout: Layout,
    /// Ordinals of the share whose offsets are not usable (network, broadcast, excluded).
    skip: BTreeSet<u128>,
    /// Ordinals at or above the cursor taken out of order ([`Pool::claim`],
    /// [`Pool::reserve`]): the cursor skips them (once given back they live in the free list
    /// like any other).
    taken_ahead: BTreeSet<u128>,
    size: u128,
    /// Ordinals `>= cursor` (not skipped, not taken ahead) have never been handed out.
    cursor: u128,
    /// Released offsets of the share, oldest release first (by sequence number).
    free_order: BTreeMap<u64, u128>,
    free_seq: HashMap<u128, u64>,
    next_seq: u64,
    /// Live leases by offset, and the offset each leasing client holds.
    live: HashMap<u128, Live<K>>,
    by_client: HashMap<K, u128>,
    /// Reservations by offset, and the offset each reserving key holds.
    reserved: HashMap<u128, K>,
    reserved_by: HashMap<K, u128>,
    /// For free offsets: who had them last (sticky preference), and the reverse.
    last_owner: HashMap<u128, K>,
    previous: HashMap<K, u128>,
    counters: PoolStatus,
}

impl<K: Clone + Eq + Hash> Pool<K> {
    /// Builds a pool over the whole prefix (no share). For IPv4 prefixes shorter than /31 the
    /// network and broadcast addresses are excluded; for IPv6 prefixes shorter than /127 the
    /// Subnet-Router anycast address (the first, RFC 4291 section 2.6.1) is.
    pub fn new(config: PoolConfig) -> Result<Self, PoolError> {
        if config.lease_time.is_zero() {
            return Err(PoolError::ZeroLeaseTime);
        }
        let prefix = config.prefix.trunc();
        let host_bits = u32::from(prefix.max_prefix_len() - prefix.prefix_len());
        let last = 1u128
            .checked_shl(host_bits)
            .map_or(u128::MAX, |span| span - 1);
        let (first, last_usable) = match prefix {
            IpNet::V4(_) if prefix.prefix_len() < 31 => (1, last - 1),
            IpNet::V6(_) if prefix.prefix_len() < 127 => (1, last),
            _ => (0, last),
        };
        // A whole IPv6 /0 has 2^128 offsets: the last one is lost (offsets are u128 counts).
        let last_usable = if host_bits == 128 {
            last_usable - 1
        } else {
            last_usable
        };
        let base = to_u128(prefix.network());
        let mut excluded = BTreeSet::new();
        for &addr in &config.exclude {
            if !prefix.contains(&addr) {
                return Err(PoolError::ExcludedOutside(addr));
            }
            let off = to_u128(addr) - base;
            if (first..=last_usable).contains(&off) {
                excluded.insert(off);
            }
        }
        let layout = Layout::new(prefix, None)?;
        let mut pool = Self {
            prefix,
            lease_time: config.lease_time,
            first,
            last_usable,
            excluded,
            share: None,
            layout,
            skip: BTreeSet::new(),
            taken_ahead: BTreeSet::new(),
            size: 0,
            cursor: 0,
            free_order: BTreeMap::new(),
            free_seq: HashMap::new(),
            next_seq: 0,
            live: HashMap::new(),
            by_client: HashMap::new(),
            reserved: HashMap::new(),
            reserved_by: HashMap::new(),
            last_owner: HashMap::new(),
            previous: HashMap::new(),
            counters: PoolStatus::default(),
        };
        pool.skip = pool.skip_for(&pool.layout);
        pool.size = pool.layout.len - pool.skip.len() as u128;
        if pool.size == 0 {
            return Err(PoolError::Empty(prefix));
        }
        pool.counters.size = pool.size;
        Ok(pool)
    }

    /// The ordinals of `layout` whose offsets are not usable.
    fn skip_for(&self, layout: &Layout) -> BTreeSet<u128> {
        let last = self.last_usable.checked_add(1);
        (0..self.first)
            .chain(last)
            .chain(self.excluded.iter().copied())
            .filter_map(|off| layout.ordinal(off))
            .collect()
    }

    /// Restricts fresh allocation to `share` (`None`: the whole prefix). Live leases and
    /// reservations stay; the free structures are rebuilt over the new share (which forgets
    /// release order and sticky preferences), so call it before clients connect. Refused,
    /// the pool unchanged, when the share holds no usable address.
    pub fn set_share(&mut self, share: Option<Share>) -> Result<(), PoolError> {
        if share == self.share {
            return Ok(());
        }
        let layout = Layout::new(self.prefix, share)?;
        let skip = self.skip_for(&layout);
        let size = layout.len - skip.len() as u128;
        if size == 0 {
            let s = share.unwrap_or(Share { index: 0, of: 1 });
            return Err(PoolError::ShareEmpty {
                prefix: self.prefix,
                index: s.index,
                of: s.of,
            });
        }
        self.taken_ahead = self
            .live
            .keys()
            .chain(self.reserved.keys())
            .filter_map(|&off| layout.ordinal(off))
            .collect();
        self.share = share;
        self.layout = layout;
        self.skip = skip;
        self.size = size;
        self.counters.size = size;
        self.cursor = 0;
        self.free_order.clear();
        self.free_seq.clear();
        self.last_owner.clear();
        self.previous.clear();
        Ok(())
    }

    /// The share fresh addresses come from (`None`: the whole prefix).
    pub fn share(&self) -> Option<Share> {
        self.share
    }

    /// The share as CIDR blocks (the prefix alone without a share).
    pub fn share_blocks(&self) -> Vec<IpNet> {
        match self.share {
            Some(s) => s.blocks(self.prefix).unwrap_or_default(),
            None => vec![self.prefix],
        }
    }

    /// Whether `address` lies in this pool's share (in the prefix, without a share).
    pub fn in_share(&self, address: IpAddr) -> bool {
        self.offset(address)
            .is_some_and(|off| self.layout.ordinal(off).is_some())
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

    /// The offset of `addr` when the pool may lease it at all (in the prefix, not network,
    /// broadcast or excluded), inside the share or not.
    fn usable(&self, addr: IpAddr) -> Option<u128> {
        self.offset(addr).filter(|off| {
            (self.first..=self.last_usable).contains(off) && !self.excluded.contains(off)
        })
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

    /// Takes a usable offset that is neither live nor reserved out of the free structures
    /// (released list, or fresh ahead of the cursor); nothing to do outside the share.
    fn take(&mut self, off: u128) {
        if self.free_seq.contains_key(&off) {
            self.take_free(off);
        } else if let Some(ord) = self.layout.ordinal(off).filter(|&o| o >= self.cursor) {
            self.taken_ahead.insert(ord);
        }
    }

    /// Gives an offset that is no longer live or reserved back: to the free list inside the
    /// share (remembering `owner` for stickiness), forgotten outside it.
    fn give(&mut self, off: u128, owner: Option<K>) {
        if self.layout.ordinal(off).is_none() {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.free_order.insert(seq, off);
        self.free_seq.insert(off, seq);
        if let Some(owner) = owner {
            self.last_owner.insert(off, owner.clone());
            self.previous.insert(owner, off);
        }
    }

    /// The next never-used offset of the share, skipping unusable and taken ones.
    fn take_fresh(&mut self) -> Option<u128> {
        while self.cursor < self.layout.len {
            let ord = self.cursor;
            self.cursor += 1;
            if self.taken_ahead.remove(&ord) || self.skip.contains(&ord) {
                continue;
            }
            return Some(self.layout.offset(ord));
        }
        None
    }

    fn insert_live(&mut self, off: u128, client: K, now: Instant) -> Lease<K> {
        self.live.insert(
            off,
            Live {
                client: client.clone(),
                expires: now + self.lease_time,
            },
        );
        self.by_client.insert(client, off);
        self.counters.allocations += 1;
        self.lease(off)
    }

    /// Leases an address of the share to `client`. Preference: the client's live lease
    /// (renewed), then the address it had last if still free, then a never-used address,
    /// then the address released longest ago (so a returning client most likely finds its
    /// old one). Reserved addresses are never handed out.
    pub fn allocate(&mut self, client: K, now: Instant) -> Result<Lease<K>, PoolExhausted> {
        if let Some(&off) = self.by_client.get(&client) {
            let expires = now + self.lease_time;
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
        Ok(self.insert_live(off, client, now))
    }

    /// [`allocate`](Self::allocate), but first trying `prefer` (the address a returning
    /// client asks for, e.g. in its CFG_REQUEST) when it was released and is free now (so it
    /// lies in the share and is not reserved). An address never handed out, excluded,
    /// outside the share, reserved or leased to someone else is not taken; the client then
    /// gets what `allocate` gives.
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
        Ok(self.insert_live(off, client, now))
    }

    /// Takes exactly `address` for `client` (a lease another cluster member handed out,
    /// continued here), inside the share or not. A reservation of `address` under the same
    /// key becomes the lease; a reservation of the key elsewhere is dropped. Refused when
    /// the address is outside the prefix, excluded, leased, reserved under another key, or
    /// when `client` already holds a lease.
    pub fn claim(
        &mut self,
        client: K,
        address: IpAddr,
        now: Instant,
    ) -> Result<Lease<K>, LeaseError> {
        let refused = LeaseError(address);
        let off = self.usable(address).ok_or(refused)?;
        if self.live.contains_key(&off) || self.by_client.contains_key(&client) {
            return Err(refused);
        }
        match self.reserved.get(&off) {
            Some(k) if *k == client => {
                self.reserved.remove(&off);
                self.reserved_by.remove(&client);
            }
            Some(_) => return Err(refused),
            None => {
                if let Some(old) = self.reserved_by.remove(&client) {
                    self.reserved.remove(&old);
                    self.give(old, None);
                }
                self.take(off);
            }
        }
        Ok(self.insert_live(off, client, now))
    }

    /// Reserves `address` for `key`, a client of another cluster member: never handed out
    /// or claimed by another key here until [`unreserve`](Self::unreserve)d; it does not
    /// expire. A key holds at most one reservation (a new address moves it); reserving an
    /// address reserved under another key moves the reservation to `key` (an IKE SA
    /// rekeyed on the other member). Refused when this pool leases the address or the key.
    pub fn reserve(&mut self, key: K, address: IpAddr) -> Result<(), ReserveError> {
        let off = self
            .usable(address)
            .ok_or(ReserveError::NotInPool(address))?;
        if self.live.contains_key(&off) {
            return Err(ReserveError::LeasedHere(address));
        }
        if let Some(&mine) = self.by_client.get(&key) {
            return Err(ReserveError::LeasedHere(self.address(mine)));
        }
        match self.reserved_by.get(&key) {
            Some(&o) if o == off => return Ok(()),
            Some(&o) => {
                self.reserved_by.remove(&key);
                self.reserved.remove(&o);
                self.give(o, None);
            }
            None => {}
        }
        if let Some(k) = self.reserved.get_mut(&off) {
            let old = std::mem::replace(k, key.clone());
            self.reserved_by.remove(&old);
            self.reserved_by.insert(key, off);
            return Ok(());
        }
        self.take(off);
        self.reserved.insert(off, key.clone());
        self.reserved_by.insert(key, off);
        Ok(())
    }

    /// Drops the reservation of `address`; returns its key. The address is free again (in
    /// the share) or forgotten (outside it).
    pub fn unreserve(&mut self, address: IpAddr) -> Option<K> {
        let off = self.offset(address)?;
        let key = self.reserved.remove(&off)?;
        self.reserved_by.remove(&key);
        self.give(off, None);
        Some(key)
    }

    /// Drops the reservation of `key`; returns its address.
    pub fn unreserve_key(&mut self, key: &K) -> Option<IpAddr> {
        let off = self.reserved_by.remove(key)?;
        self.reserved.remove(&off);
        self.give(off, None);
        Some(self.address(off))
    }

    /// The address `key` reserves, if any.
    pub fn reservation_of(&self, key: &K) -> Option<IpAddr> {
        self.reserved_by.get(key).map(|&off| self.address(off))
    }

    /// Every reservation, in address order.
    pub fn reservations(&self) -> Vec<(K, IpAddr)> {
        let mut offs: Vec<(&u128, &K)> = self.reserved.iter().collect();
        offs.sort_unstable_by_key(|(off, _)| **off);
        offs.into_iter()
            .map(|(&off, k)| (k.clone(), self.address(off)))
            .collect()
    }

    /// Returns a live offset to the free structures, remembering its owner for stickiness.
    fn free(&mut self, off: u128) -> Option<Live<K>> {
        let live = self.live.remove(&off)?;
        self.by_client.remove(&live.client);
        self.give(off, Some(live.client.clone()));
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
    /// tear down what is left of those clients). Reservations never expire.
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

    /// Counters. `free` is counted from the free structures (never-used ordinals left plus
    /// released offsets), independently of `in_use` and `reserved_elsewhere`, so the
    /// [`PoolStatus`] invariant is a real check.
    pub fn status(&self) -> PoolStatus {
        let skipped_ahead = self.skip.range(self.cursor..).count() as u128;
        let taken_ahead = self.taken_ahead.len() as u128;
        let fresh = self.layout.len - self.cursor - skipped_ahead - taken_ahead;
        let outside = self
            .live
            .keys()
            .chain(self.reserved.keys())
            .filter(|&&off| self.layout.ordinal(off).is_none())
            .count() as u128;
        PoolStatus {
            in_use: self.live.len() as u128,
            free: fresh + self.free_order.len() as u128,
            reserved_elsewhere: self.reserved.len() as u128,
            outside_share: outside,
            ..self.counters
        }
    }
}
