//! RFC 7383 IKE fragmentation: splitting an encrypted message into SKF fragments, and bounded
//! reassembly of the peer's fragments.
//!
//! Sending: once both ends advertised IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT, an encrypted
//! message whose single-SK encoding exceeds the size limit is sent as SKF fragments instead. The
//! plaintext payload chain is cut into chunks; each chunk is padded, encrypted and authenticated on
//! its own (the associated data is the IKE header plus the SKF header with fragment number and
//! total). Only fragment 1 carries the type of the first inner payload.
//!
//! Receiving (invariants): a fragment is authenticated before anything is kept or discarded
//! because of it; at most one message is being reassembled per IKE SA, of at most
//! [`MAX_FRAGMENTS`] fragments and [`MAX_REASSEMBLY_BYTES`] plaintext bytes; a partial message is
//! dropped after [`REASSEMBLY_TIMEOUT`] or when an authenticated fragment of another message
//! arrives; a duplicate fragment number is ignored (the first copy wins). A fragment announcing
//! more fragments than the buffered ones restarts reassembly (the sender re-fragmented smaller,
//! RFC 7383 2.6.1); one announcing fewer is ignored.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use rampart_crypto::{CipherKey, Rng};
use rampart_wire::ike::{
    encode_payloads, parse_payloads, payload_type, Header, Payload, HEADER_LEN,
};

use crate::error::IkeError;
use crate::sk;

/// Most fragments a message of the peer may have.
pub(crate) const MAX_FRAGMENTS: u16 = 64;
/// Most plaintext bytes buffered for one message of the peer.
pub(crate) const MAX_REASSEMBLY_BYTES: usize = 64 * 1024;
/// A partially received message is dropped this long after its first fragment arrived.
pub(crate) const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(30);
/// IP (v4) + UDP + non-ESP marker. The marker is always accounted for, on either port.
const V4_OVERHEAD: usize = 20 + 8 + 4;
const V6_OVERHEAD: usize = 40 + 8 + 4;
/// IPv6 minimum link MTU: a smaller configured size is raised to this for IPv6 peers.
const V6_MIN: usize = 1280;
/// SKF generic payload header plus fragment number and total.
const SKF_HEADER_LEN: usize = 8;

/// Fragmentation state of one IKE SA.
#[derive(Debug, Default)]
pub(crate) struct FragState {
    /// `Some(largest IP datagram)` once both ends support fragmentation.
    pub size: Option<u16>,
    /// The peer's message being reassembled.
    pub inbound: Option<Reassembly>,
}

/// A message of the peer, partially received.
#[derive(Debug)]
pub(crate) struct Reassembly {
    msg_id: u32,
    response: bool,
    exchange: u8,
    total: u16,
    /// Type of the first inner payload, known once fragment 1 arrived.
    first_inner: u8,
    /// Decrypted content by fragment number - 1.
    parts: Vec<Option<Vec<u8>>>,
    received: u16,
    bytes: usize,
    expires: Instant,
}

/// One received SKF message (the last payload of a parsed message).
pub(crate) struct Fragment<'a> {
    pub msg: &'a [u8],
    pub header: Header,
    pub first_inner: u8,
    pub number: u16,
    pub total: u16,
    pub body: Range<usize>,
}

/// Why a fragment was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FragError {
    #[error("fragment announces {0} fragments (at most {max})", max = MAX_FRAGMENTS)]
    TooMany(u16),
    #[error("fragment number {number} of {total}")]
    BadNumber { number: u16, total: u16 },
    #[error("duplicate fragment {0}")]
    Duplicate(u16),
    #[error("fragment of an older fragmentation (total {got} < {have})")]
    Stale { got: u16, have: u16 },
    #[error("reassembled message would exceed {max} bytes", max = MAX_REASSEMBLY_BYTES)]
    TooLarge,
    #[error("{0}")]
    Invalid(#[from] IkeError),
}

impl FragState {
    /// Largest IKE message (UDP payload without the non-ESP marker) we may send to `remote`
    /// unfragmented, or `None` when fragmentation is not in use on this SA.
    pub(crate) fn limit(&self, remote: SocketAddr) -> Option<usize> {
        let size = usize::from(self.size?);
        Some(if remote.is_ipv4() {
            size.saturating_sub(V4_OVERHEAD)
        } else {
            size.max(V6_MIN) - V6_OVERHEAD
        })
    }

    /// When the partial message must be dropped.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.inbound.as_ref().map(|r| r.expires)
    }

    /// Drops a partial message whose time is up.
    pub(crate) fn expire(&mut self, now: Instant) {
        if self.inbound.as_ref().is_some_and(|r| r.expires <= now) {
            tracing::debug!("dropping incomplete fragmented message");
            self.inbound = None;
        }
    }

    /// Authenticates and keeps one fragment. The caller has checked that its message id is the
    /// one expected in its direction. Returns the inner payloads once the message is complete.
    pub(crate) fn accept(
        &mut self,
        now: Instant,
        f: Fragment<'_>,
        key: &CipherKey,
    ) -> Result<Option<Vec<Payload>>, FragError> {
        self.expire(now);
        if f.total > MAX_FRAGMENTS {
            return Err(FragError::TooMany(f.total));
        }
        if f.number == 0 || f.number > f.total {
            return Err(FragError::BadNumber {
                number: f.number,
                total: f.total,
            });
        }
        let idx = usize::from(f.number - 1);
        let response = f.header.is_response();
        let same = |r: &Reassembly| {
            r.msg_id == f.header.message_id
                && r.response == response
                && r.exchange == f.header.exchange
        };
        // Cheap checks before spending a decryption.
        if let Some(r) = self.inbound.as_ref().filter(|r| same(r)) {
            if f.total < r.total {
                return Err(FragError::Stale {
                    got: f.total,
                    have: r.total,
                });
            }
            if f.total == r.total && r.parts.get(idx).is_some_and(Option::is_some) {
                return Err(FragError::Duplicate(f.number));
            }
        }
        let data = sk::decrypt(f.msg, f.body, key)?;
        let restart = match self.inbound.as_ref() {
            Some(r) => !same(r) || f.total > r.total,
            None => true,
        };
        if restart {
            self.inbound = Some(Reassembly {
                msg_id: f.header.message_id,
                response,
                exchange: f.header.exchange,
                total: f.total,
                first_inner: 0,
                parts: vec![None; usize::from(f.total)],
                received: 0,
                bytes: 0,
                expires: now + REASSEMBLY_TIMEOUT,
            });
        }
        let Some(r) = self.inbound.as_mut() else {
            return Ok(None);
        };
        if r.bytes + data.len() > MAX_REASSEMBLY_BYTES {
            self.inbound = None;
            return Err(FragError::TooLarge);
        }
        let Some(slot) = r.parts.get_mut(idx) else {
            return Ok(None);
        };
        *slot = Some(data);
        if f.number == 1 {
            r.first_inner = f.first_inner;
        }
        r.bytes += slot.as_ref().map_or(0, Vec::len);
        r.received += 1;
        if r.received < r.total {
            return Ok(None);
        }
        let Some(r) = self.inbound.take() else {
            return Ok(None);
        };
        let mut whole = Vec::with_capacity(r.bytes);
        for p in r.parts.into_iter().flatten() {
            whole.extend_from_slice(&p);
        }
        Ok(Some(
            parse_payloads(r.first_inner, &whole).map_err(IkeError::from)?,
        ))
    }
}

/// Encrypts `inner` as one SK message, or, when that exceeds `limit`, as SKF fragments of at
/// most `limit` bytes each.
pub(crate) fn seal_message(
    header: &Header,
    inner: &[Payload],
    key: &CipherKey,
    rng: &mut Rng,
    limit: Option<usize>,
) -> Result<Vec<Vec<u8>>, IkeError> {
    let whole = sk::seal(header, inner, key, rng)?;
    match limit {
        Some(l) if whole.len() > l => seal_fragments(header, inner, key, rng, l),
        _ => Ok(vec![whole]),
    }
}

/// Encrypts `inner` as SKF fragments, each message at most `max_len` bytes.
pub(crate) fn seal_fragments(
    header: &Header,
    inner: &[Payload],
    key: &CipherKey,
    rng: &mut Rng,
    max_len: usize,
) -> Result<Vec<Vec<u8>>, IkeError> {
    let mut plain = Vec::with_capacity(2048);
    let first = encode_payloads(inner, &mut plain);
    let block = key.block_len().max(1);
    let room = max_len
        .checked_sub(HEADER_LEN + SKF_HEADER_LEN + key.iv_len() + key.icv_len())
        .ok_or(IkeError::TooLarge)?;
    // Room for padded plaintext, minus the pad length byte.
    let chunk = (room / block * block)
        .checked_sub(1)
        .filter(|c| *c > 0)
        .ok_or(IkeError::TooLarge)?;
    let total =
        u16::try_from(plain.len().div_ceil(chunk).max(1)).map_err(|_| IkeError::TooLarge)?;
    let mut out = Vec::with_capacity(usize::from(total));
    for (i, c) in plain.chunks(chunk).enumerate() {
        let number = i as u16 + 1;
        let mut extra = [0u8; 4];
        extra[..2].copy_from_slice(&number.to_be_bytes());
        extra[2..].copy_from_slice(&total.to_be_bytes());
        let next = if number == 1 {
            first
        } else {
            payload_type::NONE
        };
        out.push(sk::seal_plain(
            header,
            payload_type::SKF,
            next,
            &extra,
            c.to_vec(),
            key,
            rng,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_crypto::{Encr, Integ};
    use rampart_wire::ike::{exchange, flags, parse, Notify};

    fn keys(cbc: bool) -> (CipherKey, CipherKey) {
        let mk = || {
            if cbc {
                CipherKey::new(
                    Encr::AesCbc128,
                    &[4u8; 16],
                    Some((Integ::HmacSha256_128, &[5u8; 32])),
                )
                .unwrap()
            } else {
                CipherKey::new(Encr::AesGcm16_256, &[3u8; 36], None).unwrap()
            }
        };
        (mk(), mk())
    }

    fn header(mid: u32, response: bool) -> Header {
        Header {
            spi_i: 1,
            spi_r: 2,
            version: 0x20,
            exchange: exchange::IKE_AUTH,
            flags: if response {
                flags::RESPONSE
            } else {
                flags::INITIATOR
            },
            message_id: mid,
            ..Default::default()
        }
    }

    /// A notify and `n` bytes of certificates (in payloads of at most 16000 bytes).
    fn big_inner(n: usize) -> Vec<Payload> {
        let mut v = vec![Payload::Notify(Notify {
            protocol: 0,
            spi: vec![],
            kind: 16384,
            data: vec![7; 10],
        })];
        let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
        for c in data.chunks(16000) {
            v.push(Payload::Cert {
                encoding: 4,
                data: c.to_vec(),
            });
        }
        v
    }

    fn feed(
        st: &mut FragState,
        now: Instant,
        msg: &[u8],
        key: &CipherKey,
    ) -> Result<Option<Vec<Payload>>, FragError> {
        let m = parse(msg).unwrap();
        let Some(Payload::Skf {
            first_inner,
            number,
            total,
            body,
        }) = m.payloads.last().cloned()
        else {
            panic!("not SKF")
        };
        st.accept(
            now,
            Fragment {
                msg,
                header: m.header,
                first_inner,
                number,
                total,
                body,
            },
            key,
        )
    }

    #[test]
    fn split_respects_limit_and_reassembles_in_any_order() {
        for cbc in [false, true] {
            let (out, inn) = keys(cbc);
            let mut rng = Rng::from_seed([9; 32]);
            let inner = big_inner(3000);
            let frags = seal_fragments(&header(1, false), &inner, &out, &mut rng, 500).unwrap();
            assert!(frags.len() >= 7, "{}", frags.len());
            assert!(frags.iter().all(|f| f.len() <= 500));
            // A fragment larger than needed would have been possible only by wasting room.
            assert!(frags[0].len() > 500 - 16);
            let now = Instant::now();
            let mut st = FragState::default();
            let mut order: Vec<usize> = (0..frags.len()).rev().collect();
            order.swap(0, 2);
            let last = order.pop().unwrap();
            for i in order {
                assert!(feed(&mut st, now, &frags[i], &inn).unwrap().is_none());
            }
            assert!(matches!(
                feed(&mut st, now, &frags[1], &inn),
                Err(FragError::Duplicate(2))
            ));
            let got = feed(&mut st, now, &frags[last], &inn).unwrap().unwrap();
            assert_eq!(got, inner);
            assert!(st.inbound.is_none());
        }
    }

    #[test]
    fn forged_fragment_changes_nothing() {
        let (out, inn) = keys(false);
        let mut rng = Rng::from_seed([9; 32]);
        let frags =
            seal_fragments(&header(1, false), &big_inner(2000), &out, &mut rng, 600).unwrap();
        let now = Instant::now();
        let mut st = FragState::default();
        feed(&mut st, now, &frags[0], &inn).unwrap();
        // A forged fragment of a newer message must not evict the buffered one.
        let mut forged = seal_fragments(&header(2, false), &big_inner(2000), &out, &mut rng, 600)
            .unwrap()
            .remove(1);
        let n = forged.len();
        forged[n - 1] ^= 1;
        assert!(matches!(
            feed(&mut st, now, &forged, &inn),
            Err(FragError::Invalid(_))
        ));
        assert_eq!(st.inbound.as_ref().unwrap().msg_id, 1);
        assert_eq!(st.inbound.as_ref().unwrap().received, 1);
    }

    #[test]
    fn bounds_and_timeout() {
        let (out, inn) = keys(false);
        let mut rng = Rng::from_seed([9; 32]);
        // Too many fragments announced.
        let frags =
            seal_fragments(&header(1, false), &big_inner(20000), &out, &mut rng, 300).unwrap();
        assert!(frags.len() > usize::from(MAX_FRAGMENTS));
        let now = Instant::now();
        let mut st = FragState::default();
        assert!(matches!(
            feed(&mut st, now, &frags[0], &inn),
            Err(FragError::TooMany(_))
        ));
        assert!(st.inbound.is_none());
        // Too many bytes in total (60 fragments of ~1.4 KB).
        let frags = seal_fragments(&header(1, false), &big_inner(90_000), &out, &mut rng, 1500);
        let frags = frags.unwrap();
        assert!(frags.len() <= usize::from(MAX_FRAGMENTS));
        let mut res = Ok(None);
        for f in &frags {
            res = feed(&mut st, now, f, &inn);
            if res.is_err() {
                break;
            }
        }
        assert!(matches!(res, Err(FragError::TooLarge)), "{res:?}");
        assert!(st.inbound.is_none());
        // Timeout: an old partial message is dropped.
        let frags =
            seal_fragments(&header(3, false), &big_inner(2000), &out, &mut rng, 600).unwrap();
        feed(&mut st, now, &frags[0], &inn).unwrap();
        assert_eq!(st.deadline(), Some(now + REASSEMBLY_TIMEOUT));
        st.expire(now + REASSEMBLY_TIMEOUT);
        assert!(st.inbound.is_none());
    }

    #[test]
    fn newer_message_and_refragmentation_restart() {
        let (out, inn) = keys(false);
        let mut rng = Rng::from_seed([9; 32]);
        let now = Instant::now();
        let mut st = FragState::default();
        let inner = big_inner(2500);
        let coarse = seal_fragments(&header(1, false), &inner, &out, &mut rng, 1000).unwrap();
        let fine = seal_fragments(&header(1, false), &inner, &out, &mut rng, 600).unwrap();
        assert!(fine.len() > coarse.len());
        feed(&mut st, now, &coarse[0], &inn).unwrap();
        // Re-fragmented smaller: restart with the finer set; coarse fragments are then stale.
        feed(&mut st, now, &fine[1], &inn).unwrap();
        assert!(matches!(
            feed(&mut st, now, &coarse[1], &inn),
            Err(FragError::Stale { .. })
        ));
        let mut done = None;
        for f in &fine {
            match feed(&mut st, now, f, &inn) {
                Ok(Some(p)) => done = Some(p),
                Ok(None) | Err(FragError::Duplicate(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(done.unwrap(), inner);
        // An authenticated fragment of another message replaces a partial one.
        let m5 = seal_fragments(&header(5, false), &inner, &out, &mut rng, 600).unwrap();
        let m6 = seal_fragments(&header(6, true), &inner, &out, &mut rng, 600).unwrap();
        feed(&mut st, now, &m5[0], &inn).unwrap();
        feed(&mut st, now, &m6[0], &inn).unwrap();
        let r = st.inbound.as_ref().unwrap();
        assert!(r.msg_id == 6 && r.response && r.received == 1);
    }

    #[test]
    fn limits_by_family() {
        let st = FragState {
            size: Some(1280),
            inbound: None,
        };
        assert_eq!(st.limit("192.0.2.1:500".parse().unwrap()), Some(1248));
        assert_eq!(st.limit("[2001:db8::1]:500".parse().unwrap()), Some(1228));
        let small = FragState {
            size: Some(576),
            inbound: None,
        };
        assert_eq!(
            small.limit("[2001:db8::1]:500".parse().unwrap()),
            Some(1228)
        );
        assert_eq!(
            FragState::default().limit("192.0.2.1:500".parse().unwrap()),
            None
        );
    }
}
