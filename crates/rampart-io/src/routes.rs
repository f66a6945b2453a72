//! Routes for remote VPN domains through the TUN device, over rtnetlink: the main table's
//! device routes, and injected routes (`[rim]`) in their own table with their own protocol
//! number and metric, for a routing daemon to redistribute.
//!
//! Invariant: `installed` and `injected` hold exactly the routes this process added and has not
//! removed, so [`Routes::remove_all`] on exit touches nothing it does not own.

use std::collections::BTreeSet;

use ipnet::IpNet;
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::error::RouteError;
use crate::IoError;

/// The route table handle for one TUN device.
pub struct Routes {
    handle: Handle,
    device: String,
    index: u32,
    installed: BTreeSet<IpNet>,
    injected: BTreeSet<Injected>,
}

/// An injected route: prefix, table, protocol, metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Injected {
    pub prefix: IpNet,
    pub table: u32,
    pub protocol: u8,
    pub metric: u32,
}

impl Routes {
    /// Opens a netlink route socket (in the network namespace of the calling thread) for routes
    /// through the device `device` with interface index `index`. Must be called inside a tokio
    /// runtime: the netlink connection runs as a task.
    pub fn open(device: &str, index: u32) -> Result<Routes, IoError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| IoError::Netlink { source })?;
        tokio::spawn(connection);
        Ok(Routes {
            handle,
            device: device.to_owned(),
            index,
            installed: BTreeSet::new(),
            injected: BTreeSet::new(),
        })
    }

    /// Adds `prefix dev <device>`, replacing a route to the same prefix if one exists.
    pub async fn add(&mut self, prefix: IpNet) -> Result<(), RouteError> {
        let message = self.message(prefix);
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| self.error("add", prefix, e))?;
        self.installed.insert(prefix);
        Ok(())
    }

    /// Removes `prefix dev <device>`. A route that is already gone counts as removed.
    pub async fn del(&mut self, prefix: IpNet) -> Result<(), RouteError> {
        self.installed.remove(&prefix);
        let message = self.message(prefix);
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -3 => Ok(()), // ESRCH
            Err(e) => Err(self.error("delete", prefix, e)),
        }
    }

    /// Injects `prefix dev <device> table T proto P metric M`, replacing the same route.
    pub async fn inject(&mut self, route: Injected) -> Result<(), RouteError> {
        let message = self.injected_message(route);
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| self.error("inject", route.prefix, e))?;
        self.injected.insert(route);
        Ok(())
    }

    /// Withdraws an injected route. A route that is already gone counts as withdrawn.
    pub async fn withdraw(&mut self, route: Injected) -> Result<(), RouteError> {
        self.injected.remove(&route);
        let message = self.injected_message(route);
        match self.handle.route().del(message).execute().await {
            Ok(()) => Ok(()),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -3 => Ok(()), // ESRCH
            Err(e) => Err(self.error("withdraw", route.prefix, e)),
        }
    }

    /// Removes every route this handle added or injected; errors are logged, not returned.
    pub async fn remove_all(&mut self) {
        let prefixes: Vec<IpNet> = self.installed.iter().copied().collect();
        for prefix in prefixes {
            if let Err(e) = self.del(prefix).await {
                tracing::error!("{e}");
            }
        }
        let injected: Vec<Injected> = self.injected.iter().copied().collect();
        for route in injected {
            if let Err(e) = self.withdraw(route).await {
                tracing::error!("{e}");
            }
        }
    }

    /// The routes currently injected by this handle.
    pub fn injected(&self) -> impl Iterator<Item = &Injected> {
        self.injected.iter()
    }

    /// The prefixes currently installed by this handle.
    pub fn installed(&self) -> impl Iterator<Item = &IpNet> {
        self.installed.iter()
    }

    fn message(&self, prefix: IpNet) -> RouteMessage {
        self.builder(prefix, |b| b)
    }

    fn injected_message(&self, route: Injected) -> RouteMessage {
        self.builder(route.prefix, |b| {
            b.table_id(route.table)
                .protocol(RouteProtocol::from(route.protocol))
                .priority(route.metric)
        })
    }

    /// `prefix dev <device>`, with whatever `extra` adds (table, protocol, metric).
    fn builder(
        &self,
        prefix: IpNet,
        extra: impl FnOnce(
            RouteMessageBuilder<std::net::IpAddr>,
        ) -> RouteMessageBuilder<std::net::IpAddr>,
    ) -> RouteMessage {
        let prefix = prefix.trunc();
        let builder = RouteMessageBuilder::<std::net::IpAddr>::new()
            .destination_prefix(prefix.network(), prefix.prefix_len())
            // A trunc()ed IpNet always has a valid length for its family.
            .unwrap_or_else(|_| RouteMessageBuilder::<std::net::IpAddr>::new())
            .output_interface(self.index);
        let builder = extra(builder);
        // Like `ip route add PREFIX dev DEV`: a device route without gateway is link scoped.
        match prefix {
            IpNet::V4(_) => builder.scope(RouteScope::Link).build(),
            IpNet::V6(_) => builder.build(),
        }
    }

    fn error(&self, op: &'static str, prefix: IpNet, e: rtnetlink::Error) -> RouteError {
        let message = match e {
            rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
            other => other.to_string(),
        };
        RouteError {
            op,
            prefix,
            device: self.device.clone(),
            message,
        }
    }
}
