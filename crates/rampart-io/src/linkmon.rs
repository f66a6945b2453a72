//! Link state of the cluster's monitored interfaces and of the interfaces that hold its sync
//! addresses, over rtnetlink: one dump at start, then the `RTMGRP_LINK` notifications, reduced
//! to "interface X is now up/down" changes. [`interfaces_holding`] finds which interface holds
//! an address.
//!
//! An interface is up when it is administratively up (`IFF_UP`) and the kernel says it can
//! pass traffic (`IFF_RUNNING`: operational state up, or unknown for devices that do not
//! report one). An interface that does not exist (never created, or deleted) is down.
//!
//! Invariant: a change is yielded only when it differs from the last state yielded for that
//! interface, and every monitored interface gets one yielded state first (from the dump).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::MulticastGroup;

use crate::IoError;

/// A monitored interface changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChange {
    pub interface: String,
    pub up: bool,
}

type Notifications = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Watches the link state of a fixed set of interfaces.
pub struct LinkMonitor {
    notifications: Notifications,
    /// Last state yielded per monitored interface.
    state: BTreeMap<String, Option<bool>>,
    pending: VecDeque<LinkChange>,
}

impl LinkMonitor {
    /// Subscribes to link notifications, then reads the current state of every interface; the
    /// first changes [`LinkMonitor::next`] yields are the initial state of each monitored
    /// interface. Must be called inside a tokio runtime (in the network namespace to watch).
    pub async fn open(interfaces: &[String]) -> Result<LinkMonitor, IoError> {
        let (connection, handle, notifications) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(|source| IoError::Netlink { source })?;
        tokio::spawn(connection);
        let mut monitor = LinkMonitor {
            notifications,
            state: interfaces.iter().map(|i| (i.clone(), None)).collect(),
            pending: VecDeque::new(),
        };
        let mut present: BTreeMap<String, bool> = BTreeMap::new();
        let mut links = handle.link().get().execute();
        loop {
            match links.try_next().await {
                Ok(Some(link)) => {
                    if let Some((name, up)) = link_state(&link, true) {
                        present.insert(name, up);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(IoError::Netlink {
                        source: std::io::Error::other(format!("dumping links: {e}")),
                    })
                }
            }
        }
        for interface in interfaces {
            let up = present.get(interface).copied().unwrap_or(false);
            if !present.contains_key(interface) {
                tracing::warn!("monitored interface {interface} does not exist: counted as down");
            }
            monitor.observe(interface, up);
        }
        Ok(monitor)
    }

    /// The next change of a monitored interface. Cancel safe (for `select!`). `None` when
    /// the netlink connection ended.
    pub async fn next(&mut self) -> Option<LinkChange> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                return Some(change);
            }
            let (message, _) = self.notifications.next().await?;
            let NetlinkPayload::InnerMessage(inner) = message.payload else {
                continue;
            };
            let found = match &inner {
                RouteNetlinkMessage::NewLink(link) => link_state(link, true),
                RouteNetlinkMessage::DelLink(link) => link_state(link, false),
                _ => None,
            };
            if let Some((name, up)) = found {
                self.observe(&name, up);
            }
        }
    }

    /// The last state yielded for `interface` (`None`: not monitored or nothing yielded yet).
    pub fn state(&self, interface: &str) -> Option<bool> {
        self.state.get(interface).copied().flatten()
    }

    fn observe(&mut self, interface: &str, up: bool) {
        if let Some(last) = self.state.get_mut(interface) {
            if *last != Some(up) {
                *last = Some(up);
                self.pending.push_back(LinkChange {
                    interface: interface.to_owned(),
                    up,
                });
            }
        }
    }
}

/// The name and state of the link in `link`; `exists = false` for a deleted link.
fn link_state(link: &LinkMessage, exists: bool) -> Option<(String, bool)> {
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.clone()),
        _ => None,
    })?;
    let flags = link.header.flags;
    let up = exists && flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running);
    Some((name, up))
}

/// The interface that holds each of `addrs`, by name, in the same order; `None` for an address
/// no interface has (yet). One address dump over a netlink connection of its own. Must be
/// called inside a tokio runtime, in the network namespace to look at.
pub async fn interfaces_holding(addrs: &[IpAddr]) -> Result<Vec<Option<String>>, IoError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| IoError::Netlink { source })?;
    let task = tokio::spawn(connection);
    let mut found: Vec<Option<u32>> = vec![None; addrs.len()];
    let mut dump = handle.address().get().execute();
    let result = loop {
        match dump.try_next().await {
            Ok(Some(message)) => {
                for attribute in &message.attributes {
                    let (AddressAttribute::Local(ip) | AddressAttribute::Address(ip)) = attribute
                    else {
                        continue;
                    };
                    for (slot, addr) in found.iter_mut().zip(addrs) {
                        if slot.is_none() && addr == ip {
                            *slot = Some(message.header.index);
                        }
                    }
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => {
                break Err(IoError::Netlink {
                    source: std::io::Error::other(format!("dumping addresses: {e}")),
                })
            }
        }
    };
    task.abort();
    result?;
    Ok(found
        .into_iter()
        .map(|index| index.and_then(interface_name))
        .collect())
}

/// The name of interface `index`, `None` if there is none.
fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname writes at most.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}
