//! End hosts: a real TCP/IP stack (smoltcp) on a simulated device ([`device`]), the
//! applications that move data through it ([`apps`]: a bulk sender, a receiver that checks
//! every byte) and, on a proxy host, the HTTP CONNECT relay ([`relay`]).

mod apps;
mod device;
mod relay;

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use apps::App;
pub use apps::{ProxyHop, TransferRecord};
pub(crate) use device::SimDevice;

use relay::ProxyService;

/// Socket buffers of every TCP connection: a 64 KiB window, as without window scaling.
pub(crate) const TCP_BUFFER: usize = 64 * 1024;
/// Bytes generated per refill of a sender.
const CHUNK: usize = 16 * 1024;

/// A host: one smoltcp interface with one address and a default route.
pub struct Host {
    iface: Interface,
    device: SimDevice,
    sockets: SocketSet<'static>,
    apps: Vec<App>,
    next_port: u16,
    proxy: Option<ProxyService>,
    /// Relay buffer of the proxy.
    scratch: Vec<u8>,
    /// The stack's seed and default router, to rebuild the interface with another MTU.
    seed: u64,
    gateway: Option<Ipv4Addr>,
}

pub(crate) fn smol(t: Duration) -> SmolInstant {
    SmolInstant::from_micros(t.as_micros() as i64)
}

impl Host {
    pub fn new(
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        mtu: usize,
        seed: u64,
    ) -> Host {
        let mut device = SimDevice {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu,
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut device, SmolInstant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), prefix));
        });
        if let Some(gw) = gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        Host {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            apps: Vec::new(),
            next_port: 40000 + (seed % 1000) as u16,
            proxy: None,
            scratch: Vec::new(),
            seed,
            gateway,
        }
    }

    fn local_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        port
    }

    fn tcp_socket() -> tcp::Socket<'static> {
        tcp_socket()
    }

    /// Replaces the host's address (a remote-access client's inner host takes its Office Mode
    /// address); `None` leaves it without one. The medium is IP and a client's tunnel takes
    /// every packet, so the address's network is everything: no route is needed.
    pub fn set_address(&mut self, addr: Option<Ipv4Addr>) {
        self.iface.update_ip_addrs(|a| {
            a.clear();
            if let Some(addr) = addr {
                let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), 0));
            }
        });
    }

    /// The device's MTU changed (a client's tunnel MTU): segments, retransmissions included,
    /// are sized to it from now on. smoltcp reads the device's capabilities once, so the
    /// interface is rebuilt (same seed, addresses and route); the sockets live apart from it
    /// and keep their connections.
    pub fn set_mtu(&mut self, mtu: usize, now: Duration) {
        if self.device.mtu == mtu {
            return;
        }
        self.device.mtu = mtu;
        let addrs: Vec<IpCidr> = self.iface.ip_addrs().to_vec();
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = self.seed;
        self.iface = Interface::new(config, &mut self.device, smol(now));
        self.iface.update_ip_addrs(|a| {
            for c in addrs {
                let _ = a.push(c);
            }
        });
        if let Some(gw) = self.gateway {
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
    }

    /// A packet arrives from the network.
    pub fn receive(&mut self, packet: Vec<u8>) {
        self.device.rx.push_back(packet);
    }

    /// Runs the stack and the applications at `now`; returns the packets to send.
    pub fn run(
        &mut self,
        now: Duration,
        transfers: &mut [TransferRecord],
        notes: &mut Vec<String>,
    ) -> Vec<Vec<u8>> {
        let ts = smol(now);
        for _ in 0..64 {
            self.iface.poll(ts, &mut self.device, &mut self.sockets);
            let progress = self.step_apps(now, transfers, notes) | self.step_proxy(notes);
            if !progress && self.device.rx.is_empty() {
                self.iface.poll(ts, &mut self.device, &mut self.sockets);
                break;
            }
        }
        std::mem::take(&mut self.device.tx)
    }

    /// When the stack next needs to run.
    pub fn poll_at(&mut self, now: Duration) -> Option<Duration> {
        self.iface
            .poll_at(smol(now), &self.sockets)
            .map(|t| Duration::from_micros(t.total_micros().max(0) as u64))
    }
}

/// A TCP socket as every simulated stack uses it: 64 KiB buffers, Reno, no Nagle, and a 1 s
/// keep-alive in place of the persist timer smoltcp lacks.
pub(crate) fn tcp_socket() -> tcp::Socket<'static> {
    tcp_socket_with(TCP_BUFFER)
}

/// [`tcp_socket`] with `buffer`-byte socket buffers (a group of many small connections uses
/// smaller ones: its windows never fill, and a thousand 64 KiB pairs would be 128 MB).
pub(crate) fn tcp_socket_with(buffer: usize) -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; buffer]),
        tcp::SocketBuffer::new(vec![0u8; buffer]),
    );
    s.set_congestion_control(tcp::CongestionControl::Reno);
    s.set_nagle_enabled(false);
    // smoltcp has no persist timer: after a retransmission timeout against a closed window
    // it waits for input, and a lost window update would stall the connection forever. A
    // 1 s keep-alive probes the window the way a persist timer would.
    s.set_keep_alive(Some(smoltcp::time::Duration::from_secs(1)));
    s
}
