//! `conn-load`: the traffic tools of the cluster netns tests, started inside a namespace with
//! `ip netns exec`. Modes:
//! - `serve`: the TCP load server (see `rampart_netns_tests::conn_load`);
//! - `client`: N concurrent TCP connections with an exchange before and after a barrier;
//! - `probe-send` / `probe-recv`: the 1 ms UDP probe stream (see `rampart_netns_tests::probe`).

use rampart_netns_tests::conn_load::{client_main, serve_main, Args};
use rampart_netns_tests::probe::{recv_main, send_main};

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = all.split_first() else {
        eprintln!("usage: conn-load serve|client|probe-send|probe-recv --key value ...");
        std::process::exit(2);
    };
    let result = Args::parse_cli(rest).and_then(|args| match mode.as_str() {
        "serve" => serve_main(&args),
        "client" => client_main(&args),
        "probe-send" => send_main(&args),
        "probe-recv" => recv_main(&args),
        other => Err(format!("unknown mode {other}")),
    });
    if let Err(e) = result {
        eprintln!("conn-load {mode}: {e}");
        std::process::exit(1);
    }
}
