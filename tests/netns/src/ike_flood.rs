//! A half-open IKE_SA_INIT flood for the cookie tests: many UDP sockets of one address (so many
//! source ports) each send fresh IKE_SA_INIT requests and never continue the exchange. Replies are
//! read back and classified, so a test sees exactly when the responder switched to cookies.
//!
//! The requests are encoded by hand (this crate does not link the rampart codec on purpose: it
//! checks the real binary from the outside): SA with one IKE proposal
//! aes256gcm16-prfsha256-x25519, KE (group 31, random public value) and a 32-byte nonce.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

const SA: u8 = 33;
const KE: u8 = 34;
const NONCE: u8 = 40;
const NOTIFY: u8 = 41;
const COOKIE: u16 = 16390;
const IKE_SA_INIT: u8 = 34;

/// An IKE_SA_INIT request with initiator SPI `spi_i`, offering aes256gcm16-prfsha256-x25519.
pub fn ike_sa_init(spi_i: u64, ke: &[u8; 32], nonce: &[u8; 32]) -> Vec<u8> {
    // Transforms: ENCR 20 (AES-GCM-16) with Key Length 256, PRF 5 (HMAC-SHA2-256), DH 31.
    let mut transforms = Vec::new();
    transforms.extend_from_slice(&[3, 0, 0, 12, 1, 0, 0, 20, 0x80, 14, 1, 0]);
    transforms.extend_from_slice(&[3, 0, 0, 8, 2, 0, 0, 5]);
    transforms.extend_from_slice(&[0, 0, 0, 8, 4, 0, 0, 31]);
    let prop_len = 8 + transforms.len();
    let mut sa = vec![0, 0];
    sa.extend_from_slice(&(prop_len as u16).to_be_bytes());
    sa.extend_from_slice(&[1, 1, 0, 3]); // proposal 1, protocol IKE, no SPI, 3 transforms
    sa.extend_from_slice(&transforms);
    let mut ke_body = vec![0, 31, 0, 0];
    ke_body.extend_from_slice(ke);
    let payloads: [(u8, &[u8]); 3] = [(SA, &sa), (KE, &ke_body), (NONCE, nonce)];
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(&spi_i.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&[SA, 0x20, IKE_SA_INIT, 0x08, 0, 0, 0, 0, 0, 0, 0, 0]);
    for (i, (_, body)) in payloads.iter().enumerate() {
        let next = payloads.get(i + 1).map_or(0, |p| p.0);
        out.push(next);
        out.push(0);
        out.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let len = out.len() as u32;
    out[24..28].copy_from_slice(&len.to_be_bytes());
    out
}

/// What a responder answered to an IKE_SA_INIT request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitReply {
    /// A COOKIE notify: no state was created.
    Cookie(Vec<u8>),
    /// An SA payload: the responder created a half-open IKE SA.
    Proceed,
    /// Anything else (an error notify, ...).
    Other,
}

/// Classifies an IKE_SA_INIT response; `None` when it is not one.
pub fn classify(msg: &[u8]) -> Option<InitReply> {
    if msg.len() < 28 || msg[18] != IKE_SA_INIT || msg[19] & 0x20 == 0 {
        return None;
    }
    let mut next = msg[16];
    let mut pos = 28;
    let mut reply = InitReply::Other;
    while next != 0 {
        let h = msg.get(pos..pos + 4)?;
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let body = msg.get(pos + 4..pos + len)?;
        match next {
            SA => reply = InitReply::Proceed,
            NOTIFY if body.len() >= 4 && u16::from_be_bytes([body[2], body[3]]) == COOKIE => {
                let spi_len = usize::from(body[1]);
                return Some(InitReply::Cookie(body.get(4 + spi_len..)?.to_vec()));
            }
            _ => {}
        }
        next = h[0];
        pos += len.max(4);
    }
    Some(reply)
}

/// Totals of a flood.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodReport {
    pub sent: u64,
    pub cookies: u64,
    pub proceeds: u64,
    pub others: u64,
}

/// Floods `target` from `sockets` source ports starting at `first_port` on `local` (in the
/// calling thread's namespace) until `stop` is set: every round each socket sends one new
/// request (fresh SPI, KE and nonce), then replies are collected for `pace`.
pub fn flood(
    local: std::net::IpAddr,
    first_port: u16,
    sockets: u16,
    target: SocketAddr,
    pace: Duration,
    stop: Arc<AtomicBool>,
) -> Result<FloodReport, String> {
    let rng = SystemRandom::new();
    let mut socks = Vec::new();
    for i in 0..sockets {
        let addr = SocketAddr::new(local, first_port + i);
        let s = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        socks.push(s);
    }
    let mut report = FloodReport::default();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        for s in &socks {
            let mut r = [0u8; 8 + 32 + 32];
            rng.fill(&mut r).map_err(|_| "rng".to_string())?;
            let spi = u64::from_be_bytes(r[..8].try_into().unwrap_or_default()) | 1;
            let ke: [u8; 32] = r[8..40].try_into().unwrap_or_default();
            let nonce: [u8; 32] = r[40..].try_into().unwrap_or_default();
            s.send_to(&ike_sa_init(spi, &ke, &nonce), target)
                .map_err(|e| format!("send to {target}: {e}"))?;
            report.sent += 1;
        }
        std::thread::sleep(pace);
        for s in &socks {
            while let Ok((n, _)) = s.recv_from(&mut buf) {
                match classify(&buf[..n]) {
                    Some(InitReply::Cookie(_)) => report.cookies += 1,
                    Some(InitReply::Proceed) => report.proceeds += 1,
                    Some(InitReply::Other) | None => report.others += 1,
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_well_formed() {
        let m = ike_sa_init(0x1122, &[1; 32], &[2; 32]);
        assert_eq!(m.len(), 28 + 40 + 40 + 36);
        assert_eq!(
            u32::from_be_bytes(m[24..28].try_into().unwrap()) as usize,
            m.len()
        );
        // Not a response: classify refuses it.
        assert_eq!(classify(&m), None);
        let mut r = m.clone();
        r[19] = 0x20;
        assert_eq!(classify(&r), Some(InitReply::Proceed));
        // A cookie reply: header + N(COOKIE).
        let mut c = m[..28].to_vec();
        c[16] = NOTIFY;
        c[19] = 0x20;
        c.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0x40, 0x06, 9, 9, 9, 9]);
        assert_eq!(classify(&c), Some(InitReply::Cookie(vec![9; 4])));
        assert_eq!(classify(&c[..30]), None);
    }
}
