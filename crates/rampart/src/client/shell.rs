//! The host side of a client run: applies what the node reports
//! (`Output::VirtualAddress` / `Output::VirtualAddressLost`) as addresses, routes and DNS,
//! keeps the kill switch and the PAC file, journals every change ([`super::state`]) and
//! restores everything at the end.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rampart_config::{ClientProfile, DnsMode};
use rampart_wire::ike::CfgReply;

use super::control::Shared;
use super::dns::{self, DnsSettings};
use super::killswitch;
use super::plan::{self, DnsBackend, OuterRoute, PlanInput};
use super::state::{self, Change, Journal, Restore, State};
use super::status::DnsStatus;
use super::system::{LiveHost, System, SystemError};

/// Where a connection keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The journal of host changes.
    pub state: PathBuf,
    /// The control socket (`status`, `down`).
    pub control: PathBuf,
    /// The background client's log.
    pub log: PathBuf,
    /// The saved `/etc/resolv.conf`.
    pub resolv_backup: PathBuf,
}

impl Paths {
    pub fn new(state_dir: &Path, name: &str) -> Paths {
        Paths {
            state: state_dir.join(format!("{name}.state")),
            control: state_dir.join(format!("{name}.ctl")),
            log: state_dir.join(format!("{name}.log")),
            resolv_backup: state_dir.join(format!("{name}.resolv.conf")),
        }
    }
}

/// The resolv.conf the resolv.conf backend replaces.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The settings of the shell, from the profile.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    pub name: String,
    pub device: String,
    pub paths: Paths,
    pub dns: DnsBackend,
    pub kill_switch: bool,
    pub pac_file: Option<PathBuf>,
    pub pac_listen: Option<SocketAddr>,
    /// `host:port` of the proxy the PAC file sends non-VPN traffic to.
    pub pac_proxy: Option<String>,
}

impl ShellConfig {
    pub fn from_profile(p: &ClientProfile) -> ShellConfig {
        let dns = match p.dns {
            DnsMode::Off => DnsBackend::Off,
            DnsMode::Resolved => DnsBackend::Resolved,
            DnsMode::ResolvConf => DnsBackend::ResolvConf,
            DnsMode::Auto if dns::resolved_available() => DnsBackend::Resolved,
            DnsMode::Auto => DnsBackend::ResolvConf,
        };
        let pac_proxy = match &p.proxy {
            rampart_config::ProxySetting::Url { url, .. } => Some(
                url.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned(),
            ),
            _ => None,
        };
        ShellConfig {
            name: p.name.clone(),
            device: p.device.clone(),
            paths: Paths::new(&p.state_dir, &p.name),
            dns,
            kill_switch: p.kill_switch,
            pac_file: p.pac_file.clone(),
            pac_listen: p.pac_listen,
            pac_proxy,
        }
    }
}

/// Undoes what a journal lists (a crashed run's, or our own at the end). Returns how many
/// changes were undone. Fails without touching anything while the owning client runs.
pub async fn restore(system: &System, path: &Path, own: bool) -> Result<usize, String> {
    let Some(state) = state::load(path).map_err(|e| e.to_string())? else {
        return Ok(0);
    };
    let steps = state::plan_restore(&state, &LiveHost, own).map_err(|e| e.to_string())?;
    if !own && !steps.is_empty() {
        tracing::warn!(
            "client {}: cleaning up after a run that did not stop cleanly (pid {}): {} changes",
            state.name,
            state.pid,
            steps.len()
        );
    }
    let mut journal = Journal::adopt(path, state);
    let mut undone = 0;
    let mut failures = Vec::new();
    for step in steps {
        let (change, vanished) = match &step {
            Restore::Undo(c) => (c, false),
            Restore::Vanished(c) => (c, true),
        };
        match system.unmake(&mut journal, change, vanished).await {
            Ok(()) => undone += usize::from(!vanished),
            Err(e) => {
                tracing::error!("client: {e}");
                failures.push(e.to_string());
            }
        }
    }
    if failures.is_empty() {
        journal.remove().map_err(|e| e.to_string())?;
        Ok(undone)
    } else {
        Err(format!(
            "{} changes could not be undone (kept in {} for the next try): {}",
            failures.len(),
            path.display(),
            failures.join("; ")
        ))
    }
}

/// The shell of a running client.
pub struct Shell {
    config: ShellConfig,
    system: System,
    journal: Journal,
    shared: Shared,
    outer: Vec<OuterRoute>,
    /// The changes of the current assignment (subset of the journal).
    assigned: Vec<Change>,
    dns: DnsSettings,
    subnets: Vec<ipnet::IpNet>,
    pac_task: Option<tokio::task::JoinHandle<()>>,
    /// The IPv4 Office Mode address of the last assignment, kept across reconnects: the next
    /// connection asks for it again (`Gateway::prefer_virtual_address`).
    last_ipv4: Option<std::net::Ipv4Addr>,
}

impl Shell {
    /// Cleans up after a crashed run, then starts a fresh journal.
    pub async fn start(config: ShellConfig, shared: Shared) -> Result<Shell, String> {
        let system = System::open().map_err(|e| e.to_string())?;
        restore(&system, &config.paths.state, false).await?;
        let journal = Journal::create(
            &config.paths.state,
            State::new(std::process::id(), &config.name, &config.device),
        )
        .map_err(|e| e.to_string())?;
        Ok(Shell {
            config,
            system,
            journal,
            shared,
            outer: Vec::new(),
            assigned: Vec::new(),
            last_ipv4: None,
            dns: DnsSettings::default(),
            subnets: Vec::new(),
            pac_task: None,
        })
    }

    pub fn system(&self) -> &System {
        &self.system
    }

    /// The outer endpoints (gateway, proxy) the next tunnel uses: their current routes are
    /// remembered for host routes, and the kill switch lets exactly them through.
    pub async fn set_outer(&mut self, endpoints: &[IpAddr]) -> Result<(), String> {
        let mut outer = Vec::new();
        for &e in endpoints {
            // Once the tunnel routes are in, the kernel's answer would be the tunnel: keep
            // what was learnt before.
            if let Some(known) = self.outer.iter().find(|o| o.endpoint == e) {
                outer.push(known.clone());
                continue;
            }
            let (route, _) = self.system.route_to(e).await.map_err(|e| e.to_string())?;
            if route.dev == self.config.device {
                return Err(format!(
                    "the route to {e} goes into the tunnel device {}; is another client running?",
                    route.dev
                ));
            }
            outer.push(route);
        }
        self.outer = outer;
        if self.config.kill_switch {
            self.kill_switch(&[]).await?;
        }
        Ok(())
    }

    /// Forgets the learnt outer routes (the network changed: they are stale).
    pub fn forget_outer(&mut self) {
        self.outer.clear();
    }

    /// (Re)installs the kill switch for the current outer endpoints plus `extra` (address,
    /// TCP port) pairs such as the captive-portal probe.
    pub async fn kill_switch(&mut self, extra: &[(IpAddr, u16)]) -> Result<(), String> {
        let endpoints: Vec<IpAddr> = self.outer.iter().map(|o| o.endpoint).collect();
        let extras = super::system::Extras {
            nft_script: killswitch::ruleset(&self.config.device, &endpoints, extra),
            ..Default::default()
        };
        let change = Change::Nft {
            table: killswitch::TABLE.to_owned(),
        };
        self.system
            .make(&mut self.journal, &change, &extras)
            .await
            .map_err(|e| e.to_string())
    }

    /// Applies an assignment: only what differs from the current one changes.
    /// The IPv4 Office Mode address the last connection was given, if any.
    pub fn last_ipv4(&self) -> Option<std::net::Ipv4Addr> {
        self.last_ipv4
    }

    pub async fn assigned(&mut self, reply: &CfgReply) -> Result<(), String> {
        if let Some(a) = reply.ip4_addresses.first() {
            self.last_ipv4 = Some(*a);
        }
        let symlink = std::fs::read_link(RESOLV_CONF).ok();
        let input = PlanInput {
            device: &self.config.device,
            outer: &self.outer,
            dns: self.config.dns,
            resolv_conf: (Path::new(RESOLV_CONF), &self.config.paths.resolv_backup),
            resolv_conf_symlink: symlink,
        };
        let desired = plan::plan(reply, &input);
        let (undo, mut make) = plan::diff(&self.assigned, &desired);
        let dns = DnsSettings {
            servers: reply
                .ip4_dns
                .iter()
                .map(|a| IpAddr::V4(*a))
                .chain(reply.ip6_dns.iter().map(|a| IpAddr::V6(*a)))
                .collect(),
            domains: reply.dns_domains.clone(),
            all_names: plan::full_tunnel(reply),
        };
        if dns != self.dns {
            // Same DNS change, other servers or domains: set it again.
            for c in desired
                .iter()
                .filter(|c| matches!(c, Change::Resolved { .. } | Change::ResolvConf { .. }))
            {
                if !make.contains(c) {
                    make.push(c.clone());
                }
            }
        }
        self.dns = dns;
        self.subnets = plan::tunnel_routes(reply);
        for change in &undo {
            self.system
                .unmake(&mut self.journal, change, false)
                .await
                .map_err(|e| e.to_string())?;
        }
        let extras = self.extras();
        let mut result = Ok(());
        for change in &make {
            if let Err(e) = self.system.make(&mut self.journal, change, &extras).await {
                result = Err(e);
                break;
            }
        }
        self.assigned = desired
            .into_iter()
            .filter(|c| self.journal.state().changes.contains(c))
            .collect();
        self.publish(reply);
        result.map_err(|e: SystemError| e.to_string())?;
        self.pac().await
    }

    /// The node's path MTU for the tunnel changed: the TUN device follows, the log and the
    /// status say so (`tunnel MTU 1380 (probed)`). A refusal is logged; the node's MSS clamp
    /// already follows the new MTU, so TCP keeps working even then.
    pub async fn tunnel_mtu(&mut self, mtu: u16, reason: rampart_node::MtuReason) {
        let why = rampart_node::pmtu::reason_name(reason);
        match super::mtu::set_device_mtu(&self.config.device, mtu).await {
            Ok(()) => tracing::info!(
                "client {}: tunnel MTU {mtu} ({why}) on {}",
                self.config.name,
                self.config.device
            ),
            Err(e) => tracing::error!("client {}: tunnel MTU {mtu} ({why}): {e}", self.config.name),
        }
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.tunnel_mtu = Some(mtu);
        s.tunnel_mtu_reason = Some(why.to_string());
    }

    /// The assignment is gone: take the address, tunnel routes and DNS away.
    pub async fn lost(&mut self) {
        for change in plan::on_lost(&self.assigned, &self.config.device) {
            if let Err(e) = self.system.unmake(&mut self.journal, &change, false).await {
                tracing::error!("client: {e}");
            }
        }
        self.assigned.clear();
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.virtual_ips.clear();
        s.routes.clear();
        s.dns = DnsStatus::default();
    }

    /// Undoes everything this run changed (newest first) and removes the journal.
    pub async fn finish(mut self) -> Result<(), String> {
        if let Some(task) = self.pac_task.take() {
            task.abort();
        }
        let path = self.config.paths.state.clone();
        drop(self.journal);
        restore(&self.system, &path, true).await.map(|_| ())
    }

    fn extras(&self) -> super::system::Extras {
        super::system::Extras {
            dns: self.dns.clone(),
            profile_name: self.config.name.clone(),
            nft_script: String::new(),
            pac_text: String::new(),
        }
    }

    /// Writes (and serves) the PAC file for the current assignment.
    async fn pac(&mut self) -> Result<(), String> {
        if self.config.pac_file.is_none() && self.config.pac_listen.is_none() {
            return Ok(());
        }
        let text = super::pac::pac(
            &self.dns.domains,
            &self.subnets,
            self.config.pac_proxy.as_deref(),
        );
        if let Some(path) = self.config.pac_file.clone() {
            let extras = super::system::Extras {
                pac_text: text.clone(),
                ..Default::default()
            };
            self.system
                .make(&mut self.journal, &Change::PacFile { path }, &extras)
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(addr) = self.config.pac_listen {
            if let Some(task) = self.pac_task.take() {
                task.abort();
                let _ = task.await;
            }
            let listener = super::pac::bind(addr)
                .await
                .map_err(|e| format!("cannot serve the PAC file on {addr}: {e}"))?;
            tracing::info!("client: PAC file served on http://{addr}/");
            self.pac_task = Some(tokio::spawn(super::pac::serve(listener, text)));
        }
        Ok(())
    }

    fn publish(&self, reply: &CfgReply) {
        let mut s = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        s.virtual_ips = reply
            .ip4_addresses
            .iter()
            .map(ToString::to_string)
            .chain(reply.ip6_addresses.iter().map(ToString::to_string))
            .collect();
        s.routes = self.subnets.iter().map(ToString::to_string).collect();
        s.full_tunnel = plan::full_tunnel(reply);
        s.dns = DnsStatus {
            backend: match self.config.dns {
                DnsBackend::Resolved => "resolved",
                DnsBackend::ResolvConf => "resolv-conf",
                DnsBackend::Off => "off",
            }
            .into(),
            servers: self.dns.servers.iter().map(ToString::to_string).collect(),
            domains: self.dns.domains.clone(),
        };
    }
}
