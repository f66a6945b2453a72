#!/usr/bin/env bash
# Multiple Entry Points benchmark in network namespaces (run as root on Debian 12).
#
#   site 10.1.0.10 -- sat (lan0 10.1.0.1, wan0 192.0.2.1) --[sw: br-inet]-- m1 wan0 192.0.2.11, m2 wan0 192.0.2.12
#   m1 lan0 10.3.0.1, m2 lan0 10.3.0.2 --[sw: br-int]-- rtr lan0 10.3.0.254 -- rtr srv0 10.3.1.1 -- server 10.3.1.10
#
# The satellite (Rampart) has the explicit group `hq` = [m1, m2] (first-to-respond, default probe
# settings: 1 s interval, 150 ms timeout, 3 misses). Both entry points (Rampart) translate the
# satellite's connections to their own IP Pool NAT pool (m1 10.4.1.0/24, m2 10.4.2.0/24) and the
# internal router routes each pool back to its entry point, so the server's view of a
# connection's source tells which entry point carried it. Cases:
#
#   preconnect   FAILURES times, each in a fresh topology: a new TCP connection every 20 ms from
#                the site host to the server (`rampart-bench mep-probe` / `who-serve`); kill -9
#                the entry point the satellite has chosen; the time from the kill until the
#                first new connection through the other entry point completed. Tunnels to both
#                are kept up (preconnect = true). With --restart: one topology, the killed entry
#                point is restarted and must be seen up before the next failure (which then
#                hits the other one).
#   on-demand    the same with tunnels on demand: the failover also negotiates the tunnel.
#   probe-cost   both tunnels up and idle, m1 probed with Rampart's probe (UDP 259), m2 with
#                IKEv2 liveness; nftables counters on the satellite over --window seconds.
#
# Results: bench/results/mep.md (raw samples and logs in a temp directory, kept with --keep or
# when something failed).
#
# Options:
#   --failures N    failures per failover case (default 20)
#   --quick         5 failures per case, 10 s probe-cost window
#   --cases LIST    comma-separated subset of preconnect,on-demand,probe-cost (default all)
#   --window S      probe-cost window in seconds (default 30)
#   --restart       failover cases in one topology, restarting the killed entry point
#   --keep          keep the temporary directory
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

failures=20
window=30
restart=0
keep=0
cases="preconnect,on-demand,probe-cost"
while [[ $# -gt 0 ]]; do
    case $1 in
        --failures) failures=$2; shift ;;
        --quick) failures=5 window=10 ;;
        --cases) cases=$2; shift ;;
        --window) window=$2; shift ;;
        --restart) restart=1 ;;
        --keep) keep=1 ;;
        -h | --help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ $(id -u) -ne 0 ]]; then
    echo "error: the benchmark creates network namespaces: run it as root" >&2
    exit 1
fi
IFS=, read -ra case_list <<<"$cases"
for c in "${case_list[@]}"; do
    case $c in
        preconnect | on-demand | probe-cost) ;;
        *) echo "unknown case: $c (try --help)" >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------- installs
apt_updated=0
need_pkg() { # need_pkg COMMAND PACKAGE...
    local cmd=$1; shift
    if ! command -v "$cmd" >/dev/null 2>&1; then
        if [[ $apt_updated -eq 0 ]]; then apt-get update -q; apt_updated=1; fi
        echo "==> installing $*"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    fi
}
need_pkg ip iproute2
need_pkg jq jq
need_pkg nft nftables

echo "==> building rampart and rampart-bench (release)"
cargo build --release -q -p rampart -p rampart-bench
target="${CARGO_TARGET_DIR:-$root/target}/release"
rbench="$target/rampart-bench"
rampart="$target/rampart"
build=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- topology
work=$(mktemp -d /tmp/rampart-mep-bench.XXXXXX)
samples="$work/samples.tsv"
: >"$samples"
prefix="rpm$$"
sw="$prefix-sw" site="$prefix-site" sat="$prefix-sat" m1="$prefix-m1" m2="$prefix-m2"
rtr="$prefix-rtr" srv="$prefix-srv"
all_ns=("$site" "$sat" "$m1" "$m2" "$rtr" "$srv" "$sw")
psk="rampart mep bench key, not secret"

# shellcheck source=bench/netns.sh
source "$root/bench/netns.sh"

teardown() {
    teardown_namespaces
}

install_exit_traps

setup() {
    teardown
    local ns i
    add_namespaces
    ip -n "$sw" link add br-inet type bridge
    ip -n "$sw" link add br-int type bridge
    ip -n "$sw" link set br-inet up
    ip -n "$sw" link set br-int up
    # port NS IFNAME SWITCH-PORT BRIDGE ADDRESS
    port() {
        ip link add "$2" netns "$1" type veth peer name "$3" netns "$sw"
        ip -n "$sw" link set "$3" master "$4" up
        ip -n "$1" addr add "$5" dev "$2"
        ip -n "$1" link set "$2" up
    }
    ip link add eth0 netns "$site" type veth peer name lan0 netns "$sat"
    ip -n "$site" addr add 10.1.0.10/24 dev eth0
    ip -n "$sat" addr add 10.1.0.1/24 dev lan0
    ip -n "$site" link set eth0 up
    ip -n "$sat" link set lan0 up
    ip -n "$site" route add default via 10.1.0.1
    port "$sat" wan0 sat-inet br-inet 192.0.2.1/24
    for i in 1 2; do
        ns=$prefix-m$i
        port "$ns" wan0 "m$i-inet" br-inet "192.0.2.1$i/24"
        port "$ns" lan0 "m$i-int" br-int "10.3.0.$i/24"
        ip -n "$ns" route add 10.3.1.0/24 via 10.3.0.254
    done
    port "$rtr" lan0 rtr-int br-int 10.3.0.254/24
    ip link add srv0 netns "$rtr" type veth peer name eth0 netns "$srv"
    ip -n "$rtr" addr add 10.3.1.1/24 dev srv0
    ip -n "$srv" addr add 10.3.1.10/24 dev eth0
    ip -n "$rtr" link set srv0 up
    ip -n "$srv" link set eth0 up
    ip -n "$srv" route add default via 10.3.1.1
    ip -n "$rtr" route add 10.4.1.0/24 via 10.3.0.1
    ip -n "$rtr" route add 10.4.2.0/24 via 10.3.0.2
    for ns in "$sat" "$m1" "$m2" "$rtr"; do
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.default.rp_filter=0
    done
}

# peer NAME LOCAL REMOTE REMOTE_DOMAIN START_ACTION [EXTRA-LINE...]
peer() {
    local name=$1 local=$2 remote=$3 domain=$4 start=$5; shift 5
    cat <<EOF

[[peer]]
name = "$name"
local_address = "$local"
remote_address = "$remote"
local_id = "$local"
remote_id = "$remote"
psk = "$psk"
remote_domain = ["$domain"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "$start"
ike_lifetime = "4h"
child_lifetime = "1h"
liveness_interval = "30s"
encapsulation = "auto"
replay_window = 1024
esn = false
EOF
    local line
    for line in "$@"; do echo "$line"; done
}

gateway_head() { # gateway_head NAME DOMAIN
    cat <<EOF
[gateway]
name = "$1"
status_socket = "$work/$1.sock"
ike_port = 500
nat_t_port = 4500

[tunnel]
device = "rampart0"
mtu = 1400

[local]
domain = ["$2"]
EOF
}

entry_conf() { # entry_conf I
    local i=$1
    gateway_head "m$i" 10.3.0.0/16
    peer sat "192.0.2.1$i" 192.0.2.1 10.1.0.0/24 none
    cat <<EOF

[mep]
respond = true

[[rule]]
name = "allow-all"
action = "accept"

[[nat]]
name = "pool-m$i"
type = "pool"
pool = "10.4.$i.0/24"
EOF
}

sat_conf() { # sat_conf PRECONNECT(true|false) M1-PROBE M2-PROBE
    local start=on-traffic
    [[ $1 == true ]] && start=always # another start action is an error with preconnect
    gateway_head sat 10.1.0.0/24
    peer m1 192.0.2.1 192.0.2.11 10.3.0.0/16 "$start" "probe = \"$2\""
    peer m2 192.0.2.1 192.0.2.12 10.3.0.0/16 "$start" "probe = \"$3\""
    cat <<EOF

[mep]
probe_interval = "1s"
probe_timeout = "150ms"
probe_misses = 3

[[entry_point_group]]
name = "hq"
peers = ["m1", "m2"]
method = "first-to-respond"
tracking = false
preconnect = $1
EOF
}

declare -A gw_pid gw_ns
gw_ns[m1]=$m1 gw_ns[m2]=$m2 gw_ns[sat]=$sat

start_gw() { # start_gw NAME (config in $work/NAME.toml)
    local name=$1
    ip netns exec "${gw_ns[$name]}" "$rampart" gateway run --config "$work/$name.toml" \
        >>"$work/$name.log" 2>&1 &
    gw_pid[$name]=$!
    disown "${gw_pid[$name]}" # killed on purpose: no "Killed" line from bash
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.1 s until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [[ $SECONDS -ge $deadline ]]; then
            echo "error: $what did not happen within ${secs}s" >&2
            return 1
        fi
        sleep 0.1
    done
}

mep_status() { "$rampart" mep status --json --socket "$work/sat.sock" 2>/dev/null; }
# ep_is NAME STATE [TUNNEL]: the satellite sees entry point NAME in STATE (and, with TUNNEL =
# true, has its tunnel up).
ep_is() {
    local tunnel=${3:-any}
    mep_status | jq -e --arg n "$1" --arg s "$2" --arg t "$tunnel" \
        '.groups[] | select(.name == "hq") | .entry_points[] | select(.name == $n)
         | (.state == $s) and ($t == "any" or .tunnel_up == true)' >/dev/null
}
current() { mep_status | jq -r '.groups[] | select(.name == "hq") | .current // empty'; }

# start_all PRECONNECT M1-PROBE M2-PROBE: fresh topology, both entry points, the satellite, the
# who-server; returns once both entry points are up (with tunnels when PRECONNECT).
start_all() {
    setup
    local i tunnel=any
    [[ $1 == true ]] && tunnel=true
    for i in 1 2; do
        entry_conf "$i" >"$work/m$i.toml"
        start_gw "m$i"
    done
    sat_conf "$@" >"$work/sat.toml"
    start_gw sat
    ip netns exec "$srv" "$rbench" who-serve --listen 10.3.1.10:7100 >>"$work/who.log" 2>&1 &
    wait_for 30 "m1 up" ep_is m1 up "$tunnel" || return 1
    wait_for 30 "m2 up" ep_is m2 up "$tunnel" || return 1
}

# measure_failure CASE RUN: kills the chosen entry point while new connections run and records
# the time until the first one through the other; sets `killed` to the killed one's name.
killed=""
measure_failure() {
    local case=$1 run=$2 cur other out kill_ns result
    killed=""
    cur=$(current)
    case $cur in
        m1) other=m2 ;;
        m2) other=m1 ;;
        *)
            echo "   $case run $run: no entry point chosen" >&2
            printf '%s\tfirst_new_ms\t%s\tNA\n' "$case" "$run" >>"$samples"
            keep=1
            return
            ;;
    esac
    out="$work/$case-$run.log"
    ip netns exec "$site" "$rbench" mep-probe --connect 10.3.1.10:7100 --duration 7 \
        --out "$out" >/dev/null 2>"$out.err" &
    local probe_pid=$!
    # 1 s of traffic first, then the kill at a random moment of the 1 s probe interval: failures
    # do not come in step with the probes, so the figures spread over the whole detection range.
    sleep "1.$(printf '%03d' $((RANDOM % 1000)))"
    kill_ns=$(date +%s%N)
    kill -9 "${gw_pid[$cur]}"
    killed=$cur
    wait "$probe_pid" || true
    if result=$("$rbench" mep-gap --log "$out" --kill-ns "$kill_ns" \
        --through "10.4.${other#m}.0/24" 2>>"$out.err"); then
        read -r first gap attempts failed stray <<<"$result"
        printf '   run %2s: killed %s, first new connection through %s after %s ms (longest gap %s ms, %s of %s attempts failed)\n' \
            "$run" "$cur" "$other" "$first" "$gap" "$failed" "$attempts"
        printf '%s\tfirst_new_ms\t%s\t%s\n' "$case" "$run" "$first" >>"$samples"
        printf '%s\tconn_gap_ms\t%s\t%s\n' "$case" "$run" "$gap" >>"$samples"
        printf '%s\tfailed_attempts\t%s\t%s\n' "$case" "$run" "$failed" >>"$samples"
        printf '%s\tstray\t%s\t%s\n' "$case" "$run" "$stray" >>"$samples"
    else
        echo "   run $run: killed $cur, no new connection through $other within 6 s" >&2
        printf '%s\tfirst_new_ms\t%s\tNA\n' "$case" "$run" >>"$samples"
        keep=1
    fi
}

# Resolves one connection (first-to-respond adopts its choice then; on demand it also brings
# that tunnel up).
warm_up() {
    ip netns exec "$site" "$rbench" mep-probe --connect 10.3.1.10:7100 --duration 2 \
        --out "$work/warmup.log" >/dev/null 2>&1 || true
}

case_failover() { # case_failover CASE PRECONNECT
    local case=$1 preconnect=$2 run tunnel=any
    [[ $preconnect == true ]] && tunnel=true
    echo "==> $case: $failures failures ($([[ $restart -eq 1 ]] && echo "kill and restart in one topology" || echo "a fresh topology each"))"
    for run in $(seq 1 "$failures"); do
        if [[ $restart -eq 0 || $run -eq 1 ]]; then
            if ! start_all "$preconnect" auto auto; then
                echo "   $case run $run: the topology did not come up (logs in $work)" >&2
                keep=1
                printf '%s\tfirst_new_ms\t%s\tNA\n' "$case" "$run" >>"$samples"
                continue
            fi
            warm_up
        fi
        measure_failure "$case" "$run"
        if [[ $restart -eq 1 && -n $killed ]]; then
            start_gw "$killed"
            if ! wait_for 30 "$killed up again" ep_is "$killed" up "$tunnel"; then
                echo "   $case: $killed did not come back; stopping this case" >&2
                keep=1
                return
            fi
        fi
    done
}

case_probe_cost() {
    echo "==> probe-cost: ${window}s window"
    if ! start_all true rampart ike; then
        echo "   probe-cost: the topology did not come up (logs in $work)" >&2
        keep=1
        return
    fi
    # Packets between the satellite and each entry point on the probes' ports: Rampart's probe
    # (UDP 259) to m1; IKE (UDP 500, and UDP 4500 with the non-ESP marker) to m2.
    ip netns exec "$sat" nft -f - <<'EOF'
table inet mepcost {
    counter rp_out {}
    counter rp_in {}
    counter ike_out {}
    counter ike_in {}
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr 192.0.2.11 udp dport 259 counter name "rp_out"
        ip daddr 192.0.2.12 udp dport 500 counter name "ike_out"
        ip daddr 192.0.2.12 udp dport 4500 @th,64,32 0 counter name "ike_out"
    }
    chain in {
        type filter hook input priority 0; policy accept;
        ip saddr 192.0.2.11 udp sport 259 counter name "rp_in"
        ip saddr 192.0.2.12 udp sport 500 counter name "ike_in"
        ip saddr 192.0.2.12 udp sport 4500 @th,64,32 0 counter name "ike_in"
    }
}
EOF
    sleep 3 # past the first probes and the IKE setup
    ip netns exec "$sat" nft reset counters table inet mepcost >/dev/null
    local start=$SECONDS
    sleep "$window"
    local secs=$((SECONDS - start))
    ip netns exec "$sat" nft -j list counters table inet mepcost >"$work/counters.json"
    local c p b
    for c in rp_out rp_in ike_out ike_in; do
        p=$(jq --arg c "$c" '[.nftables[] | select(.counter.name == $c) | .counter.packets] | first' "$work/counters.json")
        b=$(jq --arg c "$c" '[.nftables[] | select(.counter.name == $c) | .counter.bytes] | first' "$work/counters.json")
        local kase=probe-rampart dir=${c#*_}
        [[ $c == ike_* ]] && kase=probe-ike
        printf '%s\t%s_pps\t1\t%s\n' "$kase" "$dir" "$(awk -v p="$p" -v s="$secs" 'BEGIN{print p / s}')" >>"$samples"
        printf '%s\t%s_bytes_per_s\t1\t%s\n' "$kase" "$dir" "$(awk -v b="$b" -v s="$secs" 'BEGIN{print b / s}')" >>"$samples"
        echo "   $c: $p packets, $b bytes in ${secs}s"
    done
    printf 'probe-rampart\tseconds\t1\t%s\n' "$secs" >>"$samples"
    printf 'probe-ike\tseconds\t1\t%s\n' "$secs" >>"$samples"
    mep_status >"$work/probe-cost-status.json" || true
}

# ---------------------------------------------------------------- run
for c in "${case_list[@]}"; do
    case $c in
        preconnect) case_failover preconnect true ;;
        on-demand) case_failover on-demand false ;;
        probe-cost) case_probe_cost ;;
    esac
done
teardown
mkdir -p bench/results
restart_flag=()
[[ $restart -eq 1 ]] && restart_flag=(--restart)
"$rbench" mep-report --samples "$samples" --failures "$failures" --build "$build" \
    --load-start "$load_start" "${restart_flag[@]}" --out bench/results/mep.md
echo "==> wrote bench/results/mep.md"
