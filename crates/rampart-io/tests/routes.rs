//! Routes through a real TUN device inside a private network namespace (root only).

mod netns;

use ipnet::IpNet;
use netns::Netns;
use rampart_io::routes::{Injected, Routes};
use rampart_io::tun::Tun;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn tun_comes_up_with_mtu_and_routes_follow_add_and_del() {
    if !netns::can_run("routes") {
        return;
    }
    let ns = Netns::new("routes");
    ns.run(|| {
        netns::runtime().block_on(async {
            let tun = Tun::open("rio0", 1400, false).unwrap();
            let link = ns.ip("link show rio0");
            assert!(link.contains("mtu 1400"), "{link}");
            assert!(link.contains(",UP"), "{link}");

            let mut routes = Routes::open(tun.name(), tun.index()).unwrap();
            routes.add(net("10.99.0.0/24")).await.unwrap();
            routes.add(net("2001:db8:99::/48")).await.unwrap();
            // Adding again replaces, it does not fail.
            routes.add(net("10.99.0.0/24")).await.unwrap();
            let v4 = ns.ip("-4 route show 10.99.0.0/24");
            assert!(v4.contains("dev rio0"), "{v4}");
            assert!(v4.contains("scope link"), "{v4}");
            let v6 = ns.ip("-6 route show 2001:db8:99::/48");
            assert!(v6.contains("dev rio0"), "{v6}");
            assert_eq!(routes.installed().count(), 2);

            routes.del(net("10.99.0.0/24")).await.unwrap();
            assert_eq!(ns.ip("-4 route show 10.99.0.0/24").trim(), "");
            // A route that is already gone counts as removed.
            routes.del(net("10.99.0.0/24")).await.unwrap();

            routes.add(net("10.98.0.0/16")).await.unwrap();
            routes.remove_all().await;
            assert_eq!(routes.installed().count(), 0);
            assert_eq!(ns.ip("-4 route show dev rio0").trim(), "");
            assert_eq!(ns.ip("-6 route show 2001:db8:99::/48").trim(), "");
        })
    });
}

#[test]
fn route_error_names_prefix_device_and_cause() {
    if !netns::can_run("route error") {
        return;
    }
    let ns = Netns::new("routeerr");
    ns.run(|| {
        netns::runtime().block_on(async {
            // An interface index that does not exist: the kernel refuses the route.
            let mut routes = Routes::open("ghost0", 999_999).unwrap();
            let err = routes.add(net("10.97.0.0/24")).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with("cannot add route 10.97.0.0/24 dev ghost0: "),
                "{text}"
            );
            assert_eq!(routes.installed().count(), 0);
        })
    });
}

#[test]
fn opening_tun_without_permission_says_how_to_fix() {
    let err = rampart_io::IoError::Tun {
        device: "rampart0".into(),
        source: std::io::Error::from_raw_os_error(libc::EPERM),
    };
    assert!(err
        .to_string()
        .contains("run as root or give CAP_NET_ADMIN"));
}

/// Routed Load Sharing announces its routes like route injection, into its own table
/// (`announce_table`, default 202, any table but the kernel's) with a protocol number for the
/// routing daemon: a host route for a virtual address and the prefixes behind the tunnels. They
/// go away with the TUN device, which is what a `kill -9` does, so the daemon withdraws them.
#[test]
fn announced_routes_in_a_table_of_their_own_vanish_with_the_device() {
    if !netns::can_run("announced routes") {
        return;
    }
    let ns = Netns::new("announce");
    ns.run(|| {
        netns::runtime().block_on(async {
            let tun = Tun::open("ran0", 1400, false).unwrap();
            let mut routes = Routes::open(tun.name(), tun.index()).unwrap();
            let vip = Injected {
                prefix: net("192.0.2.1/32"),
                table: 202,
                protocol: 203,
                metric: 0,
            };
            let remote = Injected {
                prefix: net("10.2.0.0/24"),
                ..vip
            };
            // A table above 255 travels in an attribute of its own: it works the same.
            let high = Injected {
                prefix: net("2001:db8:2::/48"),
                table: 70_000,
                protocol: 203,
                metric: 10,
            };
            for r in [vip, remote, high] {
                routes.inject(r).await.unwrap();
            }
            let t202 = ns.ip("-4 route show table 202");
            assert!(t202.contains("192.0.2.1 dev ran0 proto 203"), "{t202}");
            assert!(t202.contains("10.2.0.0/24 dev ran0 proto 203"), "{t202}");
            let t70000 = ns.ip("-6 route show table 70000");
            assert!(
                t70000.contains("2001:db8:2::/48 dev ran0 proto 203 metric 10"),
                "{t70000}"
            );
            // The main table is untouched.
            assert!(!ns.ip("-4 route show").contains("192.0.2.1"));
            routes.withdraw(remote).await.unwrap();
            assert!(!ns.ip("-4 route show table 202").contains("10.2.0.0/24"));
            // The process dies: its TUN device goes, and every route through it with it.
            drop(routes);
            drop(tun);
            for _ in 0..50 {
                if ns.ip("-4 route show table 202").trim().is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(ns.ip("-4 route show table 202").trim(), "");
            assert_eq!(ns.ip("-6 route show table 70000").trim(), "");
        })
    });
}
