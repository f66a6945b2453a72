//! Sans-IO Office Mode address pools: each remote-access client gets a unique address from a
//! prefix (IPv4, or IPv6), handed to it in the IKEv2 configuration payload.
//!
//! The pool does no I/O and reads no clock: every call takes `now`. Invariants:
//! - never two live leases on one address, and at most one live lease per client id;
//! - never an excluded address (network, broadcast, the gateway's own, any listed one);
//! - nothing is lost: `in_use + free == size` at all times ([`PoolStatus`]).
//!
//! Addresses are handed out lazily (a cursor over never-used offsets plus a list of released
//! ones), so an IPv6 /64 costs no more memory than an IPv4 /24: memory grows with the number
//! of leases and released addresses, not with the prefix.

mod pool;

pub use pool::{Lease, LeaseError, Pool, PoolConfig, PoolError, PoolExhausted, PoolStatus};
