//! `ra-load`: the remote-access load generator of the netns tests (see
//! `rampart_netns_tests::ra_load`), started inside the client namespace with `ip netns exec`.

use rampart_netns_tests::conn_load::Args;
use rampart_netns_tests::ra_load::ra_load_main;

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = Args::parse_cli(&all).and_then(|args| ra_load_main(&args)) {
        eprintln!("ra-load: {e}");
        std::process::exit(1);
    }
}
