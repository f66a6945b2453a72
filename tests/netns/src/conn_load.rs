//! Many concurrent TCP connections that must survive an event (a failover): every connection
//! exchanges a request and a response before a barrier and again after it, both checked byte by
//! byte.
//!
//! The client and the server are modes of the `conn-load` binary of this crate (tokio, one
//! thread each), started in their namespaces with `ip netns exec` by [`LoadServer::start`] and
//! [`LoadClient::start`]. They talk to the test through files in the test directory:
//! - the server writes `<label>.ready` once it listens on every port;
//! - the client writes `<label>.phase1.json` (a [`LoadReport`]) once every connection finished its
//!   first exchange (or failed), then waits until the test creates `<label>.barrier`
//!   ([`LoadClient::release`]), runs the second exchange on every connection, closes them and
//!   writes `<label>.report.json`.
//!
//! Wire format, both directions: a 12-byte header (`"CL"`, phase, direction, connection id u32,
//! payload length u32, big endian) and a payload that is a function of (id, phase, direction,
//! offset), so a byte delivered to the wrong connection or phase is noticed.
//!
//! Ten thousand connections: the client raises `RLIMIT_NOFILE`, spreads connections over several
//! source addresses and server ports (each source address has its own ephemeral port range; with
//! `IP_BIND_ADDRESS_NO_PORT` the port is chosen per 4-tuple at connect time) and limits how many
//! connects are in flight at once (SYN bursts stay below the accept queues).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::netns::{Netns, Process};
use crate::wait::try_wait_until;

const MAGIC: [u8; 2] = *b"CL";
const HEADER: usize = 12;
/// Request payload bytes per exchange.
const REQUEST_LEN: usize = 100;
/// Response payload bytes per exchange.
const RESPONSE_LEN: usize = 200;
/// Failures listed one by one in a report; the rest only count by reason.
const LISTED_FAILURES: usize = 20;

/// The `conn-load` binary next to the running test executable (`target/debug/conn-load`; cargo
/// builds it before the integration tests of this crate).
#[track_caller]
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("conn-load");
    assert!(
        bin.is_file(),
        "{} missing: cargo build -p rampart-netns-tests --bins",
        bin.display()
    );
    bin
}

/// Raises `RLIMIT_NOFILE` to at least `want`: the soft limit up to the hard one, and the hard one
/// too where allowed (CAP_SYS_RESOURCE). An error when the result stays below `want`.
pub fn raise_nofile(want: u64) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let set = |cur: u64, max: u64| {
        let new = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: setrlimit reads the struct we own.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 }
    };
    if set(want, lim.rlim_max.max(want)) {
        return Ok(want);
    }
    let err = std::io::Error::last_os_error();
    // No CAP_SYS_RESOURCE: as far as the hard limit goes.
    if set(lim.rlim_max, lim.rlim_max) && lim.rlim_max >= want {
        return Ok(lim.rlim_max);
    }
    Err(format!(
        "RLIMIT_NOFILE {want} needed, hard limit {} ({err})",
        lim.rlim_max
    ))
}

/// One connection that did not complete both exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub conn: u32,
    /// `phase1` (connect included) or `phase2`.
    pub phase: String,
    pub source: String,
    pub target: String,
    pub error: String,
}

/// What the client saw. Written after phase 1 (phase 2 fields zero) and at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    pub count: u32,
    pub phase1_ok: u32,
    pub phase2_ok: u32,
    /// From start until every connection finished phase 1.
    pub phase1_ms: u64,
    /// From the barrier until every connection finished phase 2.
    pub phase2_ms: u64,
    /// `"<phase>: <error>"` to the number of connections that failed so.
    pub failures_by_reason: BTreeMap<String, u32>,
    /// The first failures in full.
    pub failures: Vec<Failure>,
}

impl LoadReport {
    /// True when every connection completed both exchanges.
    pub fn all_ok(&self) -> bool {
        self.phase1_ok == self.count && self.phase2_ok == self.count
    }

    fn fail(&mut self, f: Failure) {
        let reason = format!("{}: {}", f.phase, normalize(&f.error));
        *self.failures_by_reason.entry(reason).or_default() += 1;
        if self.failures.len() < LISTED_FAILURES {
            self.failures.push(f);
        }
    }
}

/// Error text without the varying parts (byte offsets), so failures group by reason.
fn normalize(error: &str) -> String {
    error
        .split_whitespace()
        .map(|w| {
            if w.chars().all(|c| c.is_ascii_digit()) && w.len() > 2 {
                "N"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Byte `at` of the payload of connection `id`, `phase` (1, 2), `dir` (0 request, 1 response).
pub fn payload_byte(id: u32, phase: u8, dir: u8, at: usize) -> u8 {
    let x = id
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(u32::from(phase).wrapping_mul(0x85eb_ca6b))
        .wrapping_add(u32::from(dir).wrapping_mul(0xc2b2_ae35))
        .wrapping_add((at as u32).wrapping_mul(0x27d4_eb2f));
    (x ^ (x >> 13) ^ (x >> 24)) as u8
}

fn message(id: u32, phase: u8, dir: u8, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER + len);
    m.extend_from_slice(&MAGIC);
    m.push(phase);
    m.push(dir);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&(len as u32).to_be_bytes());
    m.extend((0..len).map(|at| payload_byte(id, phase, dir, at)));
    m
}

/// Reads one message; `Ok(None)` on a clean end of stream before a header.
async fn read_message(s: &mut TcpStream) -> Result<Option<(u32, u8, u8, Vec<u8>)>, String> {
    let mut h = [0u8; HEADER];
    match s.read_exact(&mut h[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read: {e}")),
    }
    s.read_exact(&mut h[1..])
        .await
        .map_err(|e| format!("read header: {e}"))?;
    if h[..2] != MAGIC {
        return Err(format!("bad magic {:02x}{:02x}", h[0], h[1]));
    }
    let (phase, dir) = (h[2], h[3]);
    let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let len = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    if len > 65_536 {
        return Err(format!("payload length {len} too large"));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)
        .await
        .map_err(|e| format!("read payload: {e}"))?;
    Ok(Some((id, phase, dir, payload)))
}

fn check_payload(id: u32, phase: u8, dir: u8, payload: &[u8], len: usize) -> Result<(), String> {
    if payload.len() != len {
        return Err(format!("payload of {} bytes, want {len}", payload.len()));
    }
    match payload
        .iter()
        .enumerate()
        .find(|(at, &b)| b != payload_byte(id, phase, dir, *at))
    {
        Some((at, _)) => Err(format!("payload byte {at} differs")),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------- server

/// `conn-load serve --listen IP --ports P1,P2,... --ready FILE`: answers every request until
/// killed.
pub fn serve_main(args: &Args) -> Result<(), String> {
    let ip: IpAddr = args.parse("listen")?;
    let ports = args.list::<u16>("ports")?;
    let ready = PathBuf::from(args.get("ready")?);
    raise_nofile(args.parse_or("nofile", 12_000)?)?;
    runtime()?.block_on(async move {
        let mut listeners = Vec::new();
        for port in ports {
            let addr = SocketAddr::new(ip, port);
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(|e| format!("socket: {e}"))?;
            socket
                .set_reuseaddr(true)
                .map_err(|e| format!("reuseaddr: {e}"))?;
            socket.bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
            listeners.push(socket.listen(16_384).map_err(|e| format!("listen: {e}"))?);
        }
        write_atomic(&ready, b"listening\n")?;
        let errors = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for l in listeners {
            tasks.push(tokio::spawn(accept_loop(l, errors.clone())));
        }
        for t in tasks {
            let _ = t.await;
        }
        Ok(())
    })
}

async fn accept_loop(listener: TcpListener, errors: Arc<std::sync::atomic::AtomicU32>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let errors = errors.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(stream).await {
                        let n = errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n < 50 {
                            eprintln!("conn-load serve: {peer}: {e}");
                        }
                    }
                });
            }
            Err(e) => {
                eprintln!("conn-load serve: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_conn(mut s: TcpStream) -> Result<(), String> {
    let _ = s.set_nodelay(true);
    while let Some((id, phase, dir, payload)) = read_message(&mut s).await? {
        if dir != 0 || !(1..=2).contains(&phase) {
            return Err(format!("conn {id}: unexpected phase {phase} dir {dir}"));
        }
        check_payload(id, phase, 0, &payload, REQUEST_LEN)
            .map_err(|e| format!("conn {id} phase {phase}: {e}"))?;
        s.write_all(&message(id, phase, 1, RESPONSE_LEN))
            .await
            .map_err(|e| format!("conn {id} phase {phase}: write: {e}"))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- client

/// What the client does.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub count: u32,
    /// Server addresses; connection `i` goes to `targets[(i / sources.len()) % targets.len()]`.
    pub targets: Vec<SocketAddr>,
    /// Source addresses; connection `i` uses `sources[i % sources.len()]`.
    pub sources: Vec<IpAddr>,
    /// Connects (with their first exchange) in flight at once.
    pub concurrency: u32,
    /// Each exchange (connect + exchange in phase 1) must finish within this.
    pub exchange_timeout: Duration,
    /// How long the client waits for the barrier before it gives up.
    pub barrier_timeout: Duration,
}

impl LoadSpec {
    pub fn new(count: u32, targets: Vec<SocketAddr>, sources: Vec<IpAddr>) -> LoadSpec {
        LoadSpec {
            count,
            targets,
            sources,
            concurrency: 256,
            exchange_timeout: Duration::from_secs(30),
            barrier_timeout: Duration::from_secs(300),
        }
    }

    fn args(&self) -> Vec<String> {
        let join = |v: Vec<String>| v.join(",");
        vec![
            "--count".into(),
            self.count.to_string(),
            "--targets".into(),
            join(self.targets.iter().map(|t| t.to_string()).collect()),
            "--sources".into(),
            join(self.sources.iter().map(|s| s.to_string()).collect()),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--exchange-timeout-ms".into(),
            self.exchange_timeout.as_millis().to_string(),
            "--barrier-timeout-ms".into(),
            self.barrier_timeout.as_millis().to_string(),
        ]
    }

    fn from_args(args: &Args) -> Result<LoadSpec, String> {
        Ok(LoadSpec {
            count: args.parse("count")?,
            targets: args.list("targets")?,
            sources: args.list("sources")?,
            concurrency: args.parse_or("concurrency", 256)?,
            exchange_timeout: Duration::from_millis(args.parse_or("exchange-timeout-ms", 30_000)?),
            barrier_timeout: Duration::from_millis(args.parse_or("barrier-timeout-ms", 300_000)?),
        })
    }
}

/// `conn-load client <LoadSpec args> --phase1 FILE --barrier FILE --report FILE`.
pub fn client_main(args: &Args) -> Result<(), String> {
    let spec = LoadSpec::from_args(args)?;
    if spec.targets.is_empty() || spec.sources.is_empty() || spec.count == 0 {
        return Err("need --count > 0, --targets and --sources".into());
    }
    let phase1 = PathBuf::from(args.get("phase1")?);
    let barrier = PathBuf::from(args.get("barrier")?);
    let report = PathBuf::from(args.get("report")?);
    raise_nofile(u64::from(spec.count) + 256)?;
    let result = runtime()?.block_on(run_client(spec, &phase1, &barrier))?;
    write_json(&report, &result)
}

type Phase1Result = (u32, Option<Failure>);

async fn run_client(spec: LoadSpec, phase1: &Path, barrier: &Path) -> Result<LoadReport, String> {
    let started = Instant::now();
    let (barrier_tx, barrier_rx) = watch::channel(false);
    let (p1_tx, mut p1_rx) = mpsc::unbounded_channel::<Phase1Result>();
    let permits = Arc::new(Semaphore::new(spec.concurrency.max(1) as usize));
    let mut tasks = Vec::with_capacity(spec.count as usize);
    for id in 0..spec.count {
        let i = id as usize;
        let source = spec.sources[i % spec.sources.len()];
        let target = spec.targets[(i / spec.sources.len()) % spec.targets.len()];
        let fail = move |phase: &str, error: String| Failure {
            conn: id,
            phase: phase.into(),
            source: source.to_string(),
            target: target.to_string(),
            error,
        };
        let (p1_tx, mut barrier_rx, permits) = (p1_tx.clone(), barrier_rx.clone(), permits.clone());
        let limit = spec.exchange_timeout;
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            let first = tokio::time::timeout(limit, async {
                let mut s = connect(source, target).await?;
                exchange(&mut s, id, 1).await?;
                Ok::<TcpStream, String>(s)
            })
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {limit:?}")));
            drop(permit);
            let mut s = match first {
                Ok(s) => {
                    let _ = p1_tx.send((id, None));
                    s
                }
                Err(e) => {
                    let _ = p1_tx.send((id, Some(fail("phase1", e))));
                    return None;
                }
            };
            drop(p1_tx);
            if barrier_rx.wait_for(|go| *go).await.is_err() {
                return Some(fail("phase2", "no barrier".into()));
            }
            let second = tokio::time::timeout(limit, async {
                exchange(&mut s, id, 2).await?;
                s.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
                // The server closes after our end of stream: every byte was answered.
                let mut rest = [0u8; 1];
                match s.read(&mut rest).await {
                    Ok(0) => Ok(()),
                    Ok(_) => Err("unexpected bytes after phase 2".to_string()),
                    Err(e) => Err(format!("close: {e}")),
                }
            })
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {limit:?}")));
            second.err().map(|e| fail("phase2", e))
        }));
    }
    drop(p1_tx);

    let mut report = LoadReport {
        count: spec.count,
        ..LoadReport::default()
    };
    let mut done = 0;
    while let Some((_, failure)) = p1_rx.recv().await {
        done += 1;
        match failure {
            None => report.phase1_ok += 1,
            Some(f) => report.fail(f),
        }
        if done == spec.count {
            break;
        }
    }
    report.phase1_ms = started.elapsed().as_millis() as u64;
    eprintln!(
        "conn-load client: phase 1: {}/{} ok in {} ms",
        report.phase1_ok, report.count, report.phase1_ms
    );
    write_json(phase1, &report)?;

    let waiting = Instant::now();
    while !barrier.exists() {
        if waiting.elapsed() > spec.barrier_timeout {
            drop(barrier_tx);
            return Err(format!(
                "no barrier file {} within {:?}",
                barrier.display(),
                spec.barrier_timeout
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let released = Instant::now();
    let _ = barrier_tx.send(true);
    for t in tasks {
        match t.await {
            Ok(None) => {}
            Ok(Some(f)) => report.fail(f),
            Err(e) => report.fail(Failure {
                conn: u32::MAX,
                phase: "phase2".into(),
                source: String::new(),
                target: String::new(),
                error: format!("task: {e}"),
            }),
        }
    }
    let phase1_failed: u32 = report
        .failures_by_reason
        .iter()
        .filter(|(k, _)| k.starts_with("phase1"))
        .map(|(_, v)| v)
        .sum();
    let phase2_failed: u32 = report
        .failures_by_reason
        .iter()
        .filter(|(k, _)| k.starts_with("phase2"))
        .map(|(_, v)| v)
        .sum();
    report.phase2_ok = spec.count - phase1_failed - phase2_failed;
    report.phase2_ms = released.elapsed().as_millis() as u64;
    eprintln!(
        "conn-load client: phase 2: {}/{} ok in {} ms",
        report.phase2_ok, report.count, report.phase2_ms
    );
    Ok(report)
}

async fn connect(source: IpAddr, target: SocketAddr) -> Result<TcpStream, String> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("socket: {e}"))?;
    let one: libc::c_int = 1;
    // SAFETY: valid socket descriptor, option value of the size given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 && target.is_ipv4() {
        return Err(format!(
            "IP_BIND_ADDRESS_NO_PORT: {}",
            std::io::Error::last_os_error()
        ));
    }
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let s = socket
        .connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn exchange(s: &mut TcpStream, id: u32, phase: u8) -> Result<(), String> {
    s.write_all(&message(id, phase, 0, REQUEST_LEN))
        .await
        .map_err(|e| format!("write: {e}"))?;
    let (rid, rphase, rdir, payload) = read_message(s)
        .await?
        .ok_or_else(|| "closed by the server".to_string())?;
    if (rid, rphase, rdir) != (id, phase, 1) {
        return Err(format!(
            "answer for conn {rid} phase {rphase} dir {rdir}, want conn {id} phase {phase}"
        ));
    }
    check_payload(id, phase, 1, &payload, RESPONSE_LEN)
}

// ---------------------------------------------------------------- test-side handles

/// A `conn-load serve` process; killed on drop.
#[derive(Debug)]
pub struct LoadServer {
    pub process: Process,
}

impl LoadServer {
    /// Starts the server on `ip` and every port of `ports` in `ns`, and waits until it listens.
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, label: &str, ip: IpAddr, ports: &[u16]) -> LoadServer {
        let ready = dir.join(format!("{label}.ready"));
        let _ = std::fs::remove_file(&ready);
        let bin = binary().to_string_lossy().into_owned();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let (ip, ports, ready_s) = (ip.to_string(), ports.join(","), ready.to_string_lossy());
        let mut process = ns.spawn(
            dir,
            label,
            &[
                &bin, "serve", "--listen", &ip, "--ports", &ports, "--ready", &ready_s,
            ],
        );
        let waited = try_wait_until(Duration::from_secs(10), "conn-load server", || {
            ready.exists() || !process.is_running()
        });
        assert!(
            waited.is_ok() && process.is_running(),
            "conn-load server did not start: {}",
            process.log()
        );
        LoadServer { process }
    }
}

/// A `conn-load client` process; killed on drop.
#[derive(Debug)]
pub struct LoadClient {
    pub process: Process,
    phase1: PathBuf,
    barrier: PathBuf,
    report: PathBuf,
}

impl LoadClient {
    /// Starts the client in `ns`; it connects at once.
    #[track_caller]
    pub fn start(ns: &Netns, dir: &Path, label: &str, spec: &LoadSpec) -> LoadClient {
        let file = |ext: &str| dir.join(format!("{label}.{ext}"));
        let (phase1, barrier, report) = (file("phase1.json"), file("barrier"), file("report.json"));
        for f in [&phase1, &barrier, &report] {
            let _ = std::fs::remove_file(f);
        }
        let bin = binary().to_string_lossy().into_owned();
        let mut args = vec![bin, "client".into()];
        args.extend(spec.args());
        for (k, f) in [
            ("--phase1", &phase1),
            ("--barrier", &barrier),
            ("--report", &report),
        ] {
            args.push(k.into());
            args.push(f.to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = ns.spawn(dir, label, &args);
        LoadClient {
            process,
            phase1,
            barrier,
            report,
        }
    }

    /// Waits until every connection finished its first exchange (or failed); the report then.
    pub fn wait_phase1(&mut self, timeout: Duration) -> Result<LoadReport, String> {
        let (process, phase1) = (&mut self.process, &self.phase1);
        try_wait_until(timeout, "conn-load phase 1", || {
            phase1.exists() || !process.is_running()
        })
        .map_err(|e| format!("{e}: {}", self.process.log()))?;
        read_json(&self.phase1).map_err(|e| format!("{e}: {}", self.process.log()))
    }

    /// Lets every connection run its second exchange.
    pub fn release(&self) {
        write_atomic(&self.barrier, b"go\n").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits for the client to finish (call [`LoadClient::release`] first) and returns its report.
    pub fn finish(mut self, timeout: Duration) -> Result<LoadReport, String> {
        let process = &mut self.process;
        try_wait_until(timeout, "conn-load phase 2", || !process.is_running())
            .map_err(|e| format!("{e}: {}", self.process.log()))?;
        let status = self.process.exit_status();
        read_json(&self.report)
            .map_err(|e| format!("{e} (exit {status:?}): {}", self.process.log()))
    }
}

// ---------------------------------------------------------------- shared bits

/// `--key value` arguments of the `conn-load` binary.
#[derive(Debug, Clone, Default)]
pub struct Args(BTreeMap<String, String>);

impl Args {
    pub fn parse_cli(args: &[String]) -> Result<Args, String> {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --key, got {k}"))?;
            let value = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            map.insert(key.to_string(), value.clone());
        }
        Ok(Args(map))
    }

    pub fn get(&self, key: &str) -> Result<&str, String> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.get(key)?;
        v.parse().map_err(|e| format!("--{key} {v}: {e}"))
    }

    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.contains_key(key) {
            true => self.parse(key),
            false => Ok(default),
        }
    }

    pub fn list<T: std::str::FromStr>(&self, key: &str) -> Result<Vec<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.get(key)?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e| format!("--{key} {s}: {e}")))
            .collect()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// Writes through a temporary file and a rename: readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {}: {e}", path.display()))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| format!("json: {e}"))?;
    write_atomic(path, &text)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("parse {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_depends_on_every_input() {
        let base: Vec<u8> = (0..64).map(|at| payload_byte(7, 1, 0, at)).collect();
        for other in [(8, 1, 0), (7, 2, 0), (7, 1, 1), (7 + (1 << 24), 1, 0)] {
            let v: Vec<u8> = (0..64)
                .map(|at| payload_byte(other.0, other.1, other.2, at))
                .collect();
            assert_ne!(base, v, "{other:?}");
        }
        let distinct: std::collections::HashSet<u8> = base.iter().copied().collect();
        assert!(distinct.len() > 30);
    }

    #[test]
    fn messages_check_and_failures_group() {
        let m = message(42, 2, 1, RESPONSE_LEN);
        assert_eq!(m.len(), HEADER + RESPONSE_LEN);
        assert!(check_payload(42, 2, 1, &m[HEADER..], RESPONSE_LEN).is_ok());
        assert!(check_payload(43, 2, 1, &m[HEADER..], RESPONSE_LEN).is_err());
        let mut r = LoadReport::default();
        for conn in 0..30 {
            r.fail(Failure {
                conn,
                phase: "phase2".into(),
                source: "10.1.0.10".into(),
                target: "10.2.0.10:7000".into(),
                error: format!("read payload: early eof after {} bytes", 100 + conn),
            });
        }
        assert_eq!(r.failures.len(), LISTED_FAILURES);
        assert_eq!(
            r.failures_by_reason
                .get("phase2: read payload: early eof after N bytes"),
            Some(&30)
        );
    }

    #[test]
    fn args_parse() {
        let a = Args::parse_cli(&[
            "--count".into(),
            "10".into(),
            "--targets".into(),
            "10.2.0.10:7000,10.2.0.10:7001".into(),
        ])
        .unwrap();
        assert_eq!(a.parse::<u32>("count").unwrap(), 10);
        assert_eq!(a.list::<SocketAddr>("targets").unwrap().len(), 2);
        assert_eq!(a.parse_or("concurrency", 5u32).unwrap(), 5);
        assert!(a.get("sources").is_err());
    }
}
