//! IKEv2 setup-rate load generator.
//!
//! Each simulated client is one `rampart_ike::Ike` initiator with its own identity
//! (`lg-<i>.bench`, PSK, AES-256-GCM / PRF-SHA256 / X25519) and its own UDP socket on an
//! ephemeral port of `--local`. The engine believes it talks from port 500 to port 500; this shell
//! translates, which makes every client look like a host behind a NAT (distinct source ports,
//! one address): both sides detect the NAT and move to port 4500 for IKE_AUTH, as real
//! remote-access clients do. A client is done when its first CHILD SA is up (IKE_SA_INIT +
//! IKE_AUTH complete); the setup latency runs from the first IKE_SA_INIT sent to that moment.
//!
//! At most `concurrency` clients are in flight; the generator runs on one thread so the other
//! core stays with the responder.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_crypto::Rng;
use rampart_ike::{Ike, IkeEvent};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

/// Pre-shared key shared by every client (and the responders' configs in `run.sh`).
pub const PSK: &str = "rampart benchmark key, not a secret";
/// The responder's identity.
pub const RESPONDER_ID: &str = "responder.bench";

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadParams {
    pub label: String,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub total: usize,
    pub concurrency: usize,
    /// Per-client limit; a client that takes longer counts as failed.
    pub timeout: Duration,
}

/// Result of one load run (also the JSON file `ike-report` reads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadResult {
    pub label: String,
    pub total: usize,
    pub concurrency: usize,
    pub established: usize,
    pub failed: usize,
    /// Wall time from the first client started to the last one finished.
    pub elapsed_s: f64,
    /// Setup latency of each established client, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Up to ten distinct failure reasons.
    pub errors: Vec<String>,
}

impl LoadResult {
    /// Established IKE SAs per second over the whole run.
    pub fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.established as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
}

/// The initiator configuration of client `i`.
pub fn client_config(i: usize, local: IpAddr, remote: IpAddr) -> String {
    format!(
        r#"[gateway]
name = "lg-{i}"
status_socket = "/nonexistent/lg.sock"
ike_port = 500
nat_t_port = 4500

[tunnel]
device = "lg0"
mtu = 1400

[local]
domain = ["{domain}/32"]

[[peer]]
name = "responder"
local_address = "{local}"
remote_address = "{remote}"
local_id = "lg-{i}.bench"
remote_id = "{RESPONDER_ID}"
psk = "{PSK}"
remote_domain = ["10.2.0.0/24"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "none"
liveness_interval = "1h"
"#,
        domain = client_domain(i),
    )
}

/// The /32 client `i` protects: 10.100.0.0 upwards (matches `run.sh`'s responder config).
pub fn client_domain(i: usize) -> String {
    format!("10.{}.{}.{}", 100 + i / 65_536, i / 256 % 256, i % 256)
}

/// Runs the load and collects the result. Must run inside a (current-thread) tokio runtime.
pub async fn run(p: LoadParams) -> LoadResult {
    let sem = Arc::new(Semaphore::new(p.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut outcome = Outcome::default();
    let start = Instant::now();
    for i in 0..p.total {
        let Ok(permit) = Arc::clone(&sem).acquire_owned().await else {
            break;
        };
        let (local, remote, timeout) = (p.local, p.remote, p.timeout);
        tasks.spawn(async move {
            let r = tokio::time::timeout(timeout, client(i, local, remote))
                .await
                .unwrap_or_else(|_| Err(format!("no CHILD SA within {timeout:?}")));
            drop(permit);
            r
        });
        while let Some(done) = tasks.try_join_next() {
            outcome.add(done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        outcome.add(done);
    }
    LoadResult {
        label: p.label,
        total: p.total,
        concurrency: p.concurrency,
        established: outcome.latencies_ms.len(),
        failed: outcome.failed,
        elapsed_s: start.elapsed().as_secs_f64(),
        latencies_ms: outcome.latencies_ms,
        errors: outcome.errors,
    }
}

#[derive(Default)]
struct Outcome {
    latencies_ms: Vec<f64>,
    failed: usize,
    errors: Vec<String>,
}

impl Outcome {
    fn add(&mut self, done: Result<Result<Duration, String>, tokio::task::JoinError>) {
        match done {
            Ok(Ok(latency)) => self.latencies_ms.push(latency.as_secs_f64() * 1e3),
            Ok(Err(e)) => self.fail(e),
            Err(e) => self.fail(format!("client task: {e}")),
        }
    }

    fn fail(&mut self, e: String) {
        self.failed += 1;
        if self.errors.len() < 10 && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }
}

/// The non-ESP marker in front of IKE messages on the NAT-T port (RFC 3948).
const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// One client: IKE_SA_INIT + IKE_AUTH until the CHILD SA is up. Returns the setup latency.
async fn client(i: usize, local: IpAddr, remote: IpAddr) -> Result<Duration, String> {
    let text = client_config(i, local, remote);
    let cfg = rampart_config::parse(&text, "ike-load.toml").map_err(|e| format!("config: {e}"))?;
    let ike_cfg = cfg.ike_config();
    let (ike_port, nat_port) = (ike_cfg.ike_port, ike_cfg.nat_t_port);
    let mut ike = Ike::new(ike_cfg, Rng::from_os());
    let peer = cfg
        .peers
        .into_iter()
        .map(|p| ike.add_peer(p))
        .next()
        .ok_or("config: no peer")?;
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(|e| format!("bind {local}: {e}"))?;
    let mut buf = vec![0u8; 65_536];
    let mut out = Vec::with_capacity(2048);
    let start = Instant::now();
    ike.initiate(start, peer);
    let mut ike_up = None;
    let mut child_up = false;
    loop {
        while let Some(event) = ike.poll_event() {
            match event {
                IkeEvent::Transmit {
                    remote: to, msg, ..
                } => {
                    out.clear();
                    if to.port() == nat_port {
                        out.extend_from_slice(&NON_ESP_MARKER);
                    }
                    out.extend_from_slice(&msg);
                    socket
                        .send_to(&out, SocketAddr::new(remote, to.port()))
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                }
                IkeEvent::IkeSaUp { .. } => ike_up = Some(start.elapsed()),
                IkeEvent::ChildSaUp(_) => child_up = true,
                IkeEvent::IkeSaDown { reason, .. } => {
                    return Err(format!("IKE SA down: {reason:?}"))
                }
                IkeEvent::PeerDead { .. } => return Err("responder did not answer".into()),
                _ => {}
            }
        }
        // IKE_AUTH carries the first CHILD SA: both events come out of the same response.
        if let Some(latency) = ike_up {
            return if child_up {
                Ok(latency)
            } else {
                Err("IKE SA up but the CHILD SA was refused".into())
            };
        }
        let deadline = ike.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (len, from) = r.map_err(|e| format!("receive: {e}"))?;
                let data = buf.get(..len).unwrap_or(&[]);
                let (msg, our_port) = if from.port() == nat_port {
                    match data.strip_prefix(&NON_ESP_MARKER[..]) {
                        Some(m) => (m, nat_port),
                        None => continue, // ESP or a keepalive: not ours to handle here
                    }
                } else {
                    (data, ike_port)
                };
                ike.handle_datagram(Instant::now(), SocketAddr::new(local, our_port), from, msg);
            }
            () = sleep => ike.handle_timeout(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_configs_validate_and_differ() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for i in [0, 1, 255, 256, 70_000] {
            let cfg = rampart_config::parse(&client_config(i, a, b), "t.toml")
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
            assert_eq!(
                cfg.local.domain[0].to_string(),
                format!("{}/32", client_domain(i))
            );
        }
        assert_ne!(client_domain(0), client_domain(256));
        assert_eq!(client_domain(70_000), "10.101.17.112");
    }

    #[test]
    fn rate_is_established_over_elapsed() {
        let r = LoadResult {
            label: "x".into(),
            total: 10,
            concurrency: 2,
            established: 8,
            failed: 2,
            elapsed_s: 2.0,
            latencies_ms: vec![1.0; 8],
            errors: vec![],
        };
        assert_eq!(r.rate(), 4.0);
    }
}
