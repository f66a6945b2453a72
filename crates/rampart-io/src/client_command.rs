//! Requests of a remote-access client's shell to its running event loop, which owns the node
//! and the sockets.
//!
//! [`ClientCommand::Roam`]: the host's address towards the gateway changed. The loop opens the
//! IKE, NAT-T and raw ESP sockets of the new address (the client's sockets are bound to one
//! address each, so a new source address needs its own), asks the node to move its IKE SAs
//! there ([`Node::roam`], MOBIKE), sends what that produced and answers with the outcome.
//! Sockets of the old address stay open until the loop ends (the address may come back).
//!
//! [`ClientCommand::Reattach`] and [`ClientCommand::CheckStream`]: the shell's side of RFC 9329
//! stream re-attach (a new stream for the existing IKE SA after the old one was lost, e.g. a
//! cluster failover), and the check of a stream that went silent.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rampart_node::{ClientTraffic, Node, RoamOutcome, StreamRenewal};
use tokio::sync::oneshot;

use crate::raw_esp::RawEspSocket;
use crate::runtime::Io;
use crate::stream::BoxStream;
use crate::udp::UdpEndpoint;
use crate::IoError;

/// What a client shell asks of its event loop.
pub enum ClientCommand {
    /// Move the tunnel to `new_local` (see the module documentation). `ports`: the IKE and
    /// NAT-T ports of the node's configuration.
    Roam {
        new_local: IpAddr,
        ports: [u16; 2],
        reply: oneshot::Sender<RoamOutcome>,
    },
    /// RFC 9329 re-attach: the stream to the gateway was lost and the shell connected a new
    /// one on the same path. The loop attaches it for datagrams between `local` and `remote`
    /// (in place of the old one) and asks the node to speak on it at once
    /// ([`Node::stream_renewed`]); the reply says what each IKE SA sent.
    Reattach {
        local: SocketAddr,
        remote: SocketAddr,
        stream: BoxStream,
        reply: oneshot::Sender<Vec<(String, StreamRenewal)>>,
    },
    /// The attached stream looks silent: the node sends an authenticated request on it
    /// ([`Node::stream_renewed`]), whose answer shows the stream still works.
    CheckStream {
        reply: oneshot::Sender<Vec<(String, StreamRenewal)>>,
    },
    /// When the gateway was last heard and the ESP packets sent so far
    /// ([`Node::client_traffic`]): the shell's watch of a UDP tunnel that has other entry
    /// points to move to.
    Traffic {
        reply: oneshot::Sender<Option<ClientTraffic>>,
    },
}

impl std::fmt::Debug for ClientCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientCommand::Roam {
                new_local, ports, ..
            } => f
                .debug_struct("Roam")
                .field("new_local", new_local)
                .field("ports", ports)
                .finish_non_exhaustive(),
            ClientCommand::Reattach { local, remote, .. } => f
                .debug_struct("Reattach")
                .field("local", local)
                .field("remote", remote)
                .finish_non_exhaustive(),
            ClientCommand::CheckStream { .. } => {
                f.debug_struct("CheckStream").finish_non_exhaustive()
            }
            ClientCommand::Traffic { .. } => f.debug_struct("Traffic").finish_non_exhaustive(),
        }
    }
}

impl Io {
    /// Opens the UDP sockets of `local` on `ports` and its raw ESP socket, those it has not
    /// yet. All or nothing.
    pub fn open_local_sockets(&mut self, local: IpAddr, ports: [u16; 2]) -> Result<(), IoError> {
        let mut udp = Vec::new();
        for port in ports {
            let addr = SocketAddr::new(local, port);
            if self.udp_for(addr).is_none() {
                udp.push(UdpEndpoint::bind(addr)?);
            }
        }
        let raw = if self.raw.iter().any(|r| r.local() == local) {
            None
        } else {
            Some(RawEspSocket::open(local)?)
        };
        if self.no_fragmentation {
            for u in &udp {
                if let Err(e) = u.forbid_fragmentation() {
                    tracing::warn!("UDP {}: cannot set DF (IP_PMTUDISC_PROBE): {e}", u.local());
                }
            }
            if let Some(r) = &raw {
                if let Err(e) = r.forbid_fragmentation() {
                    tracing::warn!(
                        "raw ESP {}: cannot set DF (IP_PMTUDISC_PROBE): {e}",
                        r.local()
                    );
                }
            }
        }
        self.udp.extend(udp);
        self.raw.extend(raw);
        Ok(())
    }
}

/// Carries out `command` on `node` (the caller drains the node's outputs afterwards).
pub(crate) fn handle<N: Node>(node: &mut N, io: &mut Io, command: ClientCommand) {
    match command {
        ClientCommand::Roam {
            new_local,
            ports,
            reply,
        } => {
            let outcome = match io.open_local_sockets(new_local, ports) {
                Ok(()) => node.roam(Instant::now(), new_local),
                Err(e) => {
                    tracing::warn!("roam to {new_local}: cannot open its sockets: {e}");
                    RoamOutcome::Unsupported(format!("cannot open sockets on {new_local}: {e}"))
                }
            };
            let _ = reply.send(outcome);
        }
        ClientCommand::Reattach {
            local,
            remote,
            stream,
            reply,
        } => {
            io.attach_stream(local, remote, stream);
            let _ = reply.send(node.stream_renewed(Instant::now()));
        }
        ClientCommand::CheckStream { reply } => {
            let _ = reply.send(node.stream_renewed(Instant::now()));
        }
        ClientCommand::Traffic { reply } => {
            let _ = reply.send(node.client_traffic());
        }
    }
}
