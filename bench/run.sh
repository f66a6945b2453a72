#!/usr/bin/env bash
# Side-by-side tunnel benchmark in network namespaces (run as root on Debian 12 with Rust).
#
#   h1 10.1.0.10 -- gw1 10.1.0.1 | 192.0.2.1 == 192.0.2.2 | 10.2.0.1 gw2 -- h2 10.2.0.10
#
# For each case (raw veth routing, Rampart ESP-in-UDP, Rampart raw ESP, boringtun, strongSwan
# kernel-libipsec) a fresh topology is built, the tunnel brought up, and iperf3 measures one TCP
# stream, four TCP streams and 64-byte UDP packets/s from h1 to h2. Then the IKE setup rate of a
# Rampart responder and a strongSwan responder is measured with `rampart-bench ike-load`.
# Results: bench/results/throughput.md and bench/results/ike.md (raw samples and logs in a temp
# directory printed at the end).
#
# Options:
#   --quick            1 run x 3 s per case, small IKE run (for development; numbers are rough)
#   --runs N           runs per case and test (default 3)
#   --time S           seconds per iperf3 run (default 10)
#   --cases LIST       comma-separated subset of: raw,rampart-udp,rampart-udp-ct1,rampart-esp,
#                      boringtun,strongswan (rampart-udp-ct1: ESP-in-UDP with crypto_threads = 1)
#   --no-ike           skip the IKE setup-rate measurement
#   --ike-only         only the IKE setup-rate measurement
#   --ike-sas N        IKE SAs per responder (default 2000; --quick: 300)
#   --ike-concurrency N  exchanges in flight (default 64; --quick: 32)
#   --baseline BIN     also measure case rampart-udp-baseline: ESP-in-UDP with another rampart
#                      binary (e.g. a release build of the commit before a change), so that
#                      before and after come from the same run on the same machine
#   --keep             keep the temporary directory with raw samples and logs
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

runs=3
secs=10
cases="raw,rampart-udp,rampart-udp-ct1,rampart-esp,boringtun,strongswan"
do_tput=1
do_ike=1
ike_sas=2000
ike_conc=64
quick=0
keep=0
baseline=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1 runs=1 secs=3 ike_sas=300 ike_conc=32 ;;
        --runs) runs=$2; shift ;;
        --time) secs=$2; shift ;;
        --cases) cases=$2; shift ;;
        --no-ike) do_ike=0 ;;
        --ike-only) do_tput=0 ;;
        --ike-sas) ike_sas=$2; shift ;;
        --ike-concurrency) ike_conc=$2; shift ;;
        --keep) keep=1 ;;
        --baseline) baseline=$2; shift ;;
        -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ $(id -u) -ne 0 ]]; then
    echo "error: the benchmark creates network namespaces: run it as root" >&2
    exit 1
fi

# ---------------------------------------------------------------- installs
apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
    local cmd=$1; shift
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x $cmd ]]; then
        if [[ $apt_updated -eq 0 ]]; then apt-get update -q; apt_updated=1; fi
        echo "==> installing $*"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    fi
}
need_pkg ip iproute2
need_pkg ping iputils-ping
need_pkg iperf3 iperf3
need_pkg jq jq
if [[ ,$cases, == *,boringtun,* && $do_tput -eq 1 ]]; then
    need_pkg wg wireguard-tools
    if ! command -v boringtun-cli >/dev/null 2>&1; then
        echo "==> cargo install boringtun-cli --locked"
        cargo install boringtun-cli --locked
    fi
fi
if [[ ,$cases, == *,strongswan,* || $do_ike -eq 1 ]]; then
    if [[ ! -x /usr/lib/ipsec/charon || ! -e /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so ]] ||
        ! command -v swanctl >/dev/null 2>&1; then
        need_pkg /nonexistent strongswan-charon strongswan-swanctl libcharon-extra-plugins \
            libstrongswan-standard-plugins libstrongswan-extra-plugins
    fi
fi
charon=/usr/lib/ipsec/charon
boringtun=$(command -v boringtun-cli || echo "$HOME/.cargo/bin/boringtun-cli")

echo "==> building rampart and rampart-bench (release)"
cargo build --release -q -p rampart -p rampart-bench
target="${CARGO_TARGET_DIR:-$root/target}/release"
rampart="$target/rampart"
rbench="$target/rampart-bench"

# ---------------------------------------------------------------- topology
work=$(mktemp -d /tmp/rampart-bench.XXXXXX)
samples="$work/samples.tsv"
: >"$samples"
prefix="rpb$$"
h1="$prefix-h1" gw1="$prefix-gw1" gw2="$prefix-gw2" h2="$prefix-h2"
all_ns=("$h1" "$gw1" "$gw2" "$h2")

# shellcheck source=bench/netns.sh
source "$root/bench/netns.sh"

teardown() {
    teardown_namespaces
    # boringtun's UAPI sockets live outside the namespaces.
    rm -f "/var/run/wireguard/${prefix}a.sock" "/var/run/wireguard/${prefix}b.sock"
}

install_exit_traps

setup() {
    teardown
    add_namespaces
    ip link add eth0 netns "$h1" type veth peer name lan0 netns "$gw1"
    ip link add wan0 netns "$gw1" type veth peer name wan0 netns "$gw2"
    ip link add lan0 netns "$gw2" type veth peer name eth0 netns "$h2"
    ip -n "$h1" addr add 10.1.0.10/24 dev eth0
    ip -n "$gw1" addr add 10.1.0.1/24 dev lan0
    ip -n "$gw1" addr add 192.0.2.1/24 dev wan0
    ip -n "$gw2" addr add 192.0.2.2/24 dev wan0
    ip -n "$gw2" addr add 10.2.0.1/24 dev lan0
    ip -n "$h2" addr add 10.2.0.10/24 dev eth0
    local pair
    for pair in "$h1 eth0" "$gw1 lan0" "$gw1 wan0" "$gw2 wan0" "$gw2 lan0" "$h2 eth0"; do
        # shellcheck disable=SC2086
        set -- $pair
        ip -n "$1" link set "$2" up
    done
    ip -n "$h1" route add default via 10.1.0.1
    ip -n "$h2" route add default via 10.2.0.1
    ip netns exec "$gw1" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$gw2" sysctl -qw net.ipv4.ip_forward=1
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [[ $SECONDS -ge $deadline ]]; then
            echo "error: $what did not happen within ${secs}s" >&2
            return 1
        fi
        sleep 0.2
    done
}

reachable() { ip netns exec "$h1" ping -c 1 -W 1 10.2.0.10; }

# ---------------------------------------------------------------- tunnels
rampart_conf() { # rampart_conf NAME LOCAL REMOTE LDOMAIN RDOMAIN ENCAP START CRYPTO_THREADS
    cat <<EOF
[gateway]
name = "$1"
status_socket = "$work/$1.sock"
ike_port = 500
nat_t_port = 4500

[tunnel]
device = "rpb0"
mtu = 1400
crypto_threads = ${8:-0}

[local]
domain = ["$4"]

[[peer]]
name = "peer"
local_address = "$2"
remote_address = "$3"
local_id = "$2"
remote_id = "$3"
psk = "rampart benchmark key, not a secret"
remote_domain = ["$5"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "$7"
ike_lifetime = "4h"
child_lifetime = "1h"
liveness_interval = "30s"
encapsulation = "$6"
replay_window = 4096
esn = false
EOF
}

start_rampart() { # start_rampart auto|force [CRYPTO_THREADS [BINARY]]
    local bin=${3:-$rampart}
    rampart_conf gw1 192.0.2.1 192.0.2.2 10.1.0.0/24 10.2.0.0/24 "$1" always "${2:-0}" >"$work/gw1.toml"
    rampart_conf gw2 192.0.2.2 192.0.2.1 10.2.0.0/24 10.1.0.0/24 "$1" none "${2:-0}" >"$work/gw2.toml"
    ip netns exec "$gw2" "$bin" gateway run --config "$work/gw2.toml" >"$work/rampart-gw2.log" 2>&1 &
    ip netns exec "$gw1" "$bin" gateway run --config "$work/gw1.toml" >"$work/rampart-gw1.log" 2>&1 &
    wait_for 30 "the Rampart tunnel" reachable
}

start_boringtun() {
    local ka kb pa pb
    ka=$(wg genkey) kb=$(wg genkey)
    pa=$(wg pubkey <<<"$ka") pb=$(wg pubkey <<<"$kb")
    local ifa="${prefix}a" ifb="${prefix}b"
    ip netns exec "$gw1" "$boringtun" --foreground --disable-drop-privileges "$ifa" \
        >"$work/boringtun-gw1.log" 2>&1 &
    ip netns exec "$gw2" "$boringtun" --foreground --disable-drop-privileges "$ifb" \
        >"$work/boringtun-gw2.log" 2>&1 &
    wait_for 10 "boringtun's UAPI sockets" test -S "/var/run/wireguard/$ifa.sock" -a -S "/var/run/wireguard/$ifb.sock"
    ip netns exec "$gw1" wg set "$ifa" private-key <(echo "$ka") listen-port 51820 \
        peer "$pb" allowed-ips 10.2.0.0/24 endpoint 192.0.2.2:51820
    ip netns exec "$gw2" wg set "$ifb" private-key <(echo "$kb") listen-port 51820 \
        peer "$pa" allowed-ips 10.1.0.0/24 endpoint 192.0.2.1:51820
    ip -n "$gw1" link set "$ifa" mtu 1420 up
    ip -n "$gw2" link set "$ifb" mtu 1420 up
    ip -n "$gw1" route add 10.2.0.0/24 dev "$ifa"
    ip -n "$gw2" route add 10.1.0.0/24 dev "$ifb"
    wait_for 20 "the boringtun tunnel" reachable
}

charon_conf() { # charon_conf DIR [EXTRA-LINES]
    cat <<EOF
charon {
${2:-}
  load = random nonce openssl hmac kdf pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici updown
  port = 500
  port_nat_t = 4500
  install_routes = yes
  plugins {
    vici {
      socket = unix://$1/charon.vici
    }
  }
  filelog {
    charon {
      path = $1/charon.log
      time_format = %T
      default = 1
      flush_line = yes
    }
  }
}
EOF
}

swanctl_s2s() { # swanctl_s2s LOCAL REMOTE LTS RTS
    cat <<EOF
connections {
  s2s {
    version = 2
    local_addrs = $1
    remote_addrs = $2
    proposals = aes256gcm16-prfsha256-x25519
    encap = yes
    dpd_delay = 0s
    local { auth = psk
      id = $1 }
    remote { auth = psk
      id = $2 }
    children {
      net {
        local_ts = $3
        remote_ts = $4
        esp_proposals = aes256gcm16
        start_action = none
      }
    }
  }
}
secrets {
  ike-s2s {
    id-local = $1
    id-remote = $2
    secret = "rampart benchmark key, not a secret"
  }
}
EOF
}

# start_charon NS NAME SWANCTL_TEXT [CHARON_EXTRA]: a charon with a private config, vici socket
# and /run.
start_charon() {
    local ns=$1 name=$2 dir="$work/$2"
    mkdir -p "$dir/swanctl"
    charon_conf "$dir" "${4:-}" >"$dir/strongswan.conf"
    printf '%s\n' "$3" >"$dir/swanctl/swanctl.conf"
    ip netns exec "$ns" env STRONGSWAN_CONF="$dir/strongswan.conf" \
        unshare --mount --propagation private sh -c "mount -t tmpfs tmpfs /run && exec $charon" \
        >"$dir/stdout.log" 2>&1 &
    wait_for 20 "charon's vici socket ($name)" test -S "$dir/charon.vici"
    wait_for 10 "swanctl --load-all ($name)" \
        swanctl --load-all --file "$dir/swanctl/swanctl.conf" --uri "unix://$dir/charon.vici"
}

start_strongswan() {
    start_charon "$gw2" ss-gw2 "$(swanctl_s2s 192.0.2.2 192.0.2.1 10.2.0.0/24 10.1.0.0/24)"
    start_charon "$gw1" ss-gw1 "$(swanctl_s2s 192.0.2.1 192.0.2.2 10.1.0.0/24 10.2.0.0/24)"
    swanctl --initiate --child net --timeout 30 --uri "unix://$work/ss-gw1/charon.vici" \
        >"$work/ss-initiate.log" 2>&1
    wait_for 20 "the strongSwan tunnel" reachable
}

start_case() {
    case $1 in
        raw)
            ip -n "$gw1" route add 10.2.0.0/24 via 192.0.2.2
            ip -n "$gw2" route add 10.1.0.0/24 via 192.0.2.1
            wait_for 10 "raw routing" reachable
            ;;
        rampart-udp) start_rampart force ;;
        rampart-udp-ct1) start_rampart force 1 ;;
        rampart-udp-baseline) start_rampart force 0 "$baseline" ;;
        rampart-esp) start_rampart auto ;;
        boringtun) start_boringtun ;;
        strongswan) start_strongswan ;;
        *) echo "unknown case: $1" >&2; return 2 ;;
    esac
}

# ---------------------------------------------------------------- measurement
# Busy CPU time of the whole machine so far, in clock ticks: user, nice, system, irq and softirq
# of all cores (idle, iowait and the hypervisor's steal left out).
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

# iperf_run CASE TEST RUN ARGS...: one iperf3 client run, its figure appended to the samples.
# For tcp1 also the CPU cost: busy seconds of the whole machine per GB received (sample "cpu1").
iperf_run() {
    local case=$1 test=$2 run=$3; shift 3
    local out="$work/$case-$test-$run.json" value cpu=NA before after
    before=$(busy_ticks)
    if ip netns exec "$h1" iperf3 -c 10.2.0.10 -t "$secs" -J "$@" >"$out" 2>"$out.err"; then
        after=$(busy_ticks)
        case $test in
            udp64) value=$(jq '(.end.sum.packets - .end.sum.lost_packets) / .end.sum.seconds' "$out") ;;
            *) value=$(jq '.end.sum_received.bits_per_second' "$out") ;;
        esac
        cpu=$(jq --argjson ticks "$((after - before))" --argjson hz "$(getconf CLK_TCK)" \
            'if .end.sum_received.bytes > 0 then ($ticks / $hz) / (.end.sum_received.bytes / 1e9) else "NA" end' "$out")
    else
        value=NA
        echo "   iperf3 failed: $(jq -r '.error // empty' "$out" 2>/dev/null) $(cat "$out.err")" >&2
    fi
    printf '%s\t%s\t%s\t%s\n' "$case" "$test" "$run" "$value" >>"$samples"
    printf '   %-12s %-6s run %s: %s\n' "$case" "$test" "$run" "$value"
    if [[ $test == tcp1 ]]; then
        printf '%s\tcpu1\t%s\t%s\n' "$case" "$run" "${cpu//\"/}" >>"$samples"
        printf '   %-12s %-6s run %s: %s\n' "$case" cpu1 "$run" "$cpu"
    fi
}

measure_case() {
    local case=$1 run
    echo "==> $case"
    setup
    if ! start_case "$case"; then
        echo "   $case: the tunnel did not come up; recorded as failed (logs in $work)" >&2
        for t in tcp1 cpu1 tcp4 udp64; do printf '%s\t%s\t1\tNA\n' "$case" "$t" >>"$samples"; done
        keep=1
        return 0
    fi
    ip netns exec "$h2" iperf3 -s >"$work/iperf3-server-$case.log" 2>&1 &
    wait_for 10 "the iperf3 server" ip netns exec "$h2" sh -c 'ss -ltn | grep -q ":5201 "'
    for run in $(seq 1 "$runs"); do
        iperf_run "$case" tcp1 "$run"
        iperf_run "$case" tcp4 "$run" -P 4
        iperf_run "$case" udp64 "$run" -u -b 0 -l 64
    done
}

if [[ $do_tput -eq 1 ]]; then
    IFS=, read -ra case_list <<<"$cases"
    if [[ -n $baseline ]]; then
        [[ -x $baseline ]] || { echo "error: --baseline $baseline is not an executable" >&2; exit 2; }
        case_list+=(rampart-udp-baseline)
    fi
    for c in "${case_list[@]}"; do measure_case "$c"; done
    teardown
    mkdir -p bench/results
    "$rbench" throughput-report --samples "$samples" --runs "$runs" --seconds "$secs" \
        --out bench/results/throughput.md
    echo "==> wrote bench/results/throughput.md"
fi

# ---------------------------------------------------------------- IKE setup rate
ike_responder_rampart_conf() { # N peers with identities lg-<i>.bench
    cat <<EOF
[gateway]
name = "ike-responder"
status_socket = "$work/ike-responder.sock"
ike_port = 500
nat_t_port = 4500
# All initiators share one address: lift the DoS limits, as for strongSwan below.
cookie_threshold = 1000000
half_open_per_source = 1000000

[tunnel]
device = "rpb0"
mtu = 1400

[local]
domain = ["10.2.0.0/24"]
EOF
    local i
    for ((i = 0; i < ike_sas; i++)); do
        cat <<EOF

[[peer]]
name = "lg$i"
local_address = "192.0.2.2"
remote_address = "192.0.2.254"
local_id = "responder.bench"
remote_id = "lg-$i.bench"
psk = "rampart benchmark key, not a secret"
remote_domain = ["10.$((100 + i / 65536)).$((i / 256 % 256)).$((i % 256))/32"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "none"
liveness_interval = "1h"
EOF
    done
}

swanctl_responder() {
    cat <<EOF
connections {
  rw {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = %any
    proposals = aes256gcm16-prfsha256-x25519
    dpd_delay = 0s
    unique = never
    local { auth = psk
      id = responder.bench }
    remote { auth = psk
      id = %any }
    children {
      net {
        local_ts = 10.2.0.0/24
        remote_ts = 10.100.0.0/14
        esp_proposals = aes256gcm16
      }
    }
  }
}
secrets {
  ike-any {
    secret = "rampart benchmark key, not a secret"
  }
}
EOF
}

ike_run() { # ike_run LABEL
    ip netns exec "$gw1" "$rbench" ike-load --local 192.0.2.1 --remote 192.0.2.2 \
        --total "$ike_sas" --concurrency "$ike_conc" --label "$1" --json "$work/ike-$1.json" \
        --timeout 30 2>"$work/ike-$1.err" | tee -a "$work/ike-summary.txt"
}

if [[ $do_ike -eq 1 ]]; then
    echo "==> IKE setup rate: $ike_sas SAs, $ike_conc in flight"
    setup
    ike_responder_rampart_conf >"$work/ike-responder.toml"
    ip netns exec "$gw2" "$rampart" gateway run --config "$work/ike-responder.toml" \
        >"$work/rampart-ike-responder.log" 2>&1 &
    wait_for 20 "the Rampart responder" ip netns exec "$gw2" sh -c 'ss -lun | grep -q "192.0.2.2:500 "'
    ike_run rampart
    setup
    # All initiators share one address: lift strongSwan's cookie and per-address half-open limits
    # (defaults 10 and 5), as Rampart's are lifted above, so both do the same work.
    start_charon "$gw2" ss-responder "$(swanctl_responder)" \
        "$(printf 'cookie_threshold = 1000000\nblock_threshold = 1000000')"
    ike_run strongswan
    teardown
    mkdir -p bench/results
    "$rbench" ike-report --out bench/results/ike.md "$work/ike-rampart.json" "$work/ike-strongswan.json"
    echo "==> wrote bench/results/ike.md"
fi
