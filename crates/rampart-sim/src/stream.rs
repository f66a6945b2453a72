//! RFC 9329 streams over the simulated TCP: the byte pipe of one connection, plain or inside
//! TLS (Visitor Mode), and its framing. Both ends use it: the remote-access client
//! (`crate::client`) and the gateway's listeners (`crate::gateway_stream`).
//!
//! TLS is rustls driven in memory (`read_tls`/`write_tls` between the pipe and a smoltcp
//! socket), so it runs in virtual time like everything else. Record sizes depend only on the
//! configuration (the shipped test certificates are RSA: fixed-length signatures), so a seed
//! still gives the same timeline and the same byte counts.
//!
//! Invariants: what the pipe accepted is written to the socket in order; at most
//! [`QUEUE_LIMIT`] bytes wait for the socket (a frame beyond is dropped and counted, as the
//! I/O layer's write queue does); once the decoder or TLS failed, the pipe stays failed.

use std::io::{Read, Write};

use rampart_wire::tcp_encap::{self, Decoder, Frame, Role, NON_ESP_MARKER_LEN};
use smoltcp::socket::tcp;

/// Most bytes that may wait for one stream's TCP socket.
pub const QUEUE_LIMIT: usize = 1 << 20;

/// One RFC 9329 stream on a TCP socket.
pub(crate) struct Pipe {
    tls: Option<rustls::Connection>,
    /// Bytes for the TCP socket (TLS records, or the plain stream) from `wire_off` on.
    wire_out: Vec<u8>,
    wire_off: usize,
    decoder: Decoder,
    /// Frames dropped because the write queue was full.
    pub dropped: u64,
    failed: Option<String>,
}

impl Pipe {
    /// A pipe over a connected socket; `role` says whether the peer's stream starts with
    /// `IKETCP` (`Responder`: we accepted the connection).
    pub fn new(tls: Option<rustls::Connection>, role: Role) -> Pipe {
        let mut tls = tls;
        if let Some(c) = tls.as_mut() {
            c.set_buffer_limit(None);
        }
        Pipe {
            tls,
            wire_out: Vec::new(),
            wire_off: 0,
            decoder: Decoder::new(role, tcp_encap::MAX_FRAME_LEN),
            dropped: 0,
            failed: None,
        }
    }

    /// Still in the TLS handshake.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|c| c.is_handshaking())
    }

    /// The TLS connection, for the ALPN and SNI the handshake settled on.
    pub fn tls(&self) -> Option<&rustls::Connection> {
        self.tls.as_ref()
    }

    /// Why the stream cannot go on, once it cannot.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Bytes not yet in the socket's send buffer.
    pub fn queued(&self) -> usize {
        self.wire_out.len() - self.wire_off
    }

    /// Writes application bytes (the `IKETCP` prefix, frames): through TLS when there is TLS.
    pub fn send_plain(&mut self, data: &[u8]) {
        match self.tls.as_mut() {
            Some(c) => {
                // With no buffer limit, rustls takes everything (it queues plaintext during the
                // handshake and encrypts it afterwards).
                let _ = c.writer().write_all(data);
                if !c.is_handshaking() {
                    self.flush_tls();
                }
            }
            None => self.wire_out.extend_from_slice(data),
        }
    }

    /// Queues `datagram` (a non-ESP marker and IKE message, or an ESP packet, as the engine
    /// sends to a NAT-T port) as one frame. A keepalive is not sent over a stream (RFC 9329);
    /// what is neither is not sent either. `false` when the frame was dropped.
    pub fn send_datagram(&mut self, datagram: &[u8]) -> bool {
        let frame = match tcp_encap::classify(datagram) {
            Ok(Frame::Keepalive) => return true,
            Ok(f) => f,
            Err(_) => return false,
        };
        let len = tcp_encap::LENGTH_LEN + datagram.len();
        if len > tcp_encap::MAX_FRAME_LEN || self.queued() + len > QUEUE_LIMIT {
            self.dropped += 1;
            return false;
        }
        let mut buf = vec![0u8; len];
        match tcp_encap::encode_frame(frame, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                self.send_plain(&buf);
                true
            }
            Err(_) => false,
        }
    }

    fn flush_tls(&mut self) {
        if let Some(c) = self.tls.as_mut() {
            while c.wants_write() {
                match c.write_tls(&mut self.wire_out) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    }

    /// Moves queued bytes into the socket's send buffer; `true` when something moved.
    pub fn pump_out(&mut self, s: &mut tcp::Socket) -> bool {
        self.flush_tls();
        let mut moved = false;
        while self.wire_off < self.wire_out.len() && s.can_send() {
            match s.send_slice(&self.wire_out[self.wire_off..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.wire_off += n;
                    moved = true;
                }
            }
        }
        if self.wire_off == self.wire_out.len() {
            self.wire_out.clear();
            self.wire_off = 0;
        } else if self.wire_off > 64 * 1024 {
            self.wire_out.drain(..self.wire_off);
            self.wire_off = 0;
        }
        moved
    }

    /// Reads what the socket received, decrypts it when there is TLS, and appends each
    /// complete frame to `datagrams` in the form the engine takes from a NAT-T socket (IKE with
    /// its non-ESP marker, ESP as it is). Returns whether anything was read; a failure is kept
    /// in [`Pipe::failure`].
    pub fn pump_in(
        &mut self,
        s: &mut tcp::Socket,
        scratch: &mut [u8],
        datagrams: &mut Vec<Vec<u8>>,
    ) -> bool {
        let mut progress = false;
        while self.failed.is_none() && s.can_recv() {
            let n = match s.recv_slice(scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            progress = true;
            if self.tls.is_some() {
                let mut rest = &scratch[..n];
                while !rest.is_empty() {
                    let Some(c) = self.tls.as_mut() else { break };
                    match c.read_tls(&mut rest) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            self.failed = Some(format!("TLS: {e}"));
                            return progress;
                        }
                    }
                    if let Err(e) = c.process_new_packets() {
                        self.failed = Some(format!("TLS: {e}"));
                        // The alert, if any, still goes out.
                        self.flush_tls();
                        return progress;
                    }
                    // rustls holds little decrypted data: take it after every record.
                    self.read_plain(datagrams);
                }
            } else {
                let mut rest = &scratch[..n];
                while !rest.is_empty() && self.failed.is_none() {
                    let took = self.decoder.push(rest);
                    rest = &rest[took..];
                    self.take_frames(datagrams);
                    if took == 0 && !rest.is_empty() {
                        self.failed = Some("frame decoder stuck".into());
                    }
                }
            }
        }
        progress
    }

    /// Decrypted bytes into the decoder, frames out.
    fn read_plain(&mut self, datagrams: &mut Vec<Vec<u8>>) {
        loop {
            let Some(c) = self.tls.as_mut() else { return };
            let spare = self.decoder.spare();
            if spare.is_empty() {
                break;
            }
            match c.reader().read(spare) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.decoder.commit(n);
                    self.take_frames(datagrams);
                    if self.failed.is_some() {
                        return;
                    }
                }
            }
        }
    }

    fn take_frames(&mut self, datagrams: &mut Vec<Vec<u8>>) {
        loop {
            match self.decoder.next_frame() {
                Ok(None) => return,
                Ok(Some(Frame::Keepalive)) => {}
                Ok(Some(Frame::Ike(m))) => {
                    let mut d = Vec::with_capacity(NON_ESP_MARKER_LEN + m.len());
                    d.extend_from_slice(&[0; NON_ESP_MARKER_LEN]);
                    d.extend_from_slice(m);
                    datagrams.push(d);
                }
                Ok(Some(Frame::Esp(p))) => datagrams.push(p.to_vec()),
                Err(e) => {
                    self.failed = Some(format!("not an RFC 9329 stream: {e}"));
                    return;
                }
            }
        }
    }
}
