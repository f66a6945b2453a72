//! Handing a connected RFC 9329 stream (TCP or TLS, from the transport ladder) to the I/O
//! layer, which frames it and feeds it to the node like NAT-T datagrams
//! (`rampart_io::runtime::Io::attach_stream`). When the stream ends, the reason reaches the
//! session, which rebuilds the tunnel.

use std::net::SocketAddr;

use rampart_io::runtime::Io;
use rampart_io::stream::StreamEvent;
use tokio::sync::mpsc;

/// Whether the I/O layer can carry streams (the ladder offers stream rungs only then).
pub const STREAMS: bool = true;

/// Attaches `stream` to `io` for datagrams between `local` and `remote`; when the stream
/// ends, its reason is sent on `closed`. Inside a tokio runtime.
pub fn attach(
    io: &mut Io,
    local: SocketAddr,
    remote: SocketAddr,
    stream: rampart_connect::BoxStream,
    closed: mpsc::UnboundedSender<String>,
) -> Result<(), String> {
    let (events, mut rx) = mpsc::unbounded_channel::<StreamEvent>();
    io.stream_events = Some(events);
    io.attach_stream(local, remote, Box::new(stream));
    tokio::spawn(async move {
        while let Some(StreamEvent::Closed { remote: r, reason }) = rx.recv().await {
            if r == remote && closed.send(reason).is_err() {
                break;
            }
        }
    });
    Ok(())
}
