//! The stream listeners of `[remote_access]`: RFC 9329 TCP and Visitor Mode. Each listen
//! address is bound on its own; one that cannot be bound is logged (at ERROR, with the exact
//! line of [`bind_failure_line`]) and counted, and the others keep serving.
//!
//! Accepted connections get TCP_NODELAY (IKE messages and ESP are latency-sensitive) and TCP
//! keepalives (a client that vanished without a FIN does not hold its stream forever).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_wire::tcp_encap::Role;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::counters::Counters;
use super::pump::{self, Setup};
use super::table::Transport;
use super::visitor::{self, Route, Router};
use super::{StreamInput, Streams};

/// Pending connections per listener.
const BACKLOG: i32 = 1024;
/// TCP keepalive: idle time, interval and count before a silent peer's stream is closed.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_COUNT: u32 = 3;

/// The line logged (at ERROR) when a listen address of `transport` cannot be bound.
pub fn bind_failure_line(transport: Transport, addr: SocketAddr) -> String {
    let what = match transport {
        Transport::Tls => "Visitor Mode server",
        Transport::Tcp | Transport::Client => "TCP encapsulation server",
    };
    format!(
        "{what} failed to bind to {addr} (either the port is already taken or the address does not exist)"
    )
}

/// What [`start`] bound.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listening {
    /// Addresses now served, with their transport.
    pub bound: Vec<(Transport, SocketAddr)>,
    /// The logged line of each address that could not be bound.
    pub failures: Vec<String>,
}

/// What every accepted connection of one transport needs.
struct Ctx {
    transport: Transport,
    nat_t_port: u16,
    counters: Arc<Counters>,
    tx: mpsc::Sender<StreamInput>,
    router: Option<Arc<Router>>,
    idle: Option<pump::IdleTimeouts>,
}

/// Binds the listeners of `transport` on `addrs` and starts accepting on each (a task per
/// listener; they end with `streams`). Visitor Mode needs its `router`. Frames of accepted
/// streams reach the node as arriving on (the connection's local address, `nat_t_port`).
pub fn start(
    streams: &Streams,
    transport: Transport,
    addrs: &[SocketAddr],
    nat_t_port: u16,
    router: Option<Arc<Router>>,
    out: &mut Listening,
) {
    let counters = streams.counters(transport).clone();
    let ctx = Arc::new(Ctx {
        transport,
        nat_t_port,
        counters: counters.clone(),
        tx: streams.sender(),
        router,
        idle: streams.idle_timeouts(),
    });
    for &addr in addrs {
        match bind(addr) {
            Ok(listener) => {
                let local = listener.local_addr().unwrap_or(addr);
                tracing::info!("{} listening on TCP {local}", transport.name());
                out.bound.push((transport, local));
                tokio::spawn(accept_loop(listener, ctx.clone()));
            }
            Err(e) => {
                let line = bind_failure_line(transport, addr);
                tracing::error!("{line}");
                tracing::debug!("bind {addr}: {e}");
                Counters::add(&counters.bind_failures, 1);
                out.failures.push(line);
            }
        }
    }
}

/// A listening TCP socket on `addr`: SO_REUSEADDR (a restart does not wait for TIME_WAIT),
/// IPv6 sockets IPv6-only (`::` and `0.0.0.0` on one port coexist).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Ctx>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = ctx.tx.closed() => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                Counters::add(&ctx.counters.accepted, 1);
                let _ = tcp.set_nodelay(true);
                let keepalive = TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL)
                    .with_retries(KEEPALIVE_COUNT);
                let _ = SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let tx = ctx.tx.clone();
                    tokio::select! {
                        () = serve(tcp, peer, &ctx) => {}
                        () = tx.closed() => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!("{} listener: accept failed: {e}", ctx.transport.name());
                // Typically out of file descriptors: give the system a moment.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One accepted connection, from routing to the end of its stream.
async fn serve(mut tcp: TcpStream, peer: SocketAddr, ctx: &Ctx) {
    let local = match tcp.local_addr() {
        Ok(a) => SocketAddr::new(a.ip(), ctx.nat_t_port),
        Err(e) => {
            tracing::debug!("{} connection from {peer}: {e}", ctx.transport.name());
            return;
        }
    };
    let stream: super::BoxStream = match &ctx.router {
        None => Box::new(tcp),
        Some(router) => {
            let (hello, peeked) = match visitor::peek_hello(&mut tcp).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("Visitor Mode connection from {peer} closed: {e}");
                    return;
                }
            };
            let route = router.route(&hello);
            match route {
                Route::VisitorAlpn | Route::VisitorName => {
                    match router.accept(route, tcp, peeked).await {
                        Ok(tls) => Box::new(tls),
                        Err(e) => {
                            tracing::info!(
                                "Visitor Mode connection from {peer}: TLS handshake failed: {e}"
                            );
                            return;
                        }
                    }
                }
                Route::Backend(backend) => {
                    Counters::add(&ctx.counters.forwarded_to_backend, 1);
                    tracing::debug!(
                        "TLS connection from {peer} (server name {:?}) forwarded to the HTTPS backend {backend}",
                        hello.server_name
                    );
                    if let Err(e) = visitor::forward(tcp, &peeked, backend).await {
                        tracing::debug!("forwarding {peer} to {backend}: {e}");
                    }
                    return;
                }
                Route::Close => {
                    tracing::debug!(
                        "TLS connection from {peer} is not Visitor Mode (server name {:?}, ALPN {:?}) and no https_backend is set: closed",
                        hello.server_name,
                        hello.alpn.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>()
                    );
                    return;
                }
            }
        }
    };
    let (entry, pump) = pump::prepare(Setup {
        local,
        remote: peer,
        transport: ctx.transport,
        role: Role::Responder,
        counters: ctx.counters.clone(),
        tx: ctx.tx.clone(),
        idle: ctx.idle,
    });
    if ctx
        .tx
        .send(StreamInput::Opened {
            remote: peer,
            entry,
        })
        .await
        .is_err()
    {
        ctx.counters.ended();
        return;
    }
    pump.run(stream).await;
}
