//! `rampart client status [--json]`: what the running client reports on its control socket.
//! The JSON field names are stable (scripts and the netns tests read them).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// The client's life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientState {
    /// Looking for a transport and negotiating the first tunnel.
    Connecting,
    /// A captive portal answered the probe: waiting for the user to log in.
    CaptivePortal,
    /// The tunnel is up and the address, routes and DNS are set.
    Connected,
    /// The tunnel was lost (dead gateway, network change, resume): finding a transport again.
    Reconnecting,
    /// Stopping: restoring the host.
    Down,
}

impl ClientState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Connecting => "connecting",
            ClientState::CaptivePortal => "captive-portal",
            ClientState::Connected => "connected",
            ClientState::Reconnecting => "reconnecting",
            ClientState::Down => "down",
        }
    }
}

/// The DNS the client set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// `resolved`, `resolv-conf` or `off`.
    pub backend: String,
    pub servers: Vec<String>,
    pub domains: Vec<String>,
}

/// A move of the tunnel to a new local address (MOBIKE, RFC 4555).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveStatus {
    /// The outer address the tunnel left from before, and now (`ip:port`).
    pub from: String,
    pub to: String,
    /// Why it moved (the network change the client saw).
    pub reason: String,
    /// Unix time of the move.
    pub at_unix: u64,
}

/// A stream re-attach (RFC 9329): the stream was lost and the IKE SA continued on a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReattachStatus {
    /// Why the old stream counted as lost (reset, end, silent).
    pub reason: String,
    /// From the loss to the new stream carrying the IKE SA, in milliseconds.
    pub took_ms: u64,
    /// Connection attempts it took.
    pub attempts: u32,
    /// Unix time it completed.
    pub at_unix: u64,
}

/// The document the control socket answers to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientStatus {
    /// The profile's name.
    pub name: String,
    pub pid: u32,
    pub state: ClientState,
    /// `udp`, `tcp` or `tls` while a transport is chosen.
    pub transport: Option<String>,
    /// Why that transport (the ladder's reason, e.g. "UDP answered" or "UDP: no answer in
    /// 300 ms; TCP 4500 refused; TLS 443 up").
    pub transport_reason: Option<String>,
    /// The HTTP proxy the stream goes through, if any.
    pub proxy: Option<String>,
    /// The gateway as written in the profile, and the address in use (`ip:port`).
    pub gateway: String,
    pub gateway_address: Option<String>,
    /// The local address the tunnel leaves from.
    pub local_address: Option<String>,
    /// The Office Mode addresses.
    pub virtual_ips: Vec<String>,
    pub dns: DnsStatus,
    /// Prefixes routed into the tunnel.
    pub routes: Vec<String>,
    pub full_tunnel: bool,
    pub kill_switch: bool,
    pub device: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    /// Unix time of the last state change, and seconds since.
    pub since_unix: u64,
    pub since_secs: u64,
    /// Tunnels rebuilt after a loss.
    pub reconnects: u64,
    /// Times the tunnel moved to a new local address by MOBIKE (UDP) instead of being rebuilt.
    #[serde(default)]
    pub moves: u64,
    /// The last such move.
    #[serde(default)]
    pub last_move: Option<MoveStatus>,
    /// Times the stream (TCP, TLS) was lost and the IKE SA re-attached on a new one instead
    /// of a rebuild (same IKE SA, same address), and the last of them.
    #[serde(default)]
    pub stream_reattaches: u64,
    #[serde(default)]
    pub last_reattach: Option<ReattachStatus>,
    /// Multiple entry points: the profile's gateways in order (one entry without
    /// `gateways`), how one is chosen (`first-to-respond`, `primary-backup`; `None` with one
    /// gateway), the one in use, and how often the client moved to another one.
    #[serde(default)]
    pub entry_points: Vec<String>,
    #[serde(default)]
    pub selection: Option<String>,
    #[serde(default)]
    pub entry_point: Option<String>,
    #[serde(default)]
    pub entry_point_changes: u64,
    /// Learned entry points (`learn_gateways`): the list the gateway last sent, where from
    /// and when; `None` when nothing was learned (or learning is off). `entry_points` holds
    /// the ones not in the profile after the profile's own.
    #[serde(default)]
    pub learned_gateways: Option<LearnedStatus>,
    /// The entry point of the last tunnel that got an address (to count changes; not shown).
    #[serde(skip)]
    pub connected_entry_point: Option<String>,
    /// Why the last attempt or the last tunnel failed.
    pub last_error: Option<String>,
    /// The TUN MTU path-MTU discovery set (`None`: the profile's `mtu`), and why
    /// (`probed`, `icmp-too-big`, `black-hole`).
    #[serde(default)]
    pub tunnel_mtu: Option<u16>,
    #[serde(default)]
    pub tunnel_mtu_reason: Option<String>,
}

/// A list of entry points learned from a gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LearnedStatus {
    /// The entry point it came from.
    pub from: String,
    /// Unix time it was received.
    pub at_unix: u64,
    /// The gateway's suggested selection, `None` when it gave none.
    pub selection: Option<String>,
    pub entries: Vec<String>,
}

impl LearnedStatus {
    pub fn of(l: &rampart_connect::learned::Learned) -> LearnedStatus {
        LearnedStatus {
            from: l.from.clone(),
            at_unix: l.at_unix,
            selection: l.selection.as_str().map(str::to_owned),
            entries: l.entries.clone(),
        }
    }
}

impl ClientStatus {
    pub fn new(name: &str, gateway: &str, device: &str, kill_switch: bool) -> ClientStatus {
        ClientStatus {
            name: name.to_owned(),
            pid: std::process::id(),
            state: ClientState::Connecting,
            transport: None,
            transport_reason: None,
            proxy: None,
            gateway: gateway.to_owned(),
            gateway_address: None,
            local_address: None,
            virtual_ips: Vec::new(),
            dns: DnsStatus::default(),
            routes: Vec::new(),
            full_tunnel: false,
            kill_switch,
            device: device.to_owned(),
            bytes_in: 0,
            bytes_out: 0,
            packets_in: 0,
            packets_out: 0,
            since_unix: unix_now(),
            since_secs: 0,
            reconnects: 0,
            moves: 0,
            last_move: None,
            stream_reattaches: 0,
            last_reattach: None,
            entry_points: vec![gateway.to_owned()],
            selection: None,
            entry_point: None,
            entry_point_changes: 0,
            learned_gateways: None,
            connected_entry_point: None,
            last_error: None,
            tunnel_mtu: None,
            tunnel_mtu_reason: None,
        }
    }

    /// Moves to `state` (the `since` clock restarts only on a real change).
    pub fn set_state(&mut self, state: ClientState) {
        if self.state != state {
            self.state = state;
            self.since_unix = unix_now();
        }
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The text form.
pub fn render(s: &ClientStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "client {}  {}  for {}  (pid {})",
        s.name,
        s.state.as_str(),
        crate::status_view::duration(s.since_secs),
        s.pid
    );
    let _ = writeln!(
        out,
        "  gateway    {}{}",
        s.gateway,
        s.gateway_address
            .as_ref()
            .map_or_else(String::new, |a| format!(" ({a})"))
    );
    if let Some(t) = &s.transport {
        let _ = writeln!(
            out,
            "  transport  {t}{}{}",
            s.proxy
                .as_ref()
                .map_or_else(String::new, |p| format!(" via proxy {p}")),
            s.transport_reason
                .as_ref()
                .map_or_else(String::new, |r| format!("  ({r})"))
        );
    }
    if let Some(local) = &s.local_address {
        let _ = writeln!(out, "  local      {local}");
    }
    if !s.virtual_ips.is_empty() {
        let _ = writeln!(
            out,
            "  address    {} on {}",
            s.virtual_ips.join(" "),
            s.device
        );
    }
    if let Some(mtu) = s.tunnel_mtu {
        let why = s.tunnel_mtu_reason.as_deref().unwrap_or("?");
        let _ = writeln!(out, "  mtu        {mtu}  ({why})");
    }
    if !s.routes.is_empty() {
        let _ = writeln!(
            out,
            "  routes     {}{}",
            s.routes.join(" "),
            if s.full_tunnel { "  (full tunnel)" } else { "" }
        );
    }
    if !s.dns.servers.is_empty() {
        let _ = writeln!(
            out,
            "  dns        {} via {}{}",
            s.dns.servers.join(" "),
            s.dns.backend,
            if s.dns.domains.is_empty() {
                String::new()
            } else {
                format!("  domains {}", s.dns.domains.join(" "))
            }
        );
    }
    let _ = writeln!(
        out,
        "  traffic    in {} B ({} packets)  out {} B ({} packets)",
        s.bytes_in, s.packets_in, s.bytes_out, s.packets_out
    );
    let _ = writeln!(
        out,
        "  kill switch {}  reconnects {}",
        if s.kill_switch { "on" } else { "off" },
        s.reconnects
    );
    if let Some(m) = &s.last_move {
        let _ = writeln!(
            out,
            "  moved      {} times (MOBIKE); last {} -> {} ({})",
            s.moves, m.from, m.to, m.reason
        );
    }
    if let Some(r) = &s.last_reattach {
        let _ = writeln!(
            out,
            "  re-attached {} times (new stream, same IKE SA); last in {} ms, {} attempt(s) ({})",
            s.stream_reattaches, r.took_ms, r.attempts, r.reason
        );
    }
    if let Some(sel) = &s.selection {
        let _ = writeln!(
            out,
            "  entry points {}  ({sel}; in use {}, changes {})",
            s.entry_points.join(" "),
            s.entry_point.as_deref().unwrap_or("-"),
            s.entry_point_changes
        );
    }
    if let Some(l) = &s.learned_gateways {
        let _ = writeln!(
            out,
            "  learned    {}  (from {}{})",
            l.entries.join(" "),
            l.from,
            l.selection
                .as_deref()
                .map(|x| format!(", {x}"))
                .unwrap_or_default()
        );
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "  last error {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_json_names_and_text() {
        let mut s = ClientStatus::new("corp", "vpn.example.org", "rampart-c0", true);
        s.pid = 7;
        s.set_state(ClientState::Connected);
        s.transport = Some("tls".into());
        s.transport_reason = Some("UDP: no answer in 300 ms; TLS 443 up".into());
        s.virtual_ips = vec!["10.99.0.7".into()];
        s.routes = vec!["0.0.0.0/1".into(), "128.0.0.0/1".into()];
        s.full_tunnel = true;
        s.dns = DnsStatus {
            backend: "resolved".into(),
            servers: vec!["10.1.0.53".into()],
            domains: vec!["corp.example".into()],
        };
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "name",
            "pid",
            "state",
            "transport",
            "transport_reason",
            "proxy",
            "gateway",
            "gateway_address",
            "local_address",
            "virtual_ips",
            "dns",
            "routes",
            "full_tunnel",
            "kill_switch",
            "device",
            "bytes_in",
            "bytes_out",
            "since_unix",
            "since_secs",
            "reconnects",
            "moves",
            "last_move",
            "stream_reattaches",
            "last_reattach",
            "entry_points",
            "selection",
            "entry_point",
            "entry_point_changes",
            "learned_gateways",
            "last_error",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["state"], "connected");
        assert!(v["learned_gateways"].is_null());
        let back: ClientStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        let text = render(&s);
        assert!(text.starts_with("client corp  connected  for "), "{text}");
        assert!(text.contains("  transport  tls  (UDP: no answer in 300 ms; TLS 443 up)\n"));
        assert!(text.contains("  routes     0.0.0.0/1 128.0.0.0/1  (full tunnel)\n"));
        assert!(text.contains("  dns        10.1.0.53 via resolved  domains corp.example\n"));
        s.learned_gateways = Some(LearnedStatus {
            from: "vpn.example.org".into(),
            at_unix: 1_796_000_000,
            selection: Some("primary-backup".into()),
            entries: vec!["vpn.example.org".into(), "vpn-eu.example.org".into()],
        });
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["learned_gateways"]["from"], "vpn.example.org");
        assert_eq!(v["learned_gateways"]["entries"][1], "vpn-eu.example.org");
        for key in ["from", "at_unix", "selection", "entries"] {
            assert!(v["learned_gateways"].get(key).is_some(), "{key}");
        }
        assert!(render(&s).contains(
            "  learned    vpn.example.org vpn-eu.example.org  (from vpn.example.org, primary-backup)\n"
        ));
        assert_eq!(
            serde_json::to_value(ClientState::CaptivePortal).unwrap(),
            "captive-portal"
        );
    }
}
