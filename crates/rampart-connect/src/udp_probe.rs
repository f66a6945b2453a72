//! Is the gateway reachable over UDP? Sends an IKE_SA_INIT request that carries only a Nonce
//! payload (random SPIi, message ID 0) and waits for any IKE message carrying our SPIi back. A
//! Rampart gateway answers such a request statelessly (INVALID_SYNTAX for the missing SA and
//! KE payloads, or a COOKIE request when it is at its half-open threshold: the nonce is what a
//! cookie binds to) without creating any state, so the probe costs the gateway nothing and
//! proves the path works in both directions. A gateway that stays silent on malformed requests makes UDP lose to the
//! stream rungs, which still connect.
//!
//! On port 4500 (`nat_t`) the request carries the 4-byte non-ESP marker, as NAT-T requires.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rampart_wire::ike::{
    encode_header, exchange, flags, parse_header, Header, HEADER_LEN, VERSION_2_0,
};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// First retransmission interval; doubled after each send.
pub const FIRST_RETRANSMIT: Duration = Duration::from_millis(250);

/// Why the probe failed.
#[derive(Debug, Error)]
pub enum UdpProbeError {
    /// An ICMP error came back (port or host unreachable): UDP is blocked hard.
    #[error("{0}")]
    Unreachable(#[source] std::io::Error),
    #[error("no IKE answer within {0} ms")]
    Timeout(u128),
    #[error("UDP socket: {0}")]
    Socket(#[source] std::io::Error),
}

/// Probes `gateway` (port 500, or the NAT-T port with `nat_t`), retransmitting with backoff,
/// until an answer or `timeout`. Returns the time to the answer.
pub async fn probe(
    gateway: SocketAddr,
    nat_t: bool,
    timeout: Duration,
) -> Result<Duration, UdpProbeError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let bind = match gateway.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let sock = UdpSocket::bind(bind).await.map_err(UdpProbeError::Socket)?;
    sock.connect(gateway)
        .await
        .map_err(UdpProbeError::Unreachable)?;
    let mut spi = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut spi);
    let spi_i = u64::from_be_bytes(spi) | 1;
    let req = request(spi_i, nat_t);
    let mut interval = FIRST_RETRANSMIT;
    let mut buf = vec![0u8; 2048];
    loop {
        sock.send(&req).await.map_err(send_error)?;
        let resend = (Instant::now() + interval).min(deadline);
        interval *= 2;
        loop {
            match timeout_at(resend, sock.recv(&mut buf)).await {
                Err(_) if resend >= deadline => {
                    return Err(UdpProbeError::Timeout(timeout.as_millis()))
                }
                Err(_) => break,
                Ok(Err(e)) => return Err(send_error(e)),
                Ok(Ok(n)) => {
                    if is_answer(&buf[..n], spi_i, nat_t) {
                        return Ok(start.elapsed());
                    }
                }
            }
        }
    }
}

fn send_error(e: std::io::Error) -> UdpProbeError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused
        | std::io::ErrorKind::HostUnreachable
        | std::io::ErrorKind::NetworkUnreachable => UdpProbeError::Unreachable(e),
        _ => UdpProbeError::Socket(e),
    }
}

/// Payload type of Nonce (RFC 7296 3.9).
const NONCE: u8 = 40;
/// Bytes of the probe's nonce (RFC 7296 allows 16 to 256).
const NONCE_LEN: usize = 32;

/// The probe datagram: optional non-ESP marker, then an IKE_SA_INIT header and one Nonce
/// payload.
pub fn request(spi_i: u64, nat_t: bool) -> Vec<u8> {
    let len = HEADER_LEN + 4 + NONCE_LEN;
    let mut out = Vec::with_capacity(4 + len);
    if nat_t {
        out.extend_from_slice(&[0; 4]);
    }
    encode_header(
        &Header {
            spi_i,
            spi_r: 0,
            next_payload: NONCE,
            version: VERSION_2_0,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: len as u32,
        },
        &mut out,
    );
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((4 + NONCE_LEN) as u16).to_be_bytes());
    let mut nonce = [0u8; NONCE_LEN];
    let _ = aws_lc_rs::rand::fill(&mut nonce);
    out.extend_from_slice(&nonce);
    out
}

/// Whether `d` is an IKE response to our probe: right marker, our SPIi, the response flag,
/// IKEv2.
pub fn is_answer(d: &[u8], spi_i: u64, nat_t: bool) -> bool {
    let d = if nat_t {
        match d.strip_prefix(&[0u8; 4][..]) {
            Some(r) => r,
            None => return false,
        }
    } else {
        d
    };
    parse_header(d).is_ok_and(|h| h.spi_i == spi_i && h.is_response() && h.major_version() == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback stand-in for the gateway's stateless answer: echoes the header back with the
    /// response flag set and an INVALID_SYNTAX-sized body.
    async fn answering(nat_t: bool, drop_first: usize) -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut b = [0u8; 256];
            let mut seen = 0;
            loop {
                let (n, from) = s.recv_from(&mut b).await.unwrap();
                seen += 1;
                if seen <= drop_first {
                    continue;
                }
                let off = if nat_t { 4 } else { 0 };
                let mut h = parse_header(&b[off..n]).unwrap();
                assert_eq!(h.exchange, exchange::IKE_SA_INIT);
                h.flags = flags::RESPONSE;
                h.spi_r = 0;
                let mut out = vec![0u8; off];
                encode_header(&h, &mut out);
                // Something unrelated first: must be ignored.
                s.send_to(b"junk", from).await.unwrap();
                s.send_to(&out, from).await.unwrap();
            }
        });
        a
    }

    #[tokio::test]
    async fn answered() {
        for nat_t in [false, true] {
            let gw = answering(nat_t, 0).await;
            probe(gw, nat_t, Duration::from_secs(2)).await.unwrap();
        }
        // The first request lost: the retransmission gets through.
        let gw = answering(false, 1).await;
        let rtt = probe(gw, false, Duration::from_secs(2)).await.unwrap();
        assert!(rtt >= FIRST_RETRANSMIT, "{rtt:?}");
    }

    #[tokio::test]
    async fn silent_and_refused() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let e = probe(
            silent.local_addr().unwrap(),
            false,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, UdpProbeError::Timeout(300)), "{e:?}");
        let closed = silent.local_addr().unwrap();
        drop(silent);
        let e = probe(closed, false, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, UdpProbeError::Unreachable(_)), "{e:?}");
    }

    #[test]
    fn request_shape() {
        let r = request(7, true);
        assert_eq!(r.len(), 4 + 64);
        assert!(!is_answer(&r, 7, true), "a request is not an answer");
        let m = rampart_wire::ike::parse(&r[4..]).unwrap();
        let h = m.header;
        assert_eq!(
            (h.spi_i, h.exchange, h.flags, h.length),
            (7, 34, flags::INITIATOR, 64)
        );
        assert_eq!(m.payloads.len(), 1);
        let p = format!("{:?}", m.payloads[0]);
        assert!(p.contains("Nonce"), "{p}");
    }
}
