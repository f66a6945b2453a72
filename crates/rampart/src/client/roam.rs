//! Noticing that the network moved under the tunnel: address, route and link notifications
//! over rtnetlink, and resume from suspend (the boot-time clock, which counts suspended time,
//! ran ahead of the monotonic clock, which does not).
//!
//! The watcher only says "look again"; the session then asks the kernel which route and
//! source address the gateway takes now ([`PathView`]). On UDP with MOBIKE the tunnel moves
//! to the new source address (RFC 4555; also after a resume, from the same address, which
//! checks the path at once); on a stream, or without MOBIKE, it is rebuilt. A path that is
//! gone is always rebuilt.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::MulticastGroup;

/// How far the boot-time clock must run ahead of the monotonic clock between two samples to
/// count as a resume.
pub const RESUME_GAP: Duration = Duration::from_secs(3);
/// How often the clocks are compared.
pub const RESUME_TICK: Duration = Duration::from_secs(2);
/// Notifications closer together than this are one change (a DHCP renumbering sends many).
pub const SETTLE: Duration = Duration::from_millis(500);

/// What the kernel says about the path to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathView {
    pub via: Option<IpAddr>,
    pub dev: String,
    pub source: Option<IpAddr>,
}

/// Why the session looks at the path again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    /// An address, route or link changed.
    Network,
    /// The machine slept for about this long.
    Resumed(Duration),
}

/// What to do after looking at the path again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same path: nothing to do.
    Keep,
    /// The tunnel must be rebuilt, for this reason (logged and shown in the status).
    Reconnect(String),
    /// Move the tunnel to this local address (MOBIKE), for this reason; when it cannot move
    /// (or the move fails) it is rebuilt.
    Move { to: IpAddr, why: String },
}

/// Decides whether a nudge means moving or reconnecting. `before`: the path the tunnel runs
/// on; `now`: the kernel's answer (`None`: no route). `tunnel_dev`: a path through the tunnel
/// itself means our host route to the gateway vanished with the network it used. `movable`:
/// the tunnel runs on UDP with MOBIKE allowed (a stream never moves).
pub fn judge(
    nudge: Nudge,
    before: &PathView,
    now: Option<&PathView>,
    tunnel_dev: &str,
    stream: bool,
    movable: bool,
) -> Verdict {
    let movable = movable && !stream;
    let Some(now) = now else {
        return Verdict::Reconnect("no route to the gateway any more".into());
    };
    if now.dev == tunnel_dev {
        return Verdict::Reconnect(format!(
            "the network under the tunnel is gone (the gateway is now routed into {tunnel_dev})"
        ));
    }
    if now.source != before.source || now.dev != before.dev || now.via != before.via {
        let why = format!("network changed: {} -> {}", show(before), show(now));
        return match now.source {
            Some(to) if movable => Verdict::Move { to, why },
            _ => Verdict::Reconnect(why),
        };
    }
    match nudge {
        // The gateway may have dropped the SA, or a NAT its mapping: an update from where we
        // are checks and refreshes both at once (a failure rebuilds the tunnel).
        Nudge::Resumed(slept) if movable => match now.source {
            Some(to) => Verdict::Move {
                to,
                why: format!("resumed after {} s asleep", slept.as_secs()),
            },
            None => Verdict::Reconnect(format!("resumed after {} s asleep", slept.as_secs())),
        },
        // A stream (TCP/TLS) rarely survives a suspend (the NAT or the server dropped it);
        // UDP is checked by the liveness timer and NAT keepalives instead.
        Nudge::Resumed(slept) if stream => {
            Verdict::Reconnect(format!("resumed after {} s asleep", slept.as_secs()))
        }
        Nudge::Resumed(slept) if slept >= Duration::from_secs(60) => Verdict::Reconnect(format!(
            "resumed after {} s asleep (the gateway has likely dropped the SA)",
            slept.as_secs()
        )),
        _ => Verdict::Keep,
    }
}

fn show(p: &PathView) -> String {
    format!(
        "{}{} dev {}",
        p.source.map_or_else(|| "?".into(), |s| format!("from {s}")),
        p.via.map_or_else(String::new, |v| format!(" via {v}")),
        p.dev
    )
}

/// A boot-time/monotonic pair of readings.
#[derive(Debug, Clone, Copy)]
pub struct ClockSample {
    pub monotonic: Instant,
    /// Seconds since boot including suspend (`/proc/uptime`).
    pub boottime: f64,
}

impl ClockSample {
    pub fn now() -> Option<ClockSample> {
        let text = std::fs::read_to_string("/proc/uptime").ok()?;
        let boottime = text.split_whitespace().next()?.parse().ok()?;
        Some(ClockSample {
            monotonic: Instant::now(),
            boottime,
        })
    }
}

/// How long the machine slept between `before` and `after`, when that is at least
/// [`RESUME_GAP`].
pub fn slept(before: ClockSample, after: ClockSample) -> Option<Duration> {
    let mono = after.monotonic.saturating_duration_since(before.monotonic);
    let boot = after.boottime - before.boottime;
    let gap = boot - mono.as_secs_f64();
    (gap >= RESUME_GAP.as_secs_f64()).then(|| Duration::from_secs_f64(gap))
}

type Notifications = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Address, route and link notifications plus the resume clock, as [`Nudge`]s.
pub struct Watcher {
    notifications: Notifications,
    last: Option<ClockSample>,
    tick: tokio::time::Interval,
}

impl Watcher {
    /// Subscribes (inside a tokio runtime).
    pub fn open() -> std::io::Result<Watcher> {
        let (connection, _handle, notifications) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ])?;
        tokio::spawn(connection);
        let mut tick = tokio::time::interval(RESUME_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Watcher {
            notifications,
            last: ClockSample::now(),
            tick,
        })
    }

    /// The next nudge; network nudges are settled (later ones within [`SETTLE`] merged).
    /// `ignore_dev`: changes of this device (our own TUN) are not news. Cancel safe.
    pub async fn next(&mut self, ignore_index: Option<u32>) -> Nudge {
        loop {
            tokio::select! {
                _ = self.tick.tick() => {
                    let now = ClockSample::now();
                    if let (Some(before), Some(after)) = (self.last, now) {
                        self.last = now;
                        if let Some(d) = slept(before, after) {
                            return Nudge::Resumed(d);
                        }
                    } else {
                        self.last = now;
                    }
                }
                message = self.notifications.next() => {
                    let Some((message, _)) = message else {
                        std::future::pending::<()>().await;
                        continue;
                    };
                    if relevant(&message, ignore_index) {
                        // Let the burst settle.
                        let deadline = tokio::time::sleep(SETTLE);
                        tokio::pin!(deadline);
                        loop {
                            tokio::select! {
                                () = &mut deadline => break,
                                m = self.notifications.next() => if m.is_none() { break },
                            }
                        }
                        return Nudge::Network;
                    }
                }
            }
        }
    }
}

fn relevant(message: &NetlinkMessage<RouteNetlinkMessage>, ignore_index: Option<u32>) -> bool {
    let NetlinkPayload::InnerMessage(inner) = &message.payload else {
        return false;
    };
    let index = match inner {
        RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => a.header.index,
        RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => l.header.index,
        RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) => {
            return !r.attributes.iter().any(|a| {
                matches!(a, netlink_packet_route::route::RouteAttribute::Oif(i) if Some(*i) == ignore_index)
            })
        }
        _ => return false,
    };
    Some(index) != ignore_index
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(source: &str, via: Option<&str>, dev: &str) -> PathView {
        PathView {
            via: via.map(|v| v.parse().unwrap()),
            dev: dev.into(),
            source: Some(source.parse().unwrap()),
        }
    }

    #[test]
    fn path_changes_and_resume() {
        let before = view("10.0.0.5", Some("10.0.0.1"), "wlan0");
        let same = before.clone();
        assert_eq!(
            judge(
                Nudge::Network,
                &before,
                Some(&same),
                "rampart-c0",
                false,
                false
            ),
            Verdict::Keep
        );
        let moved = view("192.168.1.20", Some("192.168.1.1"), "wlan0");
        match judge(Nudge::Network, &before, Some(&moved), "rampart-c0", true, false) {
            Verdict::Reconnect(why) => assert_eq!(
                why,
                "network changed: from 10.0.0.5 via 10.0.0.1 dev wlan0 -> from 192.168.1.20 via 192.168.1.1 dev wlan0"
            ),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            judge(Nudge::Network, &before, None, "rampart-c0", false, false),
            Verdict::Reconnect(_)
        ));
        let into_tunnel = view("10.99.0.7", None, "rampart-c0");
        assert!(matches!(
            judge(Nudge::Network, &before, Some(&into_tunnel), "rampart-c0", false, false),
            Verdict::Reconnect(w) if w.contains("network under the tunnel is gone")
        ));
        let short = Nudge::Resumed(Duration::from_secs(10));
        assert_eq!(
            judge(short, &before, Some(&same), "rampart-c0", false, false),
            Verdict::Keep
        );
        assert!(matches!(
            judge(short, &before, Some(&same), "rampart-c0", true, false),
            Verdict::Reconnect(_)
        ));
        assert!(matches!(
            judge(
                Nudge::Resumed(Duration::from_secs(600)),
                &before,
                Some(&same),
                "rampart-c0",
                false,
                false
            ),
            Verdict::Reconnect(_)
        ));
    }

    #[test]
    fn udp_with_mobike_moves_instead_of_reconnecting() {
        let before = view("10.0.0.5", Some("10.0.0.1"), "wlan0");
        let moved = view("192.168.1.20", Some("192.168.1.1"), "wlan0");
        match judge(
            Nudge::Network,
            &before,
            Some(&moved),
            "rampart-c0",
            false,
            true,
        ) {
            Verdict::Move { to, why } => {
                assert_eq!(to, "192.168.1.20".parse::<IpAddr>().unwrap());
                assert!(why.starts_with("network changed: from 10.0.0.5"), "{why}");
            }
            v => panic!("{v:?}"),
        }
        // A stream never moves; a vanished path is always rebuilt.
        assert!(matches!(
            judge(
                Nudge::Network,
                &before,
                Some(&moved),
                "rampart-c0",
                true,
                true
            ),
            Verdict::Reconnect(_)
        ));
        assert!(matches!(
            judge(Nudge::Network, &before, None, "rampart-c0", false, true),
            Verdict::Reconnect(_)
        ));
        // A resume checks the path at once, from the same address.
        let same = before.clone();
        assert_eq!(
            judge(
                Nudge::Resumed(Duration::from_secs(10)),
                &before,
                Some(&same),
                "rampart-c0",
                false,
                true
            ),
            Verdict::Move {
                to: "10.0.0.5".parse().unwrap(),
                why: "resumed after 10 s asleep".into()
            }
        );
        assert_eq!(
            judge(
                Nudge::Network,
                &before,
                Some(&same),
                "rampart-c0",
                false,
                true
            ),
            Verdict::Keep
        );
    }

    #[test]
    fn resume_is_boot_time_running_ahead() {
        let t0 = Instant::now();
        let a = ClockSample {
            monotonic: t0,
            boottime: 100.0,
        };
        let awake = ClockSample {
            monotonic: t0 + Duration::from_secs(2),
            boottime: 102.1,
        };
        assert_eq!(slept(a, awake), None);
        let asleep = ClockSample {
            monotonic: t0 + Duration::from_secs(2),
            boottime: 402.0,
        };
        let d = slept(a, asleep).unwrap();
        assert!((d.as_secs_f64() - 300.0).abs() < 0.01, "{d:?}");
        assert!(ClockSample::now().is_some(), "/proc/uptime is readable");
    }
}
