//! The client machine's own TCP stack on its outside address (smoltcp): the stream transports
//! (to the gateway or its proxy) run on it. UDP and ESP go to the engine, not here.

use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::host::{smol, tcp_socket, SimDevice};

pub struct Outer {
    iface: Interface,
    pub device: SimDevice,
    pub sockets: SocketSet<'static>,
    next_port: u16,
}

impl Outer {
    pub fn new(
        addr: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        mtu: usize,
        seed: u64,
    ) -> Outer {
        let mut device = SimDevice::new(mtu);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        let iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        let mut outer = Outer {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            next_port: 40000 + (seed % 1000) as u16,
        };
        outer.readdress(addr, prefix, gateway);
        outer
    }

    /// The machine's address changed (roaming): connections on the old one are lost.
    pub fn readdress(&mut self, addr: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>) {
        self.iface.update_ip_addrs(|a| {
            a.clear();
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(addr), prefix));
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some(gw) = gateway {
            let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
        }
    }

    /// A new connection to `to`; returns its socket and our port.
    pub fn connect(&mut self, to: (Ipv4Addr, u16)) -> (SocketHandle, u16) {
        let port = self.next_port;
        self.next_port = self.next_port.wrapping_add(1).max(40000);
        let mut s = tcp_socket();
        let _ = s.connect(self.iface.context(), (IpAddress::Ipv4(to.0), to.1), port);
        (self.sockets.add(s), port)
    }

    /// Forgets a socket once the stack is done with it (closed sockets at once; closing ones
    /// stay until they are).
    pub fn release(&mut self, socket: SocketHandle) {
        if self.sockets.get::<tcp::Socket>(socket).state() == tcp::State::Closed {
            self.sockets.remove(socket);
        }
    }

    pub fn poll(&mut self, now: Duration) -> bool {
        self.iface
            .poll(smol(now), &mut self.device, &mut self.sockets)
            != smoltcp::iface::PollResult::None
    }

    pub fn poll_at(&mut self, now: Duration) -> Option<Duration> {
        self.iface
            .poll_at(smol(now), &self.sockets)
            .map(|t| Duration::from_micros(t.total_micros().max(0) as u64))
    }
}
