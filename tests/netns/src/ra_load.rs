//! The remote-access load generator (`ra-load` binary): many real rampart-ike initiator
//! engines (`RemoteAccess::Client`, PSK, one identity each), each on its own client address
//! with UDP sockets on ports 500 and 4500, bring up IKE SAs with a CHILD SA against one gateway
//! at the same time; each reports the Office Mode address it received. After the barrier file
//! appears (the test has checked the gateway's view), every client deletes its IKE SA.
//!
//! One thread, `poll(2)` over every socket: the engines are sans-IO, so the loop only moves
//! datagrams and timers. Port 4500 datagrams carry the non-ESP marker (RFC 3948); ESP is not
//! expected (no traffic is sent) and ignored.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_crypto::Rng;
use rampart_ike::{
    Encapsulation, EspProposal, Identity, Ike, IkeConfig, IkeEvent, IkeProposal, IkeSaId, PeerAuth,
    PeerId, PeerPolicy, RaClient, RemoteAccess, RemoteAddress, StartAction,
};
use serde::{Deserialize, Serialize};

use crate::conn_load::{write_json, Args};

/// What one client saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientReport {
    pub local: String,
    pub identity: String,
    /// The Office Mode address of the CFG_REPLY.
    pub virtual_ip: Option<String>,
    pub dns: Vec<String>,
    /// Milliseconds from the start to the CHILD SA.
    pub up_ms: Option<u64>,
    /// IKE SA ended (after the barrier: deleted).
    pub down: bool,
    /// Why the IKE SA ended, when it ended before the barrier.
    pub failure: Option<String>,
}

/// Phase reports: `up` after the bring-up phase, `done` after the deletes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub clients: Vec<ClientReport>,
    pub up: usize,
    pub elapsed_ms: u64,
}

impl LoadReport {
    /// Virtual IPs handed out twice (must be empty).
    pub fn duplicate_addresses(&self) -> Vec<String> {
        let mut seen = BTreeMap::new();
        for c in &self.clients {
            if let Some(v) = &c.virtual_ip {
                *seen.entry(v.clone()).or_insert(0u32) += 1;
            }
        }
        seen.into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(a, _)| a)
            .collect()
    }
}

struct Client {
    ike: Ike,
    peer: PeerId,
    sock500: UdpSocket,
    sock4500: UdpSocket,
    ike_sa: Option<IkeSaId>,
    report: ClientReport,
}

fn policy(
    local: IpAddr,
    gateway: IpAddr,
    id: &str,
    gw_id: &str,
    psk: &str,
    eap: Option<(String, String)>,
) -> PeerPolicy {
    let ike: IkeProposal = IkeProposal {
        encr: "aes256gcm16".parse().expect("encr"),
        integ: None,
        prf: "prfsha256".parse().expect("prf"),
        dh: "x25519".parse().expect("dh"),
    };
    let esp = EspProposal {
        encr: "aes256gcm16".parse().expect("encr"),
        integ: None,
        dh: None,
    };
    PeerPolicy {
        name: "ra".into(),
        local_address: local,
        remote_address: RemoteAddress::Ip(gateway),
        local_id: Identity::Fqdn(id.into()),
        remote_id: Identity::Fqdn(gw_id.into()),
        psk: psk.as_bytes().to_vec().into(),
        remote_domain: vec!["0.0.0.0/0".parse().expect("net")],
        ike_proposals: vec![ike],
        esp_proposals: vec![esp],
        esn: false,
        start_action: StartAction::Always,
        ike_lifetime: Duration::from_secs(4 * 3600),
        child_lifetime: Duration::from_secs(3600),
        child_lifetime_bytes: None,
        liveness_interval: Duration::from_secs(3600),
        encapsulation: Encapsulation::Auto,
        replay_window: 1024,
        auth: PeerAuth::Psk,
        remote_access: RemoteAccess::Client(Arc::new(RaClient {
            eap: eap.map(|(u, p)| (u, p.into())),
            small_first_proposal: false,
        })),
        mobike: true,
    }
}

fn engine_config() -> IkeConfig {
    IkeConfig {
        member_id: 0,
        ike_port: 500,
        nat_t_port: 4500,
        local_domain: vec!["0.0.0.0/0".parse().expect("net")],
        retransmit_timeout: Duration::from_secs(2),
        retransmit_tries: 5,
        nat_keepalive: Duration::from_secs(20),
        fragmentation: true,
        fragment_size: 1280,
        cookie_threshold: 10_000,
        half_open_per_source: 10_000,
    }
}

/// The EAP user name of client `i` (with `--eap-password`).
pub fn eap_user(i: usize) -> String {
    format!("load-{i}")
}

fn bind(ip: IpAddr, port: u16) -> Result<UdpSocket, String> {
    let s =
        UdpSocket::bind(SocketAddr::new(ip, port)).map_err(|e| format!("bind {ip}:{port}: {e}"))?;
    s.set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    Ok(s)
}

impl Client {
    fn new(
        i: usize,
        local: IpAddr,
        gateway: IpAddr,
        gw_id: &str,
        psk: &str,
        eap_password: Option<&str>,
    ) -> Result<Client, String> {
        let identity = format!("load-{i}.example");
        let eap = eap_password.map(|p| (eap_user(i), p.to_string()));
        let mut ike = Ike::new(engine_config(), Rng::from_os());
        let peer = ike.add_peer(policy(local, gateway, &identity, gw_id, psk, eap));
        Ok(Client {
            ike,
            peer,
            sock500: bind(local, 500)?,
            sock4500: bind(local, 4500)?,
            ike_sa: None,
            report: ClientReport {
                local: local.to_string(),
                identity,
                ..ClientReport::default()
            },
        })
    }

    /// Sends what the engine wants sent and records what it reports.
    fn drain(&mut self, start: Instant, now: Instant, barrier_passed: bool) {
        while let Some(ev) = self.ike.poll_event() {
            match ev {
                IkeEvent::Transmit { local, remote, msg } => {
                    let r = if local.port() == 4500 {
                        let mut buf = Vec::with_capacity(msg.len() + 4);
                        buf.extend_from_slice(&[0, 0, 0, 0]);
                        buf.extend_from_slice(&msg);
                        self.sock4500.send_to(&buf, remote)
                    } else {
                        self.sock500.send_to(&msg, remote)
                    };
                    if let Err(e) = r {
                        eprintln!("ra-load {}: send to {remote}: {e}", self.report.local);
                    }
                }
                IkeEvent::NatKeepalive { remote, .. } => {
                    let _ = self.sock4500.send_to(&[0xff], remote);
                }
                IkeEvent::VirtualIp { reply, ike_sa, .. } => {
                    self.ike_sa = Some(ike_sa);
                    self.report.virtual_ip = reply.ip4_addresses.first().map(Ipv4Addr::to_string);
                    self.report.dns = reply.ip4_dns.iter().map(Ipv4Addr::to_string).collect();
                }
                IkeEvent::IkeSaUp { ike_sa, .. } => self.ike_sa = Some(ike_sa),
                IkeEvent::ChildSaUp(keys) => {
                    self.ike_sa = Some(keys.ike_sa);
                    if self.report.up_ms.is_none() {
                        self.report.up_ms = Some(now.duration_since(start).as_millis() as u64);
                    }
                }
                IkeEvent::IkeSaDown { reason, .. } => {
                    self.report.down = true;
                    if !barrier_passed {
                        self.report.failure = Some(format!("{reason:?}"));
                    }
                }
                _ => {}
            }
        }
    }

    /// Reads every queued datagram of both sockets into the engine.
    fn receive(&mut self, now: Instant, buf: &mut [u8]) {
        for nat_t in [false, true] {
            let sock = if nat_t { &self.sock4500 } else { &self.sock500 };
            let Ok(local) = sock.local_addr() else {
                continue;
            };
            loop {
                match sock.recv_from(buf) {
                    Ok((n, remote)) => {
                        let data = &buf[..n];
                        let msg = if nat_t {
                            // ESP (non-zero SPI) and keepalives are not for the engine.
                            match data.strip_prefix(&[0, 0, 0, 0]) {
                                Some(m) => m,
                                None => continue,
                            }
                        } else {
                            data
                        };
                        self.ike.handle_datagram(now, local, remote, msg);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        eprintln!("ra-load {}: recv: {e}", self.report.local);
                        break;
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.ike.poll_timeout().is_some_and(|t| t <= now) {
            self.ike.handle_timeout(now);
        }
    }
}

fn report(clients: &[Client], start: Instant) -> LoadReport {
    let reports: Vec<ClientReport> = clients.iter().map(|c| c.report.clone()).collect();
    LoadReport {
        up: reports
            .iter()
            .filter(|r| r.up_ms.is_some() && !r.down)
            .count(),
        clients: reports,
        elapsed_ms: start.elapsed().as_millis() as u64,
    }
}

/// Runs every engine until `done(clients)` or `deadline`; polls the sockets in between.
fn run_until(
    clients: &mut [Client],
    start: Instant,
    deadline: Instant,
    barrier_passed: bool,
    mut done: impl FnMut(&[Client]) -> bool,
) {
    let mut buf = vec![0u8; 65536];
    let mut fds: Vec<libc::pollfd> = clients
        .iter()
        .flat_map(|c| [c.sock500.as_raw_fd(), c.sock4500.as_raw_fd()])
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let now = Instant::now();
        for c in clients.iter_mut() {
            c.tick(now);
            c.drain(start, now, barrier_passed);
        }
        if done(clients) || now >= deadline {
            return;
        }
        let next = clients
            .iter()
            .filter_map(|c| c.ike.poll_timeout())
            .min()
            .unwrap_or(now + Duration::from_millis(50));
        let wait = next
            .saturating_duration_since(now)
            .min(Duration::from_millis(50))
            .min(deadline.saturating_duration_since(now));
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let rc = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as libc::c_int,
            )
        };
        if rc <= 0 {
            continue;
        }
        let now = Instant::now();
        for (i, c) in clients.iter_mut().enumerate() {
            if fds[2 * i].revents != 0 || fds[2 * i + 1].revents != 0 {
                c.receive(now, &mut buf);
                c.drain(start, now, barrier_passed);
            }
        }
        for fd in &mut fds {
            fd.revents = 0;
        }
    }
}

/// `ra-load --gateway IP --gateway-id ID --psk KEY --addrs A,B,... --up FILE --barrier FILE
/// --done FILE [--timeout-secs N] [--eap-password P]`: the gateway authenticates with the PSK;
/// clients with the PSK too, or with EAP-MSCHAPv2 as user `load-<i>` and password P. Brings every client up (report to `--up`), waits for the
/// barrier file, deletes every IKE SA and writes `--done`.
pub fn ra_load_main(args: &Args) -> Result<(), String> {
    let gateway: IpAddr = args.parse("gateway")?;
    let gw_id = args.get("gateway-id")?;
    let psk = args.get("psk")?;
    let addrs: Vec<IpAddr> = args.list("addrs")?;
    let up_file = PathBuf::from(args.get("up")?);
    let barrier = PathBuf::from(args.get("barrier")?);
    let done_file = PathBuf::from(args.get("done")?);
    let timeout = Duration::from_secs(args.parse_or("timeout-secs", 60u64)?);
    let eap_password = args.opt("eap-password");
    crate::conn_load::raise_nofile(2 * addrs.len() as u64 + 64)?;

    let mut clients = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Client::new(i, *a, gateway, gw_id, psk, eap_password))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for c in &mut clients {
        let peer = c.peer;
        c.ike.initiate(start, peer);
    }
    run_until(&mut clients, start, start + timeout, false, |cs| {
        cs.iter().all(|c| c.report.up_ms.is_some() || c.report.down)
    });
    let up = report(&clients, start);
    eprintln!(
        "ra-load: {}/{} clients up in {} ms",
        up.up,
        clients.len(),
        up.elapsed_ms
    );
    write_json(&up_file, &up)?;

    // Keep answering the gateway (liveness, keepalives) until the test lets us go.
    let wait_start = Instant::now();
    run_until(
        &mut clients,
        start,
        wait_start + Duration::from_secs(120),
        false,
        |_| barrier.exists(),
    );
    if !barrier.exists() {
        return Err("the barrier file never appeared".into());
    }
    let now = Instant::now();
    for c in &mut clients {
        if let (Some(sa), false) = (c.ike_sa, c.report.down) {
            c.ike.delete_ike_sa(now, sa);
        }
    }
    run_until(&mut clients, start, now + timeout, true, |cs| {
        cs.iter().all(|c| c.report.down)
    });
    let done = report(&clients, start);
    write_json(&done_file, &done)?;
    eprintln!(
        "ra-load: {} IKE SAs deleted",
        done.clients.iter().filter(|c| c.down).count()
    );
    Ok(())
}
