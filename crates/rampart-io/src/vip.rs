//! A cluster's virtual addresses: added to and removed from interfaces over rtnetlink, and
//! announced to the link when claimed, so switches and neighbours move the address to this
//! member at once instead of after their neighbour entries time out.
//!
//! - IPv4: a gratuitous ARP (an ARP request with sender = target = the address and the
//!   interface's MAC, to ff:ff:ff:ff:ff:ff), as keepalived sends it.
//! - IPv6: an unsolicited neighbour advertisement (ICMPv6 136, override flag set, solicited
//!   flag clear, a target link-layer address option) to ff02::1 with hop limit 255
//!   (RFC 4861 7.2.6). IPv6 addresses are added with `nodad`: a virtual address moves between
//!   members and must be usable at once, not tentative for a second.
//!
//! Each announcement is sent [`ANNOUNCE_COUNT`] times [`ANNOUNCE_SPACING`] apart from a task of
//! its own, so the event loop never waits for it.
//!
//! In Load Sharing with routed distribution every member holds every virtual address at once
//! and the routers reach it by announced routes: there the handle claims *silently*
//! ([`Vips::silent`]), with no announcement, so no member pulls the neighbours' entries to
//! itself.
//!
//! Invariant: `claimed` holds exactly the addresses this handle claimed and has not released,
//! so [`Vips::release_all`] at shutdown removes what this process added and nothing else.

use std::collections::BTreeSet;
use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{LinkAttribute, LinkLayerType};
use rtnetlink::{AddressMessageBuilder, Handle};

use crate::IoError;

/// How often each announcement is sent.
pub const ANNOUNCE_COUNT: usize = 3;
/// The pause between two copies of an announcement.
pub const ANNOUNCE_SPACING: Duration = Duration::from_millis(10);

const EEXIST: i32 = -libc::EEXIST;
const EADDRNOTAVAIL: i32 = -libc::EADDRNOTAVAIL;

/// A virtual address change the kernel refused. Not fatal: the event loop logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {op} virtual address {addr} on {interface}: {message}")]
pub struct VipError {
    /// "claim" or "release".
    pub op: &'static str,
    pub addr: IpNet,
    pub interface: String,
    pub message: String,
}

/// The virtual-address handle of one process (in the network namespace it was opened in).
pub struct Vips {
    handle: Handle,
    claimed: BTreeSet<(String, IpNet)>,
    /// Whether a claim is announced (gratuitous ARP / unsolicited NA); false only for
    /// routed Load Sharing.
    announce: bool,
}

impl Vips {
    /// Opens a netlink route socket. Must be called inside a tokio runtime.
    pub fn open() -> Result<Vips, IoError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| IoError::Netlink { source })?;
        tokio::spawn(connection);
        Ok(Vips {
            handle,
            claimed: BTreeSet::new(),
            announce: true,
        })
    }

    /// From now on, claims add the address without announcing it (routed Load Sharing: every
    /// member holds the address and the routers, not ARP/ND, decide who gets a packet).
    pub fn silent(mut self) -> Vips {
        self.announce = false;
        self
    }

    /// Whether claims are announced.
    pub fn announces(&self) -> bool {
        self.announce
    }

    /// Adds `addr` to `interface` (an address already there counts as added) and announces it
    /// unless the handle is [`Vips::silent`]. An announcement that cannot be sent is logged;
    /// the address stays claimed.
    pub async fn claim(&mut self, interface: &str, addr: IpNet) -> Result<(), VipError> {
        let err = |message: String| VipError {
            op: "claim",
            addr,
            interface: interface.to_owned(),
            message,
        };
        let index = if_index(interface).map_err(|e| err(e.to_string()))?;
        let mut request = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match request.execute().await {
            Ok(()) => {}
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == EEXIST => {}
            Err(e) => return Err(err(netlink_message(e))),
        }
        self.claimed.insert((interface.to_owned(), addr));
        if !self.announce {
            return Ok(());
        }
        match self.link_layer_address(index).await {
            Ok(Some(mac)) => {
                if let Err(e) = announce(interface, index, mac, addr.addr()) {
                    tracing::warn!(
                        "virtual address {addr} on {interface}: cannot announce it: {e}"
                    );
                }
            }
            Ok(None) => tracing::debug!(
                "virtual address {addr} on {interface}: not an Ethernet interface, not announced"
            ),
            Err(e) => {
                tracing::warn!("virtual address {addr} on {interface}: cannot announce it: {e}")
            }
        }
        Ok(())
    }

    /// Removes `addr` from `interface`. An address that is not there counts as removed.
    pub async fn release(&mut self, interface: &str, addr: IpNet) -> Result<(), VipError> {
        self.claimed.remove(&(interface.to_owned(), addr));
        let err = |message: String| VipError {
            op: "release",
            addr,
            interface: interface.to_owned(),
            message,
        };
        let index = if_index(interface).map_err(|e| err(e.to_string()))?;
        let message = match addr {
            IpNet::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a.addr(), a.prefix_len())
                .build(),
            IpNet::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a.addr(), a.prefix_len())
                .build(),
        };
        match self.handle.address().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == EADDRNOTAVAIL => Ok(()),
            Err(e) => Err(err(netlink_message(e))),
        }
    }

    /// Removes every address this handle claimed; errors are logged, not returned.
    pub async fn release_all(&mut self) {
        let all: Vec<(String, IpNet)> = self.claimed.iter().cloned().collect();
        for (interface, addr) in all {
            match self.release(&interface, addr).await {
                Ok(()) => tracing::info!("virtual address {addr} removed from {interface}"),
                Err(e) => tracing::error!("{e}"),
            }
        }
    }

    /// The addresses currently claimed by this handle.
    pub fn claimed(&self) -> impl Iterator<Item = &(String, IpNet)> {
        self.claimed.iter()
    }

    /// The interface's MAC address, `None` if it is not an Ethernet-like interface.
    async fn link_layer_address(&self, index: u32) -> io::Result<Option<[u8; 6]>> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .map_err(|e| io::Error::other(netlink_message(e)))?
            .ok_or_else(|| io::Error::other("interface vanished"))?;
        if link.header.link_layer_type != LinkLayerType::Ether {
            return Ok(None);
        }
        Ok(link.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        }))
    }
}

fn netlink_message(e: rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    }
}

/// The index of `interface` in the calling thread's network namespace.
pub fn if_index(interface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"))?;
    // SAFETY: `name` is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {interface}"),
        ));
    }
    Ok(index)
}

/// Sends the announcement of `ip` on `interface` ([`ANNOUNCE_COUNT`] copies, from a task).
/// The socket is opened now, in the calling thread's network namespace.
pub fn announce(
    interface: &str,
    index: u32,
    mac: [u8; 6],
    ip: IpAddr,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let sender = match ip {
        IpAddr::V4(v4) => Announcer::garp(index, mac, v4)?,
        IpAddr::V6(v6) => Announcer::unsolicited_na(index, mac, v6)?,
    };
    let what = format!("{ip} on {interface}");
    Ok(tokio::spawn(async move {
        for i in 0..ANNOUNCE_COUNT {
            if i > 0 {
                tokio::time::sleep(ANNOUNCE_SPACING).await;
            }
            if let Err(e) = sender.send() {
                tracing::warn!("announcing {what}: {e}");
                return;
            }
        }
        tracing::debug!("announced {what} {ANNOUNCE_COUNT} times");
    }))
}

/// One announcement, ready to be sent again and again.
struct Announcer {
    fd: OwnedFd,
    packet: Vec<u8>,
    dest: Dest,
}

enum Dest {
    Link(libc::sockaddr_ll),
    V6(libc::sockaddr_in6),
}

impl Announcer {
    fn garp(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<Announcer> {
        // Protocol 0: the socket only sends, it never receives anything.
        let fd = socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0)?;
        // SAFETY: sockaddr_ll is plain old data; all zeros is a valid value.
        let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        ll.sll_ifindex = index as i32;
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        Ok(Announcer {
            fd,
            packet: garp_packet(mac, ip),
            dest: Dest::Link(ll),
        })
    }

    fn unsolicited_na(index: u32, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<Announcer> {
        let fd = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
        let set = |level, name, value: i32| setsockopt_int(&fd, level, name, value);
        set(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, 255)?;
        set(libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
        set(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, index as i32)?;
        set(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, 0)?;
        // From the virtual address itself (it is `nodad`, so usable at once); if the kernel
        // will not have it, it picks the interface's link-local address.
        let _ = set(libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 1);
        let source = sockaddr_in6(ip, 0);
        // SAFETY: `source` is a valid sockaddr_in6 of the size passed.
        let _ = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const source).cast(),
                size_of::<libc::sockaddr_in6>() as u32,
            )
        };
        let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        Ok(Announcer {
            fd,
            packet: na_packet(mac, ip),
            dest: Dest::V6(sockaddr_in6(all_nodes, index)),
        })
    }

    fn send(&self) -> io::Result<()> {
        let (addr, len): (*const libc::sockaddr, usize) = match &self.dest {
            Dest::Link(ll) => (
                (ll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>(),
            ),
            Dest::V6(v6) => (
                (v6 as *const libc::sockaddr_in6).cast(),
                size_of::<libc::sockaddr_in6>(),
            ),
        };
        // SAFETY: the packet buffer and the address are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                self.packet.as_ptr().cast(),
                self.packet.len(),
                0,
                addr,
                len as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the descriptor is owned below.
    let fd = unsafe {
        libc::socket(
            domain,
            ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt_int(fd: &OwnedFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a valid int for the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_in6(ip: Ipv6Addr, scope: u32) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain old data; all zeros is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = ip.octets();
    sa.sin6_scope_id = scope;
    sa
}

/// The ARP part of a gratuitous ARP (the kernel adds the Ethernet header).
pub fn garp_packet(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut p = Vec::with_capacity(28);
    p.extend_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    p.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    p.extend_from_slice(&[6, 4]);
    p.extend_from_slice(&1u16.to_be_bytes()); // request
    p.extend_from_slice(&mac);
    p.extend_from_slice(&ip.octets());
    p.extend_from_slice(&[0; 6]);
    p.extend_from_slice(&ip.octets());
    p
}

/// An unsolicited neighbour advertisement (ICMPv6 part; the kernel fills in the checksum).
pub fn na_packet(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&[136, 0, 0, 0]); // type, code, checksum
    p.extend_from_slice(&[0x20, 0, 0, 0]); // override; not router, not solicited
    p.extend_from_slice(&ip.octets());
    p.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    p.extend_from_slice(&mac);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_has_sender_equal_target() {
        let mac = [2, 0, 0, 0, 0, 0x0a];
        let p = garp_packet(mac, Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(p.len(), 28);
        assert_eq!(&p[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &mac);
        assert_eq!(&p[14..18], &[192, 0, 2, 10]);
        assert_eq!(&p[24..28], &[192, 0, 2, 10]);
    }

    #[test]
    fn na_is_unsolicited_with_override_and_target_option() {
        let mac = [2, 0, 0, 0, 0, 0x0a];
        let ip: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let p = na_packet(mac, ip);
        assert_eq!(p.len(), 32);
        assert_eq!(p[0], 136);
        assert_eq!(p[4], 0x20);
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..32], &mac);
    }
}
