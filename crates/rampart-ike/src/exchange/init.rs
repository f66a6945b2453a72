//! IKE_SA_INIT (RFC 7296 1.2): proposals, key exchange, nonces, NAT detection, cookies.

use std::net::SocketAddr;
use std::time::Instant;

use crate::policy::Encapsulation;
use rampart_crypto::{DhGroup, KeyExchange};
use rampart_wire::ike::{exchange, flags, notify as n, Header, Message, Payload, VERSION_2_0};

use crate::config::IkeSaId;
use crate::engine::{Ike, HALF_OPEN};
use crate::event::DownReason;
use crate::keys::{self, ct_eq, nat_hash};
use crate::msg::{self, notify};
use crate::peers::PeerId;
use crate::proposal::{self, IkeAlgs};
use crate::retransmit::{Pending, Request};
use crate::sa::{IkeSa, SaKeys};

impl Ike {
    /// New IKE SA as initiator: IKE_SA_INIT with our proposals and a KE for the first one's group.
    pub(crate) fn start_ike_sa(&mut self, now: Instant, peer: PeerId) {
        let Some(pc) = self.peers.get(peer) else {
            return;
        };
        let Some(group) = pc.ike_proposals.first().map(|p| p.dh) else {
            return;
        };
        // Over a stream the first message already uses the NAT-T format (RFC 9329).
        let port = if pc.encapsulation == Encapsulation::Stream {
            self.cfg.nat_t_port
        } else {
            self.cfg.ike_port
        };
        let local = SocketAddr::new(pc.local_address, port);
        let Some(remote) = pc.remote_address.ip() else {
            return;
        };
        let remote = SocketAddr::new(remote, port);
        let id = IkeSaId(self.ids.next());
        let small = match &pc.remote_access {
            crate::policy::RemoteAccess::Client(c) => {
                c.small_first_proposal && pc.ike_proposals.len() > 1
            }
            _ => false,
        };
        let mut sa = IkeSa::new(id, peer, true, now, local, remote);
        sa.spi_i = self.alloc_ike_spi();
        sa.ni = self.nonce();
        sa.small_offer = small;
        tracing::debug!(ike_sa = id.0, %peer, "initiating IKE SA");
        self.by_spi.insert(sa.spi_i, id);
        self.sas.insert(id, sa);
        self.send_init(now, id, group);
    }

    fn send_init(&mut self, now: Instant, id: IkeSaId, group: DhGroup) {
        let ke = match KeyExchange::generate(group, &mut self.rng) {
            Ok(k) => k,
            Err(e) => {
                tracing::debug!("key exchange generation failed: {e}");
                self.fail_sa(now, id, DownReason::Failed);
                return;
            }
        };
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(c) = &sa.cookie {
            payloads.push(notify(n::COOKIE, c.clone()));
        }
        let offer = if sa.small_offer {
            &pc.ike_proposals[..1]
        } else {
            &pc.ike_proposals[..]
        };
        payloads.push(Payload::Sa(proposal::ike_offer(offer, &[])));
        payloads.push(Payload::Ke {
            group: group.transform_id(),
            data: ke.public_key().to_vec(),
        });
        payloads.push(Payload::Nonce(sa.ni.clone()));
        let src = if pc.encapsulation.forced() {
            let mut fake = vec![0u8; 20];
            self.rng.fill(&mut fake);
            fake
        } else {
            nat_hash(sa.spi_i, 0, sa.local)
        };
        payloads.push(notify(n::NAT_DETECTION_SOURCE_IP, src));
        payloads.push(notify(
            n::NAT_DETECTION_DESTINATION_IP,
            nat_hash(sa.spi_i, 0, sa.remote),
        ));
        if self.cfg.fragmentation {
            payloads.push(notify(n::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        }
        payloads.push(crate::exchange::sig::hash_notify());
        let header = Header {
            spi_i: sa.spi_i,
            spi_r: 0,
            next_payload: 0,
            version: VERSION_2_0,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::INITIATOR,
            message_id: 0,
            length: 0,
        };
        let bytes = Message { header, payloads }.encode();
        sa.ke = Some(ke);
        sa.init_request = bytes.clone();
        sa.next_msg_id = 1;
        sa.last_tx = now;
        sa.pending = Some(Pending::new(
            now,
            0,
            vec![bytes.clone()],
            self.cfg.retransmit_timeout,
            Request::Init,
        ));
        self.events.push_back(crate::IkeEvent::Transmit {
            local: sa.local,
            remote: sa.remote,
            msg: bytes,
        });
    }

    /// Which peer an IKE_SA_INIT from `remote` belongs to: the first with that fixed address.
    /// Without an address match the first template (else the first peer) is taken
    /// provisionally, and the IDi decides in IKE_AUTH ([`Ike::match_peer_by_id`]).
    fn match_peer(&self, remote: SocketAddr) -> Option<(PeerId, bool)> {
        if let Some((id, _)) = self
            .peers
            .iter()
            .find(|(_, p)| p.remote_address.ip() == Some(remote.ip()))
        {
            return Some((id, false));
        }
        let template = self.peers.iter().find(|(_, p)| p.is_template());
        template
            .or_else(|| self.peers.iter().next())
            .map(|(id, _)| (id, true))
    }

    pub(crate) fn stateless_reply(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        spi_i: u64,
        payloads: Vec<Payload>,
    ) {
        let header = Header {
            spi_i,
            spi_r: 0,
            next_payload: 0,
            version: VERSION_2_0,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        self.events.push_back(crate::IkeEvent::Transmit {
            local,
            remote,
            msg: Message { header, payloads }.encode(),
        });
    }

    /// Responder side of IKE_SA_INIT.
    pub(crate) fn init_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        bytes: &[u8],
        m: Message,
    ) {
        let spi_i = m.header.spi_i;
        if let Some(id) = self.half_open.get(&(remote, spi_i)) {
            if let Some(sa) = self.sas.get(id) {
                if sa.init_request == bytes {
                    self.events.push_back(crate::IkeEvent::Transmit {
                        local,
                        remote,
                        msg: sa.init_response.clone(),
                    });
                }
            }
            return;
        }
        if !self.admit_init(now, local, remote, &m) {
            return;
        }
        let Some((peer, by_id)) = self.match_peer(remote) else {
            tracing::debug!(%remote, "IKE_SA_INIT from unknown peer");
            return;
        };
        let p = &m.payloads;
        let (Some(props), Some((group, ke_data)), Some(ni)) =
            (msg::sa(p), msg::ke(p), msg::nonce(p))
        else {
            self.stateless_reply(
                local,
                remote,
                spi_i,
                vec![notify(n::INVALID_SYNTAX, vec![])],
            );
            return;
        };
        let Some(pc) = self.peers.get(peer) else {
            return;
        };
        let Some((algs, idx)) = proposal::select_ike(&pc.ike_proposals, props) else {
            tracing::debug!(%remote, "IKE_SA_INIT: no proposal chosen");
            self.stateless_reply(
                local,
                remote,
                spi_i,
                vec![notify(n::NO_PROPOSAL_CHOSEN, vec![])],
            );
            return;
        };
        if group != algs.dh.transform_id() {
            tracing::debug!(%remote, group, want = %algs.dh, "IKE_SA_INIT: invalid KE");
            let data = algs.dh.transform_id().to_be_bytes().to_vec();
            self.stateless_reply(
                local,
                remote,
                spi_i,
                vec![notify(n::INVALID_KE_PAYLOAD, data)],
            );
            return;
        }
        let Ok(ke) = KeyExchange::generate(algs.dh, &mut self.rng) else {
            return;
        };
        let Ok(shared) = ke.agree(ke_data) else {
            self.stateless_reply(
                local,
                remote,
                spi_i,
                vec![notify(n::INVALID_SYNTAX, vec![])],
            );
            return;
        };
        let force = pc.encapsulation.forced();
        let id = IkeSaId(self.ids.next());
        let mut sa = IkeSa::new(id, peer, false, now, local, remote);
        sa.peer_by_id = by_id;
        sa.spi_i = spi_i;
        sa.spi_r = self.alloc_ike_spi();
        sa.ni = ni.to_vec();
        sa.nr = self.nonce();
        sa.algs = Some(algs);
        detect_nat(&mut sa, p, spi_i, 0, local, remote);
        sa.nat_local |= force;
        let num = props[idx].num;
        let src = if force {
            let mut fake = vec![0u8; 20];
            self.rng.fill(&mut fake);
            fake
        } else {
            nat_hash(spi_i, sa.spi_r, local)
        };
        let frag = self.cfg.fragmentation
            && msg::find_notify(p, n::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        if frag {
            sa.frag.size = Some(self.cfg.fragment_size);
        }
        let mut payloads = vec![
            Payload::Sa(vec![proposal::ike_proposal(num, &algs, &[])]),
            Payload::Ke {
                group,
                data: ke.public_key().to_vec(),
            },
            Payload::Nonce(sa.nr.clone()),
            notify(n::NAT_DETECTION_SOURCE_IP, src),
            notify(
                n::NAT_DETECTION_DESTINATION_IP,
                nat_hash(spi_i, sa.spi_r, remote),
            ),
        ];
        if frag {
            payloads.push(notify(n::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        }
        payloads.push(crate::exchange::sig::hash_notify());
        payloads.extend(
            self.peers
                .get(sa.peer)
                .and_then(crate::exchange::sig::certreq),
        );
        let header = Header {
            spi_i,
            spi_r: sa.spi_r,
            next_payload: 0,
            version: VERSION_2_0,
            exchange: exchange::IKE_SA_INIT,
            flags: flags::RESPONSE,
            message_id: 0,
            length: 0,
        };
        let out = Message { header, payloads }.encode();
        if let Err(e) = install_keys(&mut sa, &algs, shared.as_bytes()) {
            tracing::debug!("IKE key setup failed: {e}");
            return;
        }
        sa.init_request = bytes.to_vec();
        sa.init_response = out.clone();
        sa.peer_msg_id = 1;
        sa.expire_at = Some(now + HALF_OPEN);
        sa.last_tx = now;
        self.events.push_back(crate::IkeEvent::Transmit {
            local,
            remote,
            msg: out,
        });
        tracing::debug!(ike_sa = id.0, %remote, "IKE_SA_INIT answered");
        self.half_open.insert((remote, spi_i), id);
        self.by_spi.insert(sa.spi_r, id);
        self.sas.insert(id, sa);
    }

    /// Initiator side: the IKE_SA_INIT response (or an error / cookie / INVALID_KE request).
    pub(crate) fn init_response(&mut self, now: Instant, id: IkeSaId, bytes: &[u8], m: Message) {
        let Some(sa) = self.sas.get_mut(&id) else {
            return;
        };
        if !sa.initiator
            || !matches!(sa.pending.as_ref().map(|p| &p.kind), Some(Request::Init))
            || m.header.message_id != 0
        {
            return;
        }
        let p = &m.payloads;
        let Some(pc) = self.peers.get(sa.peer) else {
            return;
        };
        if let Some(c) = msg::find_notify(p, n::COOKIE) {
            if sa.cookie.as_deref() != Some(&c.data) && !c.data.is_empty() && c.data.len() <= 64 {
                sa.cookie = Some(c.data.clone());
                let group = sa
                    .ke
                    .as_ref()
                    .map(|k| k.group())
                    .unwrap_or(pc.ike_proposals[0].dh);
                self.send_init(now, id, group);
            }
            return;
        }
        if let Some(e) = msg::first_error(p) {
            if e.kind == n::INVALID_KE_PAYLOAD {
                let want = e.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                let ok = want
                    .and_then(DhGroup::from_id)
                    .filter(|g| pc.ike_proposals.iter().any(|x| x.dh == *g));
                let current = sa.ke.as_ref().map(|k| k.group());
                if let Some(g) = ok.filter(|g| Some(*g) != current) {
                    tracing::debug!(ike_sa = id.0, group = %g, "peer wants another KE group; retrying");
                    self.send_init(now, id, g);
                    return;
                }
            }
            if e.kind == n::NO_PROPOSAL_CHOSEN && sa.small_offer {
                // The small first offer did not fit: at once with every proposal.
                tracing::debug!(
                    ike_sa = id.0,
                    "small IKE proposal refused; retrying with all"
                );
                sa.small_offer = false;
                let group = pc.ike_proposals[0].dh;
                self.send_init(now, id, group);
                return;
            }
            let reason = if e.kind == n::NO_PROPOSAL_CHOSEN {
                DownReason::NoProposalChosen
            } else {
                DownReason::Failed
            };
            tracing::debug!(ike_sa = id.0, notify = e.kind, "IKE_SA_INIT failed");
            self.fail_sa(now, id, reason);
            return;
        }
        let accepted = (|| {
            let props = msg::sa(p)?;
            let [prop] = props else { return None };
            let algs = proposal::accept_ike(&pc.ike_proposals, prop)?;
            let (group, data) = msg::ke(p)?;
            let nr = msg::nonce(p)?;
            (group == algs.dh.transform_id()).then_some((algs, data, nr))
        })();
        let Some((algs, ke_data, nr)) = accepted else {
            tracing::debug!(ike_sa = id.0, "invalid IKE_SA_INIT response");
            self.fail_sa(now, id, DownReason::Failed);
            return;
        };
        let shared = match sa
            .ke
            .as_ref()
            .filter(|k| k.group() == algs.dh)
            .map(|k| k.agree(ke_data))
        {
            Some(Ok(s)) => s,
            _ => {
                self.fail_sa(now, id, DownReason::Failed);
                return;
            }
        };
        sa.spi_r = m.header.spi_r;
        sa.nr = nr.to_vec();
        if self.cfg.fragmentation && msg::find_notify(p, n::IKEV2_FRAGMENTATION_SUPPORTED).is_some()
        {
            sa.frag.size = Some(self.cfg.fragment_size);
        }
        sa.algs = Some(algs);
        let (local, remote) = (sa.local, sa.remote);
        detect_nat(sa, p, sa.spi_i, sa.spi_r, local, remote);
        if pc.encapsulation.forced() {
            sa.nat_local = true;
        }
        if install_keys(sa, &algs, shared.as_bytes()).is_err() || sa.spi_r == 0 {
            self.fail_sa(now, id, DownReason::Failed);
            return;
        }
        sa.ke = None;
        sa.init_response = bytes.to_vec();
        sa.pending = None;
        sa.last_rx = now;
        if sa.encap() {
            sa.local.set_port(self.cfg.nat_t_port);
            sa.remote.set_port(self.cfg.nat_t_port);
        }
        self.send_auth(now, id);
    }
}

/// Compares the peer's NAT_DETECTION hashes with the addresses this message actually used.
/// Without any NAT_DETECTION notify the peer does not do NAT-T and nothing is set.
pub(crate) fn detect_nat(
    sa: &mut IkeSa,
    p: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) {
    let mut srcs = msg::notifies(p, n::NAT_DETECTION_SOURCE_IP).peekable();
    let dst = msg::find_notify(p, n::NAT_DETECTION_DESTINATION_IP);
    if srcs.peek().is_none() || dst.is_none() {
        return;
    }
    let want_src = nat_hash(spi_i, spi_r, remote);
    sa.nat_remote = !srcs.any(|s| ct_eq(&s.data, &want_src));
    sa.nat_local = dst.is_some_and(|d| !ct_eq(&d.data, &nat_hash(spi_i, spi_r, local)));
}

/// SKEYSEED and the SK_* keys of a new IKE SA from the IKE_SA_INIT exchange.
fn install_keys(
    sa: &mut IkeSa,
    algs: &IkeAlgs,
    shared: &[u8],
) -> Result<(), rampart_crypto::CryptoError> {
    let seed = keys::skeyseed(algs.prf, &sa.ni, &sa.nr, shared);
    let k = keys::derive_ike_keys(algs, &seed, &sa.ni, &sa.nr, sa.spi_i, sa.spi_r);
    sa.keys = Some(sa_keys(algs, k, sa.initiator)?);
    Ok(())
}

pub(crate) fn sa_keys(
    algs: &IkeAlgs,
    k: keys::IkeKeyMaterial,
    initiator: bool,
) -> Result<SaKeys, rampart_crypto::CryptoError> {
    let (out, inn) = keys::ike_ciphers(algs, &k, initiator)?;
    Ok(SaKeys {
        prf: algs.prf,
        sk_d: k.sk_d,
        sk_pi: k.sk_pi,
        sk_pr: k.sk_pr,
        sk_ei: k.sk_ei,
        sk_er: k.sk_er,
        sk_ai: k.sk_ai,
        sk_ar: k.sk_ar,
        out,
        inn,
    })
}
