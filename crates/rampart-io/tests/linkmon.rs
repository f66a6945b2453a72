//! Link state of monitored interfaces in a private network namespace (root only).

mod netns;

use std::time::Duration;

use netns::Netns;
use rampart_io::linkmon::{LinkChange, LinkMonitor};

fn change(interface: &str, up: bool) -> LinkChange {
    LinkChange {
        interface: interface.to_owned(),
        up,
    }
}

async fn next(monitor: &mut LinkMonitor) -> LinkChange {
    tokio::time::timeout(Duration::from_secs(5), monitor.next())
        .await
        .expect("a link change within 5 s")
        .expect("netlink connection alive")
}

#[test]
fn initial_state_then_down_and_up_events() {
    if !netns::can_run("linkmon") {
        return;
    }
    let ns = Netns::new("linkmon");
    ns.ip("link add m0 type veth peer name m1");
    ns.ip("link set m0 up");
    ns.ip("link set m1 up");
    ns.ip("link add d0 type veth peer name d1");
    ns.ip("link set d1 up");
    ns.run(|| {
        netns::runtime().block_on(async {
            let watched = ["m0", "d0", "ghost0"].map(String::from);
            let mut monitor = LinkMonitor::open(&watched).await.unwrap();
            // Initial state, in the order given: d0 exists but is administratively down, ghost0
            // does not exist.
            assert_eq!(next(&mut monitor).await, change("m0", true));
            assert_eq!(next(&mut monitor).await, change("d0", false));
            assert_eq!(next(&mut monitor).await, change("ghost0", false));

            ns.ip("link set dev m0 down");
            assert_eq!(next(&mut monitor).await, change("m0", false));
            ns.ip("link set dev m0 up");
            assert_eq!(next(&mut monitor).await, change("m0", true));
            // Carrier loss: the veth peer goes down, m0 stays administratively up.
            ns.ip("link set dev m1 down");
            assert_eq!(next(&mut monitor).await, change("m0", false));
            assert_eq!(monitor.state("m0"), Some(false));
            ns.ip("link set dev m1 up");
            assert_eq!(next(&mut monitor).await, change("m0", true));
            ns.ip("link set dev d0 up");
            assert_eq!(next(&mut monitor).await, change("d0", true));
            // Deleted: down. (m1 goes with it; it is not monitored.)
            ns.ip("link del m0");
            assert_eq!(next(&mut monitor).await, change("m0", false));
            // Created: reported when it comes up.
            ns.ip("link add ghost0 type veth peer name ghost1");
            ns.ip("link set ghost1 up");
            ns.ip("link set ghost0 up");
            assert_eq!(next(&mut monitor).await, change("ghost0", true));
        })
    });
}
