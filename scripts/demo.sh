#!/usr/bin/env bash
# Site-to-site demo in network namespaces (run as root on Debian 12 with Rust):
#
#   h1 10.1.0.10 -- gw-a 10.1.0.1 | 192.0.2.1 == 192.0.2.2 | 10.2.0.1 gw-b -- h2 10.2.0.10
#
# Two rampart gateways run with examples/site-to-site/gw-a.toml and gw-b.toml, bring the tunnel up,
# and the hosts ping each other through it. Every address exists only inside the namespaces.
# Options: --hold keeps everything running until Ctrl-C; --debug uses a debug build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

hold=0
profile=release
for arg in "$@"; do
    case $arg in
        --hold) hold=1 ;;
        --debug) profile=debug ;;
        -h | --help)
            sed -n '2,9p' "$0"
            exit 0
            ;;
        *)
            echo "unknown option: $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    echo "error: the demo creates network namespaces: run it as root" >&2
    exit 1
fi
for tool in ip ping; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "installing iproute2 and iputils-ping"
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iproute2 iputils-ping
        break
    fi
done

echo "==> building rampart ($profile)"
if [[ $profile == release ]]; then
    cargo build --release -p rampart
else
    cargo build -p rampart
fi
bin="${CARGO_TARGET_DIR:-target}/$profile/rampart"

prefix="rpdemo-$$"
h1="$prefix-h1" gwa="$prefix-gwa" gwb="$prefix-gwb" h2="$prefix-h2"
logs=$(mktemp -d /tmp/rampart-demo.XXXXXX)
cfg_a=examples/site-to-site/gw-a.toml
cfg_b=examples/site-to-site/gw-b.toml

cleanup() {
    local ns pid
    for ns in "$h1" "$gwa" "$gwb" "$h2"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -TERM "$pid" 2>/dev/null || true; done
        fi
    done
    sleep 0.5
    for ns in "$h1" "$gwa" "$gwb" "$h2"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
trap cleanup EXIT

echo "==> namespaces"
for ns in "$h1" "$gwa" "$gwb" "$h2"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
ip link add eth0 netns "$h1" type veth peer name lan0 netns "$gwa"
ip link add wan0 netns "$gwa" type veth peer name wan0 netns "$gwb"
ip link add lan0 netns "$gwb" type veth peer name eth0 netns "$h2"
ip -n "$h1" addr add 10.1.0.10/24 dev eth0
ip -n "$gwa" addr add 10.1.0.1/24 dev lan0
ip -n "$gwa" addr add 192.0.2.1/24 dev wan0
ip -n "$gwb" addr add 192.0.2.2/24 dev wan0
ip -n "$gwb" addr add 10.2.0.1/24 dev lan0
ip -n "$h2" addr add 10.2.0.10/24 dev eth0
for pair in "$h1 eth0" "$gwa lan0" "$gwa wan0" "$gwb wan0" "$gwb lan0" "$h2 eth0"; do
    set -- $pair
    ip -n "$1" link set "$2" up
done
ip -n "$h1" route add default via 10.1.0.1
ip -n "$h2" route add default via 10.2.0.1
ip netns exec "$gwa" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
ip netns exec "$gwb" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'

echo "==> gateways (logs in $logs)"
mkdir -p /run/rampart
ip netns exec "$gwb" "$bin" gateway run --config "$cfg_b" >"$logs/gw-b.log" 2>&1 &
ip netns exec "$gwa" "$bin" gateway run --config "$cfg_a" >"$logs/gw-a.log" 2>&1 &

established() {
    "$bin" status --config "$1" --json 2>/dev/null | grep -Eq '"state" *: *"established"'
}
for _ in $(seq 1 60); do
    if established "$cfg_a" && established "$cfg_b"; then
        break
    fi
    sleep 0.5
done
if ! established "$cfg_a"; then
    echo "error: the tunnel did not come up in 30 s" >&2
    tail -n 30 "$logs"/*.log >&2
    exit 1
fi

echo "==> h1 -> h2 through the tunnel"
ip netns exec "$h1" ping -c 3 10.2.0.10
echo "==> h2 -> h1 through the tunnel"
ip netns exec "$h2" ping -c 3 10.1.0.10
echo "==> status of gw-a"
"$bin" status --config "$cfg_a"

if ((hold)); then
    echo "==> running; try: ip netns exec $h1 ping 10.2.0.10   (Ctrl-C stops and cleans up)"
    while sleep 3600; do :; done
fi
echo "==> demo passed"
