//! Handing a connected RFC 9329 stream (TCP or TLS, from the transport ladder) to the I/O
//! layer, which frames it and feeds it to the node like NAT-T datagrams.
//!
//! This build's `rampart-io` has no stream support yet (it lands with the gateway's stream
//! listeners): [`STREAMS`] is false, the ladder then runs UDP rungs only, and [`attach`]
//! refuses with a clear message.

use std::net::SocketAddr;

use rampart_io::runtime::Io;
use tokio::sync::mpsc;

/// Whether the I/O layer can carry streams.
pub const STREAMS: bool = false;

/// Attaches `stream` to `io` for datagrams between `local` and `remote`; when the stream
/// ends, its reason is sent on `closed`.
pub fn attach(
    _io: &mut Io,
    local: SocketAddr,
    remote: SocketAddr,
    _stream: rampart_connect::BoxStream,
    _closed: mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    Err(format!(
        "cannot carry the stream {local} -> {remote}: this build's I/O layer has no RFC 9329 stream support"
    ))
}
