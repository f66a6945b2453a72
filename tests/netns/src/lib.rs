//! Harness for the root-only network-namespace tests: real processes, real kernel routing, real
//! strongSwan, and (later) real `rampart` gateways.
//!
//! Everything a test creates is owned by an RAII value and removed in `Drop`, also when the test
//! panics: namespaces ([`Netns`]), their processes ([`Process`]), captures ([`Capture`]) and the log
//! directory ([`TestDir`], kept and printed when the test failed).
//!
//! Tests start with [`skip_unless_root`] and, when they build a topology, hold the [`serial`] lock
//! so that heavy tests never overlap on the 2-core machines this runs on.

pub mod bird;
pub mod capture;
pub mod cluster_topology;
pub mod conn_load;
pub mod env;
pub mod fragnat;
pub mod ike_flood;
pub mod inspect;
pub mod ls_topology;
pub mod mep_topology;
pub mod nat_topology;
pub mod netns;
pub mod new_conns;
pub mod pcap;
pub mod pki;
pub mod probe;
pub mod ra_charon;
pub mod ra_client;
pub mod ra_gateway;
pub mod ra_load;
pub mod ra_services;
pub mod ra_topology;
pub mod rampart;
pub mod strongswan;
pub mod topology;
pub mod traffic;
pub mod v6_topology;
pub mod vici_raw;
pub mod wait;
pub mod workdir;

pub use capture::Capture;
pub use env::{heavy, require_tools, serial, skip_unless_root, SerialGuard};
pub use netns::{veth, CommandError, Netns, Process};
pub use pcap::{check_only_ike_esp, CaptureSummary};
pub use topology::SiteToSite;
pub use traffic::{
    ping, tcp_transfer, udp_burst, RunningTransfer, TransferReport, TransferSpec, UdpReport,
};
pub use wait::{try_wait_until, wait_until, WaitTimeout};
pub use workdir::TestDir;
