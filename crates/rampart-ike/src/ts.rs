//! Traffic selectors: our domains as selectors, narrowing (RFC 7296 2.9).

use std::net::IpAddr;

use ipnet::IpNet;
use rampart_wire::ike::TrafficSelector;

/// The selector covering all of `net`, any protocol, any port.
pub(crate) fn from_net(net: &IpNet) -> TrafficSelector {
    TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: 0xFFFF,
        start_addr: net.network(),
        end_addr: net.broadcast(),
    }
}

pub(crate) fn from_nets(nets: &[IpNet]) -> Vec<TrafficSelector> {
    nets.iter().map(from_net).collect()
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The common part of two selectors, or `None` when they are disjoint (or of different families).
/// IP protocol 0 is the wildcard.
pub(crate) fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    if !same_family(a.start_addr, b.start_addr)
        || !same_family(a.end_addr, b.end_addr)
        || !same_family(a.start_addr, a.end_addr)
    {
        return None;
    }
    let ip_protocol = match (a.ip_protocol, b.ip_protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    let start_addr = a.start_addr.max(b.start_addr);
    let end_addr = a.end_addr.min(b.end_addr);
    if start_port > end_port || start_addr > end_addr {
        return None;
    }
    Some(TrafficSelector {
        ip_protocol,
        start_port,
        end_port,
        start_addr,
        end_addr,
    })
}

/// Narrow the peer's selectors to what our configuration allows: every pairwise intersection,
/// without duplicates. Empty means TS_UNACCEPTABLE.
pub(crate) fn narrow(
    offered: &[TrafficSelector],
    allowed: &[TrafficSelector],
) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for o in offered {
        for a in allowed {
            if let Some(x) = intersect(o, a) {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
        }
    }
    out
}

/// Initiator check: every selector the responder returned lies inside one we proposed.
pub(crate) fn is_subset(returned: &[TrafficSelector], proposed: &[TrafficSelector]) -> bool {
    !returned.is_empty()
        && returned
            .iter()
            .all(|r| proposed.iter().any(|p| intersect(r, p).as_ref() == Some(r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn narrowing_picks_intersection() {
        let offered = from_nets(&[net("10.0.0.0/8")]);
        let allowed = from_nets(&[net("10.1.0.0/16"), net("192.168.0.0/24")]);
        let n = narrow(&offered, &allowed);
        assert_eq!(n, from_nets(&[net("10.1.0.0/16")]));
        assert!(is_subset(&n, &offered));
        assert!(!is_subset(&offered, &n));
        assert!(narrow(&from_nets(&[net("172.16.0.0/12")]), &allowed).is_empty());
        assert!(narrow(&from_nets(&[net("fd00::/8")]), &allowed).is_empty());
    }

    #[test]
    fn protocol_and_ports() {
        let mut a = from_net(&net("10.0.0.0/24"));
        a.ip_protocol = 6;
        a.start_port = 80;
        a.end_port = 80;
        let b = from_net(&net("10.0.0.0/16"));
        assert_eq!(intersect(&a, &b), Some(a));
        let mut c = b;
        c.ip_protocol = 17;
        assert_eq!(intersect(&a, &c), None);
    }

    proptest! {
        #[test]
        fn intersection_is_inside_both(a in any::<u32>(), la in 0u8..=32, b in any::<u32>(), lb in 0u8..=32) {
            let na = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), la).unwrap().trunc();
            let nb = IpNet::new(IpAddr::V4(Ipv4Addr::from(b)), lb).unwrap().trunc();
            let (ta, tb) = (from_net(&na), from_net(&nb));
            match intersect(&ta, &tb) {
                Some(x) => {
                    prop_assert!(is_subset(std::slice::from_ref(&x), std::slice::from_ref(&ta)));
                    prop_assert!(is_subset(std::slice::from_ref(&x), std::slice::from_ref(&tb)));
                    prop_assert_eq!(intersect(&tb, &ta), Some(x));
                }
                None => prop_assert!(!na.contains(&nb) && !nb.contains(&na)),
            }
        }
    }
}
