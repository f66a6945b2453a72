//! Record bodies: what a connection, an SA and a tunnel's counters look like on the sync
//! channels.
//!
//! Connections are hand-packed (they are the bulk: an IPv4 connection without NAT is about 25
//! bytes, with hide NAT about 32): a flags byte, the originator tuple, the translated tuple as
//! the fields that differ, the state, rule and service, NAT, and times as LEB128 milliseconds
//! relative to the instant the record was made. Packet and byte counters are not carried.
//! SAs ([`SaSnapshot`]) and tunnel counters use postcard (serde, compact varints).
//!
//! ```text
//! ConnUpsert  flags orig [xlat fields] state rule service [nat_kind nat_rule] age idle expires_in isns
//! ConnUpsert  flags(UPDATE) orig state expires_in isns           (a state/timeout change)
//! ConnDelete  flags orig
//! tuple       src(4|16) dst(4|16) sport(2) dport(2) proto(1)
//! state       CLIENT_ISN(0x80) | SERVER_ISN(0x40) | state (0..=19)
//! isns        [client_isn(4)] [server_isn(4)]                   (as the state byte's bits say)
//! ```
//!
//! The handshake's ISNs (TCP handshake enforcement, `[cluster] enhanced_handshake`) are an
//! addition: a record without them is byte for byte what it was before, so a member that does
//! not enforce sends what older members read, and a record from an older member decodes with
//! the ISNs unknown. (An older member refuses a record that carries ISNs: its state byte is out
//! of its range. Enforcement needs every member upgraded.)

use rampart_esp::{InboundState, OutboundState};
use rampart_inspect::tcp::{Handshake, TcpState};
use rampart_inspect::{
    Change, ConnState, Connection, FlowTuple, NatKind, NatState, Side, CLOCK_BASE_MS,
};

use crate::SaSnapshot;

const UPDATE: u8 = 1 << 0;
const TUNNEL_SIDE: u8 = 1 << 1;
const V6: u8 = 1 << 2;
const X_SRC: u8 = 1 << 3;
const X_DST: u8 = 1 << 4;
const X_SPORT: u8 = 1 << 5;
const X_DPORT: u8 = 1 << 6;
const NAT: u8 = 1 << 7;
/// State byte: the client's ISN follows the record's other fields.
const CLIENT_ISN: u8 = 1 << 7;
/// State byte: the server's ISN follows (after the client's, when both are there).
const SERVER_ISN: u8 = 1 << 6;
/// State byte: the bits of the state itself.
const STATE_BITS: u8 = 0x1f;

/// A record body that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0} record")]
pub struct DecodeError(pub &'static str);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn err(&self) -> DecodeError {
        DecodeError(self.what)
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.err());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err())
    }
    fn addr(&mut self, v6: bool) -> Result<[u8; 16], DecodeError> {
        let mut a = [0u8; 16];
        let n = if v6 { 16 } else { 4 };
        a[..n].copy_from_slice(self.bytes(n)?);
        Ok(a)
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err())
        }
    }
}

fn addr_len(v6: bool) -> usize {
    if v6 {
        16
    } else {
        4
    }
}

fn put_tuple(out: &mut Vec<u8>, t: &FlowTuple) {
    let n = addr_len(t.v6);
    out.extend_from_slice(&t.src[..n]);
    out.extend_from_slice(&t.dst[..n]);
    out.extend_from_slice(&t.sport.to_be_bytes());
    out.extend_from_slice(&t.dport.to_be_bytes());
    out.push(t.proto);
}

fn tuple(r: &mut Reader<'_>, v6: bool) -> Result<FlowTuple, DecodeError> {
    Ok(FlowTuple {
        src: r.addr(v6)?,
        dst: r.addr(v6)?,
        sport: r.u16()?,
        dport: r.u16()?,
        proto: r.u8()?,
        v6,
    })
}

const TCP_STATES: [TcpState; 8] = [
    TcpState::SynSent,
    TcpState::SynReceived,
    TcpState::Established,
    TcpState::FinOrig,
    TcpState::FinReply,
    TcpState::LastAck,
    TcpState::TimeWait,
    TcpState::Closed,
];

fn state_byte(s: ConnState) -> u8 {
    match s {
        ConnState::Tcp(t) => TCP_STATES.iter().position(|x| *x == t).unwrap_or(0) as u8,
        ConnState::UdpUnreplied => 16,
        ConnState::UdpReplied => 17,
        ConnState::IcmpEcho => 18,
        ConnState::Other => 19,
    }
}

fn state_of(b: u8) -> Option<ConnState> {
    Some(match b {
        0..=7 => ConnState::Tcp(TCP_STATES[usize::from(b)]),
        16 => ConnState::UdpUnreplied,
        17 => ConnState::UdpReplied,
        18 => ConnState::IcmpEcho,
        19 => ConnState::Other,
        _ => return None,
    })
}

/// The state byte of a record: the state and which ISNs follow.
fn state_and_isns(s: ConnState, hs: &Handshake) -> u8 {
    let mut b = state_byte(s);
    if hs.client_isn.is_some() {
        b |= CLIENT_ISN;
    }
    if hs.server_isn.is_some() {
        b |= SERVER_ISN;
    }
    b
}

fn put_isns(out: &mut Vec<u8>, hs: &Handshake) {
    for isn in [hs.client_isn, hs.server_isn].into_iter().flatten() {
        out.extend_from_slice(&isn.to_be_bytes());
    }
}

/// The state of a state byte; reserved bits set are malformed.
fn state_of_byte(b: u8) -> Option<ConnState> {
    if b & !(CLIENT_ISN | SERVER_ISN | STATE_BITS) != 0 {
        return None;
    }
    state_of(b & STATE_BITS)
}

/// The ISNs a state byte announces, read from the end of the record.
fn isns(r: &mut Reader<'_>, state_byte: u8) -> Result<Handshake, DecodeError> {
    let mut read = |bit: u8| -> Result<Option<u32>, DecodeError> {
        if state_byte & bit == 0 {
            return Ok(None);
        }
        let b = r.bytes(4)?;
        Ok(Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    };
    let client_isn = read(CLIENT_ISN)?;
    let server_isn = read(SERVER_ISN)?;
    Ok(Handshake {
        client_isn,
        server_isn,
    })
}

fn nat_kind_byte(k: NatKind) -> u8 {
    match k {
        NatKind::None => 0,
        NatKind::Hide => 1,
        NatKind::Static => 2,
        NatKind::Pool => 3,
    }
}

fn nat_kind_of(b: u8) -> Option<NatKind> {
    Some(match b {
        0 => NatKind::None,
        1 => NatKind::Hide,
        2 => NatKind::Static,
        3 => NatKind::Pool,
        _ => return None,
    })
}

fn side_flag(side: Side) -> u8 {
    if side == Side::Tunnel {
        TUNNEL_SIDE
    } else {
        0
    }
}

fn side_of(flags: u8) -> Side {
    if flags & TUNNEL_SIDE != 0 {
        Side::Tunnel
    } else {
        Side::Inside
    }
}

/// A connection-table change as a record: `(kind, key, body)`. `Created` and `Updated` are
/// `ConnUpsert`, `Deleted` is `ConnDelete`; the key is the connection id.
pub fn encode_change(change: &Change, out: &mut Vec<u8>) -> (rampart_cluster::RecordKind, u64) {
    use rampart_cluster::RecordKind;
    match change {
        Change::Created(c) => {
            encode_conn(c, out);
            (RecordKind::ConnUpsert, c.id)
        }
        Change::Updated {
            id,
            init_side,
            orig,
            state,
            expires_ms,
            handshake,
        } => {
            let mut flags = UPDATE | side_flag(*init_side);
            if orig.v6 {
                flags |= V6;
            }
            out.push(flags);
            put_tuple(out, orig);
            out.push(state_and_isns(*state, handshake));
            put_varint(out, expires_ms.saturating_sub(CLOCK_BASE_MS));
            put_isns(out, handshake);
            (RecordKind::ConnUpsert, *id)
        }
        Change::Deleted {
            id,
            init_side,
            orig,
        } => {
            let mut flags = side_flag(*init_side);
            if orig.v6 {
                flags |= V6;
            }
            out.push(flags);
            put_tuple(out, orig);
            (RecordKind::ConnDelete, *id)
        }
    }
}

/// A connection (times on the export clock, see [`Connection`]) as a `ConnUpsert` body.
pub fn encode_conn(c: &Connection, out: &mut Vec<u8>) {
    let (o, x) = (&c.orig, &c.xlat);
    let mut flags = side_flag(c.init_side);
    if o.v6 {
        flags |= V6;
    }
    if x.src != o.src {
        flags |= X_SRC;
    }
    if x.dst != o.dst {
        flags |= X_DST;
    }
    if x.sport != o.sport {
        flags |= X_SPORT;
    }
    if x.dport != o.dport {
        flags |= X_DPORT;
    }
    if c.nat.kind != NatKind::None {
        flags |= NAT;
    }
    out.push(flags);
    put_tuple(out, o);
    let n = addr_len(o.v6);
    if flags & X_SRC != 0 {
        out.extend_from_slice(&x.src[..n]);
    }
    if flags & X_DST != 0 {
        out.extend_from_slice(&x.dst[..n]);
    }
    if flags & X_SPORT != 0 {
        out.extend_from_slice(&x.sport.to_be_bytes());
    }
    if flags & X_DPORT != 0 {
        out.extend_from_slice(&x.dport.to_be_bytes());
    }
    out.push(state_and_isns(c.state, &c.handshake));
    // Rule and service indices are small; NO_RULE/NO_SERVICE (u16::MAX) cost 3 bytes.
    put_varint(out, u64::from(c.rule));
    put_varint(out, u64::from(c.service));
    if flags & NAT != 0 {
        out.push(nat_kind_byte(c.nat.kind));
        put_varint(out, u64::from(c.nat.rule));
    }
    put_varint(out, CLOCK_BASE_MS.saturating_sub(c.created_ms));
    put_varint(out, CLOCK_BASE_MS.saturating_sub(c.last_seen_ms));
    put_varint(out, c.expires_ms.saturating_sub(CLOCK_BASE_MS));
    put_isns(out, &c.handshake);
}

/// A `ConnUpsert` or `ConnDelete` body back as the change to apply (`id` from the key).
pub fn decode_change(
    kind: rampart_cluster::RecordKind,
    id: u64,
    body: &[u8],
) -> Result<Change, DecodeError> {
    use rampart_cluster::RecordKind;
    let mut r = Reader {
        buf: body,
        what: "connection",
    };
    let flags = r.u8()?;
    let v6 = flags & V6 != 0;
    let init_side = side_of(flags);
    let orig = tuple(&mut r, v6)?;
    let change = match kind {
        RecordKind::ConnDelete => Change::Deleted {
            id,
            init_side,
            orig,
        },
        RecordKind::ConnUpsert if flags & UPDATE != 0 => {
            let sb = r.u8()?;
            let state = state_of_byte(sb).ok_or(r.err())?;
            let expires_ms = CLOCK_BASE_MS.saturating_add(r.varint()?);
            let handshake = isns(&mut r, sb)?;
            Change::Updated {
                id,
                init_side,
                orig,
                state,
                expires_ms,
                handshake,
            }
        }
        RecordKind::ConnUpsert => {
            let mut xlat = orig;
            if flags & X_SRC != 0 {
                xlat.src = r.addr(v6)?;
            }
            if flags & X_DST != 0 {
                xlat.dst = r.addr(v6)?;
            }
            if flags & X_SPORT != 0 {
                xlat.sport = r.u16()?;
            }
            if flags & X_DPORT != 0 {
                xlat.dport = r.u16()?;
            }
            let sb = r.u8()?;
            let state = state_of_byte(sb).ok_or(r.err())?;
            let small = |v: u64| u16::try_from(v).map_err(|_| DecodeError("connection"));
            let rule = small(r.varint()?)?;
            let service = small(r.varint()?)?;
            let nat = if flags & NAT != 0 {
                let kind = nat_kind_of(r.u8()?).ok_or(r.err())?;
                NatState {
                    kind,
                    rule: small(r.varint()?)?,
                }
            } else {
                NatState {
                    kind: NatKind::None,
                    rule: 0,
                }
            };
            let created_ms = CLOCK_BASE_MS.saturating_sub(r.varint()?);
            let last_seen_ms = CLOCK_BASE_MS.saturating_sub(r.varint()?);
            let expires_ms = CLOCK_BASE_MS.saturating_add(r.varint()?);
            let handshake = isns(&mut r, sb)?;
            Change::Created(Connection {
                id,
                orig,
                xlat,
                init_side,
                state,
                rule,
                service,
                nat,
                created_ms,
                last_seen_ms,
                expires_ms,
                packets: [0; 2],
                bytes: [0; 2],
                handshake,
            })
        }
        _ => return Err(DecodeError("connection")),
    };
    r.end()?;
    Ok(change)
}

/// An SA snapshot as an `SaUpsert` body.
pub fn encode_sa(sa: &SaSnapshot) -> Vec<u8> {
    postcard::to_allocvec(sa).expect("an SA snapshot serialises")
}

pub fn decode_sa(body: &[u8]) -> Result<SaSnapshot, DecodeError> {
    postcard::from_bytes(body).map_err(|_| DecodeError("SA"))
}

/// An `SaUpsert` body of a Load Sharing full sync: the member that owns the SA (one byte),
/// then [`encode_sa`]. The snapshot carries every member's SAs, so it names their owners.
pub fn encode_owned_sa(owner: u8, sa: &SaSnapshot) -> Vec<u8> {
    let mut body = vec![owner];
    body.extend_from_slice(&encode_sa(sa));
    body
}

pub fn decode_owned_sa(body: &[u8]) -> Result<(u8, SaSnapshot), DecodeError> {
    let (&owner, rest) = body.split_first().ok_or(DecodeError("SA"))?;
    Ok((owner, decode_sa(rest)?))
}

/// One tunnel's counters as an `EspCounters` body (key: the CHILD SA id).
pub fn encode_esp(outbound: &OutboundState, inbound: &InboundState) -> Vec<u8> {
    postcard::to_allocvec(&(outbound, inbound)).expect("ESP state serialises")
}

pub fn decode_esp(body: &[u8]) -> Result<(OutboundState, InboundState), DecodeError> {
    postcard::from_bytes(body).map_err(|_| DecodeError("ESP counters"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_cluster::RecordKind;
    use std::net::IpAddr;

    fn conn(nat: bool) -> Connection {
        let a: IpAddr = "10.1.0.5".parse().unwrap();
        let b: IpAddr = "10.2.0.7".parse().unwrap();
        let orig = FlowTuple::new(a, b, 6, 40000, 443);
        let mut xlat = orig;
        if nat {
            xlat = FlowTuple::new("10.1.0.1".parse().unwrap(), b, 6, 61000, 443);
        }
        Connection {
            id: 0x0001_0000_0000_1234,
            orig,
            xlat,
            init_side: Side::Inside,
            state: ConnState::Tcp(TcpState::Established),
            rule: 3,
            service: 2,
            nat: NatState {
                kind: if nat { NatKind::Hide } else { NatKind::None },
                rule: if nat { 1 } else { 0 },
            },
            created_ms: CLOCK_BASE_MS - 125_000,
            last_seen_ms: CLOCK_BASE_MS - 1_500,
            expires_ms: CLOCK_BASE_MS + 3_598_500,
            packets: [0; 2],
            bytes: [0; 2],
            handshake: Default::default(),
        }
    }

    #[test]
    fn ipv4_connection_fits_in_40_bytes_and_round_trips() {
        for nat in [false, true] {
            let c = conn(nat);
            let mut body = Vec::new();
            let (kind, key) = encode_change(&Change::Created(c), &mut body);
            assert_eq!((kind, key), (RecordKind::ConnUpsert, c.id));
            assert!(body.len() <= 40, "{} bytes (nat {nat})", body.len());
            assert_eq!(decode_change(kind, key, &body).unwrap(), Change::Created(c));
        }
    }

    /// Every body's truncations and a trailing byte are refused.
    fn refuses_damage(kind: RecordKind, key: u64, body: &[u8]) {
        for n in 0..body.len() {
            assert!(decode_change(kind, key, &body[..n]).is_err(), "{n} bytes");
        }
        let mut long = body.to_vec();
        long.push(0);
        assert!(decode_change(kind, key, &long).is_err());
    }

    #[test]
    fn handshake_isns_round_trip_and_records_without_them_are_unchanged() {
        let mut c = conn(true);
        c.state = ConnState::Tcp(TcpState::SynReceived);
        let mut plain = Vec::new();
        encode_change(&Change::Created(c), &mut plain);
        for hs in [
            Handshake {
                client_isn: Some(0xdead_beef),
                server_isn: None,
            },
            Handshake {
                client_isn: Some(0),
                server_isn: Some(u32::MAX),
            },
            Handshake {
                client_isn: None,
                server_isn: Some(7),
            },
        ] {
            c.handshake = hs;
            let update = Change::Updated {
                id: c.id,
                init_side: c.init_side,
                orig: c.orig,
                state: c.state,
                expires_ms: CLOCK_BASE_MS + 75_000,
                handshake: hs,
            };
            for change in [Change::Created(c), update] {
                let mut body = Vec::new();
                let (kind, key) = encode_change(&change, &mut body);
                assert_eq!(decode_change(kind, key, &body).unwrap(), change);
                refuses_damage(kind, key, &body);
            }
            let mut body = Vec::new();
            encode_change(&Change::Created(c), &mut body);
            // The ISNs add 4 bytes each and change nothing else.
            let n = [hs.client_isn, hs.server_isn].iter().flatten().count();
            assert_eq!(body.len(), plain.len() + 4 * n);
        }
        // A record without ISNs (what a member without enforcement, or an older one, sends)
        // decodes with none known; the reserved state bit is refused.
        c.handshake = Handshake::default();
        assert_eq!(
            decode_change(RecordKind::ConnUpsert, c.id, &plain).unwrap(),
            Change::Created(c)
        );
        // flags, the IPv4 tuple, the translated source address and port, then the state.
        let state_at = 1 + 13 + 4 + 2;
        assert_eq!(plain[state_at], 1, "the SynReceived state byte");
        plain[state_at] |= 0x20;
        assert!(decode_change(RecordKind::ConnUpsert, c.id, &plain).is_err());
    }

    #[test]
    fn update_and_delete_round_trip_and_v6() {
        let mut c = conn(false);
        c.orig = FlowTuple::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8:1::2".parse().unwrap(),
            17,
            5000,
            53,
        );
        c.xlat = c.orig;
        c.init_side = Side::Tunnel;
        c.state = ConnState::UdpReplied;
        c.rule = rampart_inspect::NO_RULE;
        c.service = rampart_inspect::NO_SERVICE;
        for change in [
            Change::Created(c),
            Change::Updated {
                id: c.id,
                init_side: c.init_side,
                orig: c.orig,
                state: ConnState::Tcp(TcpState::FinOrig),
                expires_ms: CLOCK_BASE_MS + 120_000,
                handshake: Handshake::default(),
            },
            Change::Deleted {
                id: c.id,
                init_side: c.init_side,
                orig: c.orig,
            },
        ] {
            let mut body = Vec::new();
            let (kind, key) = encode_change(&change, &mut body);
            assert_eq!(decode_change(kind, key, &body).unwrap(), change);
            // Truncations and trailing bytes are refused.
            for n in 0..body.len() {
                assert!(decode_change(kind, key, &body[..n]).is_err());
            }
            body.push(0);
            assert!(decode_change(kind, key, &body).is_err());
        }
    }
}
