//! Sans-IO Office Mode address pools: each remote-access client gets a unique address from a
//! prefix (IPv4, or IPv6), handed to it in the IKEv2 configuration payload.
//!
//! The pool does no I/O and reads no clock: every call takes `now`. Invariants:
//! - never two live leases on one address, and at most one live lease per client id;
//! - never an excluded address (network, broadcast, the gateway's own, any listed one);
//! - never a reserved address (one another Load Sharing member leases) handed out;
//! - nothing is lost: `in_use + reserved_elsewhere + free == size + outside_share` at all
//!   times ([`PoolStatus`]; plain `in_use + free == size` for a pool without share or
//!   reservations).
//!
//! Addresses are handed out lazily (a cursor over never-used offsets plus a list of released
//! ones), so an IPv6 /64 costs no more memory than an IPv4 /24: memory grows with the number
//! of leases, reservations and released addresses, not with the prefix.
//!
//! Load Sharing: a member hands out fresh addresses only from its [`Share`] of the prefix
//! (disjoint from every other member's), reserves the addresses the others lease (learned
//! from their SAs), and can still [`Pool::claim`] any address of the prefix (an SA adopted
//! from a member that died keeps its address).

mod pool;
mod share;

pub use pool::{
    Lease, LeaseError, Pool, PoolConfig, PoolError, PoolExhausted, PoolStatus, ReserveError,
};
pub use share::Share;
