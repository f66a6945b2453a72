//! Route injection (`[rim]`): while a peer has an installed CHILD SA, its negotiated remote
//! domain is injected into the configured table; it is withdrawn when the last one goes.

mod common;

use std::time::Duration;

use common::Pair;
use rampart_node::{Output, RouteInjection};

/// What side B injected and withdrew since the last call.
fn take_routes(pair: &mut Pair) -> Vec<Output> {
    pair.collect_outputs();
    std::mem::take(&mut pair.injections[1])
}

fn rim(peers: &[&str]) -> RouteInjection {
    RouteInjection {
        table: 201,
        protocol: 201,
        metric: 100,
        peers: peers.iter().map(|s| s.to_string()).collect(),
    }
}

fn run(pair: &mut Pair, secs: u64) {
    let t = pair.now + Duration::from_secs(secs);
    pair.run_until(t);
}

#[test]
fn the_remote_domain_is_injected_while_a_tunnel_is_up() {
    let mut pair = Pair::new("", "start_action = \"none\"");
    let now = pair.now;
    pair.gw[1].set_mep(now, None, None, Some(rim(&[])));
    run(&mut pair, 3);
    let mut routes = take_routes(&mut pair);
    assert!(pair.established(1));
    assert_eq!(
        routes,
        vec![Output::RouteInject {
            prefix: "10.1.0.0/24".parse().unwrap(),
            table: 201,
            protocol: 201,
            metric: 100,
        }]
    );
    assert_eq!(
        pair.gw[1].injected_routes(),
        vec!["10.1.0.0/24".parse().unwrap()]
    );
    assert!(pair.logs[1]
        .iter()
        .any(|l| l.contains("injected into table 201")));

    // The peer dies: the last CHILD SA goes, the route is withdrawn.
    pair.drop_all = true;
    run(&mut pair, 12);
    routes = take_routes(&mut pair);
    assert!(pair.gw[1].status(pair.now).peers[0].tunnels.is_empty());
    assert_eq!(
        routes,
        vec![Output::RouteWithdraw {
            prefix: "10.1.0.0/24".parse().unwrap(),
            table: 201,
            protocol: 201,
            metric: 100,
        }]
    );
    assert!(pair.gw[1].injected_routes().is_empty());
}

#[test]
fn only_the_listed_peers_inject_and_settings_changes_move_routes() {
    let mut pair = Pair::new("", "start_action = \"none\"");
    let now = pair.now;
    pair.gw[1].set_mep(now, None, None, Some(rim(&["somebody-else"])));
    run(&mut pair, 3);
    let mut routes = take_routes(&mut pair);
    assert!(pair.established(1));
    assert!(routes.is_empty(), "{routes:?}");
    // Now the peer is listed (a reload would do this): its route appears at once.
    let now = pair.now;
    pair.gw[1].set_mep(now, None, None, Some(rim(&["other"])));
    routes.extend(take_routes(&mut pair));
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(matches!(routes[0], Output::RouteInject { table: 201, .. }));
    // Another table: withdrawn from the old one, injected into the new one.
    routes.clear();
    let mut moved = rim(&[]);
    moved.table = 202;
    let now = pair.now;
    pair.gw[1].set_mep(now, None, None, Some(moved));
    routes.extend(take_routes(&mut pair));
    assert!(
        matches!(
            routes.as_slice(),
            [
                Output::RouteWithdraw { table: 201, .. },
                Output::RouteInject { table: 202, .. }
            ]
        ),
        "{routes:?}"
    );
    // Off: withdrawn.
    routes.clear();
    let now = pair.now;
    pair.gw[1].set_mep(now, None, None, None);
    routes.extend(take_routes(&mut pair));
    assert!(
        matches!(
            routes.as_slice(),
            [Output::RouteWithdraw { table: 202, .. }]
        ),
        "{routes:?}"
    );
}
