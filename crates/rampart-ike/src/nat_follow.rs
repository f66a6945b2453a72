//! Following a NAT mapping that moved, on the data plane's word.
//!
//! A NAT in front of the peer may forget its mapping (timeout, reboot, conntrack flush) and give
//! the peer's next datagram a new public port. IKE messages from the new address update the IKE
//! SA (see `handle_protected`); this is the same for ESP-in-UDP: the data plane reports an
//! authenticated, non-replayed ESP packet that came from a new address (RFC 3948 section 5 lets
//! the receiver of such a packet update the peer's address, as the Linux kernel does).
//!
//! Invariant: only an IKE SA that uses UDP encapsulation moves, and only to the address of a
//! packet the caller authenticated; its CHILD SAs move with it (one `ChildSaEndpoint` event each).

use std::net::SocketAddr;

use crate::config::ChildSaId;
use crate::engine::Ike;
use crate::event::IkeEvent;
use crate::sa::IkeState;

impl Ike {
    /// An authenticated ESP-in-UDP packet of `child` arrived from `remote` on our `local` socket.
    /// When that is not the IKE SA's current peer address, the IKE SA and all its CHILD SAs move
    /// there. Returns whether anything moved.
    pub fn esp_peer_address(
        &mut self,
        child: ChildSaId,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> bool {
        let Some(id) = self.child_index.get(&child).copied() else {
            return false;
        };
        let Some(sa) = self.sas.get_mut(&id) else {
            return false;
        };
        if !sa.encap()
            || !matches!(sa.state, IkeState::Established | IkeState::Rekeyed)
            || (sa.remote == remote && sa.local == local)
        {
            return false;
        }
        tracing::debug!(ike_sa = id.0, %remote, "peer NAT mapping moved (ESP)");
        sa.remote = remote;
        sa.local = local;
        for c in &sa.children {
            self.events.push_back(IkeEvent::ChildSaEndpoint {
                child: c.id,
                local,
                remote,
                encap: true,
            });
        }
        true
    }
}
