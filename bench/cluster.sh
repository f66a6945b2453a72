#!/usr/bin/env bash
# Cluster failover and state-sync benchmark in network namespaces (run as root on Debian 12).
#
#   LAN host 10.1.0.10 --[br-lan]-- member 1 (lan0 10.1.0.2)  member 2 (lan0 10.1.0.3)  VIP 10.1.0.1
#                                   member 1 (wan0 192.0.2.2) member 2 (wan0 192.0.2.3) VIP 192.0.2.1
#   remote gw 192.0.2.10 --[br-wan]    sync link: m1 sync0 172.16.0.1 == 172.16.0.2 sync0 m2
#   remote host 10.2.0.10 -- remote gw lan0 10.2.0.1
#
# The bridges live in a switch namespace; the LAN host's default route and the remote gateway's
# route to 10.1.0.0/24 go via the VIPs. Cases:
#
#   keepalived-1s     keepalived VRRP (advert_int 1, the default): kill -9 the master, links down,
#                     failover gap of a 1 ms UDP probe stream LAN host -> remote host
#   keepalived-100ms  the same with advert_int 0.1 (VRRPv3)
#   conntrackd        conntrackd FT-FW on both members over the sync link; 10,000 TCP connections
#                     through member 1; time until member 2's external cache holds them all and
#                     sync-link bytes per connection
#   rampart-kill      two Rampart members (a [cluster] section) + a remote Rampart gateway;
#                     10,000 connections through the tunnel, sync measured, kill -9 the active,
#                     gap of the probe stream, connections checked after the failover
#   rampart-switchover the same with `rampart cluster switchover` instead of the kill
#   ls-cps            Load Sharing (issue 14), routed: connections per second (`conn-open`, TCP
#                     through the tunnel to a remote Rampart gateway) of one Rampart member alone,
#                     then of a 2- and a 3-member cluster with Flush-and-Ack, in the same run; the
#                     F&A hold times of that load from `rampart cluster sync-stats`
#   ls-hold           Flush-and-Ack hold time p50/p99 at a light load (16 connects in flight) on a
#                     LAN sync link and with tc netem 50 ms each way (100 ms round trip), 3 members
#
# The Load Sharing cases use their own topology (see "Load Sharing" below): an inside router and
# an upstream router with static equal-cost multipath routes over the members (no BIRD: the
# routing protocol is not what is measured), a remote Rampart gateway and a host behind it.
# Their figures go to bench/results/cluster-ls.md, which is spliced into cluster.md between the
# markers `<!-- ls:begin -->` and `<!-- ls:end -->`; a run of only ls-* cases leaves the rest of
# cluster.md as it is (cluster-report does not run, so the HA figures stay).
#
# Results: bench/results/cluster.md, with bench/results/cluster-engine.md (run B of
# `rampart-bench cluster-delta` / `cluster-fullsync`, kept by hand) included as its section
# "Rampart sync engine", so a re-run does not erase those rows (raw samples and logs in a temp directory, kept with --keep
# or when something failed).
#
# Options:
#   --quick         2 failover runs per case instead of 5 (numbers are rough)
#   --runs N        failover runs per case (default 5)
#   --cases LIST    comma-separated subset (default keepalived-1s,keepalived-100ms,conntrackd;
#                   the rampart-* cases run only when named here)
#   --conns N       TCP connections for the sync and connection-survival cases (default 10000)
#   --ls-conns N    TCP connections per ls-cps run (default 5000)
#   --keep          keep the temporary directory with raw samples and logs
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

runs=5
quick=0
keep=0
conns=10000
ls_conns=5000
cases="keepalived-1s,keepalived-100ms,conntrackd"
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) quick=1 runs=2 ;;
        --runs) runs=$2; shift ;;
        --cases) cases=$2; shift ;;
        --conns) conns=$2; shift ;;
        --keep) keep=1 ;;
        --ls-conns) ls_conns=$2; shift ;;
        -h | --help) sed -n '2,50p' "$0"; exit 0 ;;
        *) echo "unknown option: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [[ $(id -u) -ne 0 ]]; then
    echo "error: the benchmark creates network namespaces: run it as root" >&2
    exit 1
fi
IFS=, read -ra case_list <<<"$cases"
want_rampart=0
want_ha=0
want_ls=0
for c in "${case_list[@]}"; do
    case $c in
        keepalived-1s | keepalived-100ms | conntrackd) want_ha=1 ;;
        rampart-kill | rampart-switchover) want_rampart=1 want_ha=1 ;;
        ls-cps | ls-hold) want_rampart=1 want_ls=1 ;;
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
need_pkg ping iputils-ping
need_pkg jq jq
need_pkg ss iproute2
[[ ,$cases, == *,keepalived-* ]] && need_pkg keepalived keepalived
if [[ ,$cases, == *,conntrackd,* ]]; then
    need_pkg conntrackd conntrackd
    need_pkg conntrack conntrack
    need_pkg nft nftables
fi

echo "==> building rampart-bench (release)"
if [[ $want_rampart -eq 1 ]]; then
    cargo build --release -q -p rampart -p rampart-bench
else
    cargo build --release -q -p rampart-bench
fi
target="${CARGO_TARGET_DIR:-$root/target}/release"
rbench="$target/rampart-bench"
rampart="$target/rampart"

# ---------------------------------------------------------------- topology
work=$(mktemp -d /tmp/rampart-cluster-bench.XXXXXX)
samples="$work/samples.tsv"
: >"$samples"
prefix="rpc$$"
sw="$prefix-sw" h="$prefix-h" m1="$prefix-m1" m2="$prefix-m2" rgw="$prefix-rgw" rh="$prefix-rh"
all_ns=("$h" "$m1" "$m2" "$rgw" "$rh" "$sw")
# The Load Sharing topology's namespaces.
lsw="$prefix-lsw" lh="$prefix-lh" lrin="$prefix-lrin" lrout="$prefix-lrout" lpeer="$prefix-lpeer"
lrh="$prefix-lrh" lm1="$prefix-lm1" lm2="$prefix-lm2" lm3="$prefix-lm3"
ls_ns=("$lsw" "$lh" "$lrin" "$lrout" "$lpeer" "$lrh" "$lm1" "$lm2" "$lm3")
all_ns+=("${ls_ns[@]}")

# shellcheck source=bench/netns.sh
source "$root/bench/netns.sh"

teardown() {
    teardown_namespaces
}

install_exit_traps

# setup plain|rampart: a fresh topology. plain: the members and the remote gateway route with
# plain Linux forwarding; rampart: the routes to the remote site are left to the Rampart tunnels.
setup() {
    teardown
    add_namespaces
    ip -n "$sw" link add br-lan type bridge
    ip -n "$sw" link add br-wan type bridge
    # link NS IFNAME SWITCH-PORT BRIDGE
    link() {
        ip link add "$2" netns "$1" type veth peer name "$3" netns "$sw"
        ip -n "$sw" link set "$3" master "$4" up
        ip -n "$1" link set "$2" up
    }
    link "$h" eth0 sw-h br-lan
    link "$m1" lan0 sw-m1-lan br-lan
    link "$m2" lan0 sw-m2-lan br-lan
    link "$m1" wan0 sw-m1-wan br-wan
    link "$m2" wan0 sw-m2-wan br-wan
    link "$rgw" wan0 sw-rgw br-wan
    ip -n "$sw" link set br-lan up
    ip -n "$sw" link set br-wan up
    ip link add sync0 netns "$m1" type veth peer name sync0 netns "$m2"
    ip -n "$m1" link set sync0 up
    ip -n "$m2" link set sync0 up
    ip link add lan0 netns "$rgw" type veth peer name eth0 netns "$rh"
    ip -n "$rgw" link set lan0 up
    ip -n "$rh" link set eth0 up

    ip -n "$h" addr add 10.1.0.10/24 dev eth0
    ip -n "$m1" addr add 10.1.0.2/24 dev lan0
    ip -n "$m2" addr add 10.1.0.3/24 dev lan0
    ip -n "$m1" addr add 192.0.2.2/24 dev wan0
    ip -n "$m2" addr add 192.0.2.3/24 dev wan0
    ip -n "$m1" addr add 172.16.0.1/24 dev sync0
    ip -n "$m2" addr add 172.16.0.2/24 dev sync0
    ip -n "$rgw" addr add 192.0.2.10/24 dev wan0
    ip -n "$rgw" addr add 10.2.0.1/24 dev lan0
    ip -n "$rh" addr add 10.2.0.10/24 dev eth0
    ip -n "$h" route add default via 10.1.0.1
    ip -n "$rh" route add default via 10.2.0.1
    for ns in "$m1" "$m2" "$rgw"; do
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.default.rp_filter=0
    done
    if [[ $1 == plain ]]; then
        ip -n "$rgw" route add 10.1.0.0/24 via 192.0.2.1
        ip -n "$m1" route add 10.2.0.0/24 via 192.0.2.10
        ip -n "$m2" route add 10.2.0.0/24 via 192.0.2.10
    fi
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

reachable() { ip netns exec "$h" ping -c 1 -W 1 10.2.0.10; }
# (No `| grep -q` under pipefail: grep exiting early can fail the pipeline with SIGPIPE.)
has_addr() { [[ $(ip -n "$1" -o addr show) == *" $2/"* ]]; }
lacks_addr() { ! has_addr "$@"; }
now_ns() { date +%s%N; }

# kill_box NS PID...: what a crashed box looks like to the network: the processes die with
# SIGKILL (in the order given) and every link of the box goes down at the same moment. The
# killed daemon leaves its VIPs configured; with the links down nobody can reach them.
kill_box() {
    local ns=$1; shift
    kill -9 "$@" 2>/dev/null || true
    ip -n "$ns" link set lan0 down
    ip -n "$ns" link set wan0 down
    ip -n "$ns" link set sync0 down
}

# ---------------------------------------------------------------- probe stream
# probe_run CASE RUN PRE POST ACTION...: starts the 1 ms probe stream LAN host -> remote host,
# runs ACTION after PRE seconds, keeps streaming POST more seconds, records the gap.
probe_run() {
    local case=$1 run=$2 pre=$3 post=$4; shift 4
    local total out="$work/$case-$run"
    total=$(awk -v a="$pre" -v b="$post" 'BEGIN{print a + b}')
    ip netns exec "$rh" "$rbench" probe-recv --listen 10.2.0.10:9000 \
        --duration "$(awk -v t="$total" 'BEGIN{print t + 5}')" --json "$out-recv.json" \
        >/dev/null 2>"$out-recv.err" &
    local recv_pid=$!
    wait_for 5 "the probe receiver" ip netns exec "$rh" sh -c 'ss -lun | grep -q "10.2.0.10:9000 "'
    ip netns exec "$h" "$rbench" probe-send --to 10.2.0.10:9000 --duration "$total" \
        >"$out-send.json" 2>"$out-send.err" &
    local send_pid=$!
    sleep "$pre"
    local action_ns
    action_ns=$(now_ns)
    "$@"
    echo "$action_ns" >"$out-action-ns"
    wait "$send_pid" || true
    wait "$recv_pid" || true
    local gap=NA lost=NA reord=NA pause=NA
    if [[ -s $out-recv.json ]]; then
        gap=$(jq 'if .unique > 0 then .gap_ms else "NA" end' "$out-recv.json" | tr -d '"')
        lost=$(jq '.lost' "$out-recv.json")
        reord=$(jq '.reordered' "$out-recv.json")
        local resumed
        resumed=$(jq '.resumed' "$out-recv.json")
        if [[ $resumed != true ]]; then
            echo "   $case run $run: the stream did not come back within ${post}s" >&2
            gap=NA
            keep=1
        fi
    else
        keep=1
    fi
    [[ -s $out-send.json ]] && pause=$(jq '.max_send_interval_ms' "$out-send.json")
    printf '%s\tgap_ms\t%s\t%s\n' "$case" "$run" "$gap" >>"$samples"
    printf '%s\tlost\t%s\t%s\n' "$case" "$run" "$lost" >>"$samples"
    printf '%s\treordered\t%s\t%s\n' "$case" "$run" "$reord" >>"$samples"
    printf '%s\tmax_send_interval_ms\t%s\t%s\n' "$case" "$run" "$pause" >>"$samples"
    printf '   %-18s run %s: gap %.1f ms, %s probes lost, %s reordered (sender longest pause %.1f ms)\n' \
        "$case" "$run" "${gap/NA/nan}" "$lost" "$reord" "${pause/NA/nan}"
}

# ---------------------------------------------------------------- keepalived
keepalived_conf() { # keepalived_conf NAME PRIORITY ADVERT_INT
    local version=2
    [[ $3 != 1 ]] && version=3 # fractional advert_int needs VRRPv3
    cat <<EOF
global_defs {
    router_id $1
    vrrp_version $version
    script_user root
    enable_script_security
}
vrrp_instance bench {
    state BACKUP
    interface lan0
    virtual_router_id 51
    priority $2
    advert_int $3
    virtual_ipaddress {
        10.1.0.1/24 dev lan0
        192.0.2.1/24 dev wan0
    }
}
EOF
}

declare -A ka_pid
start_keepalived() { # start_keepalived NS NAME PRIORITY ADVERT_INT
    local ns=$1 name=$2
    keepalived_conf "$name" "$3" "$4" >"$work/keepalived-$name.conf"
    ip netns exec "$ns" keepalived --vrrp --dont-fork --log-console --log-detail \
        --use-file "$work/keepalived-$name.conf" --pid "$work/keepalived-$name.pid" \
        --vrrp_pid "$work/keepalived-$name-vrrp.pid" \
        --checkers_pid "$work/keepalived-$name-checkers.pid" \
        >>"$work/keepalived-$name.log" 2>&1 &
    ka_pid[$name]=$!
    disown "${ka_pid[$name]}" # it gets killed on purpose: no "Killed" line from bash
}

# The keepalived parent and its VRRP child, child first: the child of a parent that dies first
# gets SIGTERM (PR_SET_PDEATHSIG) and leaves gracefully with a priority-0 advert, which would be
# a switchover, not a crash.
keepalived_pids() { # keepalived_pids NAME
    local parent=${ka_pid[$1]}
    pgrep -P "$parent" || true
    echo "$parent"
}

kill_keepalived_m1() {
    # shellcheck disable=SC2046
    kill_box "$m1" $(keepalived_pids m1)
}

case_keepalived() { # case_keepalived CASE ADVERT_INT POST_SECONDS
    local case=$1 advert=$2 post=$3 run
    echo "==> $case: keepalived VRRP, advert_int $advert, $runs runs"
    for run in $(seq 1 "$runs"); do
        setup plain
        start_keepalived "$m1" m1 150 "$advert"
        start_keepalived "$m2" m2 100 "$advert"
        if ! wait_for 30 "member 1 becoming VRRP master" has_addr "$m1" 10.1.0.1 ||
            ! wait_for 10 "the LAN host reaching the remote host" reachable ||
            ! lacks_addr "$m2" 10.1.0.1; then
            echo "   $case run $run: setup failed (logs in $work)" >&2
            printf '%s\tgap_ms\t%s\tNA\n' "$case" "$run" >>"$samples"
            keep=1
            continue
        fi
        probe_run "$case" "$run" 1 "$post" kill_keepalived_m1
        has_addr "$m2" 10.1.0.1 || echo "   warning: member 2 never took the VIP" >&2
    done
}

# ---------------------------------------------------------------- connections
# start_conns TAG: echo server on the remote host, conn-open on the LAN host (in the background,
# its pid in conn_pid); returns once the connections are open (ready file written).
conn_pid=""
start_conns() {
    local tag=$1
    ip netns exec "$rh" sh -c "ulimit -n \$(ulimit -Hn); exec '$rbench' conn-serve --listen 10.2.0.10:7000" \
        >"$work/conn-serve-$tag.log" 2>&1 &
    wait_for 5 "the connection echo server" ip netns exec "$rh" sh -c 'ss -ltn | grep -q "10.2.0.10:7000 "'
    rm -f "$work/conns-$tag-go" "$work/conns-$tag-ready.json"
    ip netns exec "$h" sh -c "ulimit -n \$(ulimit -Hn); exec '$rbench' conn-open --connect 10.2.0.10:7000 \
        --count $conns --ready '$work/conns-$tag-ready.json' --check-when '$work/conns-$tag-go' \
        --hold 300 --json '$work/conns-$tag.json'" >/dev/null 2>"$work/conns-$tag.err" &
    conn_pid=$!
}

# check_conns TAG: tells conn-open to check every connection, waits for its result and puts a
# summary in conn_result (not to be called in a subshell: it waits for conn-open).
conn_result="{}"
check_conns() {
    touch "$work/conns-$1-go"
    wait "$conn_pid" || true
    if ! conn_result=$(jq -c \
        '{opened: .open.opened, ok: .check_ok, failed: .check_failed, errors: .check_errors}' \
        "$work/conns-$1.json" 2>/dev/null); then
        conn_result="{}"
        echo "   conn-open failed: $(cat "$work/conns-$1.err")" >&2
        keep=1
    fi
}

link_bytes() { # link_bytes NS IFACE tx|rx
    ip netns exec "$1" cat "/sys/class/net/$2/statistics/${3}_bytes"
}

# sync_measure CASE RUN TAG COUNT-COMMAND...: with connections being opened (start_conns TAG),
# polls COUNT-COMMAND (prints the number of connections the backup holds) until it reaches
# $conns, then records the sync figures; tx_before/rx_before are member 1's sync0 counters from
# before.
sync_measure() {
    local case=$1 run=$2 tag=$3; shift 3
    local count=0 done_ns="" deadline=$((SECONDS + 120))
    while [[ $SECONDS -lt $deadline ]]; do
        count=$("$@" 2>/dev/null || echo 0)
        if [[ ${count:-0} -ge $conns ]]; then
            done_ns=$(now_ns)
            break
        fi
        sleep 0.05
    done
    wait_for 60 "conn-open finishing the opening" test -s "$work/conns-$tag-ready.json"
    sleep 1 # acks and late retransmissions
    local tx rx
    tx=$(($(link_bytes "$m1" sync0 tx) - tx_before))
    rx=$(($(link_bytes "$m1" sync0 rx) - rx_before))
    local r="$work/conns-$tag-ready.json" opened start end
    opened=$(jq '.opened' "$r")
    start=$(jq '.open_start_unix_ns' "$r")
    end=$(jq '.open_end_unix_ns' "$r")
    local txc rxc
    txc=$(awk -v b="$tx" -v n="$opened" 'BEGIN{printf "%.1f", (n > 0 ? b / n : 0)}')
    rxc=$(awk -v b="$rx" -v n="$opened" 'BEGIN{printf "%.1f", (n > 0 ? b / n : 0)}')
    local sync_s=NA after_s=NA
    if [[ -n $done_ns ]]; then
        sync_s=$(awk -v a="$done_ns" -v b="$start" 'BEGIN{printf "%.3f", (a - b) / 1e9}')
        after_s=$(awk -v a="$done_ns" -v b="$end" 'BEGIN{printf "%.3f", (a - b) / 1e9}')
    else
        echo "   $case run $run: the backup holds only $count of $conns connections" >&2
        keep=1
    fi
    {
        printf '%s\tconns\t%s\t%s\n' "$case" "$run" "$opened"
        printf '%s\topen_s\t%s\t%s\n' "$case" "$run" "$(jq '.open_seconds' "$r")"
        printf '%s\tsync_s\t%s\t%s\n' "$case" "$run" "$sync_s"
        printf '%s\tsync_after_open_s\t%s\t%s\n' "$case" "$run" "$after_s"
        printf '%s\tbackup_entries\t%s\t%s\n' "$case" "$run" "$count"
        printf '%s\ttx_bytes_per_conn\t%s\t%s\n' "$case" "$run" "$txc"
        printf '%s\trx_bytes_per_conn\t%s\t%s\n' "$case" "$run" "$rxc"
    } >>"$samples"
    printf '   %-18s run %s: %s opened in %s s; backup holds %s after %s s (%s s after the last); sync link %s B/conn sent, %s B/conn received\n' \
        "$case" "$run" "$opened" "$(jq '.open_seconds' "$r")" "$count" "$sync_s" "$after_s" \
        "$txc" "$rxc"
}

# ---------------------------------------------------------------- conntrackd
conntrackd_conf() { # conntrackd_conf NAME LOCAL PEER
    cat <<EOF
Sync {
    Mode FTFW {
    }
    UDP {
        IPv4_address $2
        IPv4_Destination_Address $3
        Port 3780
        Interface sync0
        SndSocketBuffer 1249280
        RcvSocketBuffer 1249280
        Checksum on
    }
}
General {
    HashSize 32768
    HashLimit 262144
    LogFile $work/conntrackd-$1.log
    Syslog off
    LockFile $work/conntrackd-$1.lock
    UNIX {
        Path $work/conntrackd-$1.ctl
    }
    NetlinkBufferSize 2097152
    NetlinkBufferSizeMaxGrowth 8388608
    Filter From Userspace {
        Protocol Accept {
            TCP
        }
        Address Ignore {
            IPv4_address 127.0.0.1
            IPv4_address 172.16.0.1
            IPv4_address 172.16.0.2
        }
    }
}
EOF
}

# Connections in member 2's external cache (what it learnt from member 1).
ctd_external_m2() {
    ip netns exec "$m2" conntrackd -C "$work/conntrackd-m2.conf" -s 2>/dev/null |
        awk '/cache external/{f=1} f && /current active connections/{print $NF; exit}'
}

# TCP entries in member 2's kernel conntrack table.
ct_kernel_m2() { ip netns exec "$m2" conntrack -C 2>/dev/null || echo 0; }
ct_kernel_m2_full() { [[ $(($(ct_kernel_m2) - ct_base)) -ge $conns ]]; }

case_conntrackd() {
    local run
    echo "==> conntrackd: FT-FW over the sync link, $conns TCP connections, $runs runs"
    for run in $(seq 1 "$runs"); do
        setup plain
        ip -n "$m1" addr add 10.1.0.1/24 dev lan0
        ip -n "$m1" addr add 192.0.2.1/24 dev wan0
        # A rule that uses conntrack, so that the kernel tracks connections in these namespaces.
        local ns
        for ns in "$m1" "$m2"; do
            ip netns exec "$ns" nft -f - <<'EOF'
table inet bench {
    chain forward {
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
    }
}
EOF
        done
        conntrackd_conf m1 172.16.0.1 172.16.0.2 >"$work/conntrackd-m1.conf"
        conntrackd_conf m2 172.16.0.2 172.16.0.1 >"$work/conntrackd-m2.conf"
        rm -f "$work"/conntrackd-m?.lock
        ip netns exec "$m1" conntrackd -C "$work/conntrackd-m1.conf" >>"$work/conntrackd-m1.out" 2>&1 &
        ip netns exec "$m2" conntrackd -C "$work/conntrackd-m2.conf" >>"$work/conntrackd-m2.out" 2>&1 &
        if ! wait_for 10 "conntrackd's control sockets" \
            test -S "$work/conntrackd-m1.ctl" -a -S "$work/conntrackd-m2.ctl" ||
            ! wait_for 10 "the LAN host reaching the remote host" reachable; then
            echo "   conntrackd run $run: setup failed (logs in $work)" >&2
            printf 'conntrackd\tsync_s\t%s\tNA\n' "$run" >>"$samples"
            keep=1
            continue
        fi
        sleep 0.5 # the ping's ICMP entry is not synced (TCP only); let things settle
        tx_before=$(link_bytes "$m1" sync0 tx)
        rx_before=$(link_bytes "$m1" sync0 rx)
        start_conns "conntrackd-$run"
        sync_measure conntrackd "$run" "conntrackd-$run" ctd_external_m2
        # What primary-backup.sh runs at failover: commit the external cache to the kernel.
        local t0 t1 kcount
        ct_base=$(ct_kernel_m2) # the sync link's own UDP flow and such
        t0=$(now_ns)
        ip netns exec "$m2" conntrackd -C "$work/conntrackd-m2.conf" -c >>"$work/conntrackd-m2.out" 2>&1 || true
        wait_for 60 "the commit on member 2" ct_kernel_m2_full || true
        t1=$(now_ns)
        kcount=$(($(ct_kernel_m2) - ct_base))
        local commit_s=NA
        [[ $kcount -ge $conns ]] && commit_s=$(awk -v a="$t1" -v b="$t0" 'BEGIN{printf "%.3f", (a - b) / 1e9}')
        printf 'conntrackd\tcommit_s\t%s\t%s\n' "$run" "$commit_s" >>"$samples"
        echo "   commit on member 2 (conntrackd -c): $commit_s s, $kcount entries added to its kernel table"
        check_conns "conntrackd-$run"
        echo "   connections checked after: $conn_result"
    done
}

# ---------------------------------------------------------------- Rampart
# Two members with a [cluster] section (docs/configuration.md, "Cluster"), a remote Rampart
# gateway. Behind --cases rampart-kill,rampart-switchover.
rampart_member_conf() { # rampart_member_conf ID
    cat <<EOF
[gateway]
name = "member$1"
status_socket = "$work/member$1.sock"
ike_port = 500
nat_t_port = 4500

[tunnel]
device = "rpc0"
mtu = 1400

[local]
domain = ["10.1.0.0/24"]

[cluster]
name = "bench"
member_id = $1
mode = "high-availability"
primary = 1
switch_back = false
heartbeat_interval = "100ms"
dead_after = 3
monitor = ["lan0", "wan0"]
secret = "rampart cluster benchmark secret, not a secret"

[[cluster.member]]
id = 1
address = "172.16.0.1"

[[cluster.member]]
id = 2
address = "172.16.0.2"

[[cluster.vip]]
interface = "lan0"
address = "10.1.0.1/24"

[[cluster.vip]]
interface = "wan0"
address = "192.0.2.1/24"

[[peer]]
name = "remote"
local_address = "192.0.2.1"
remote_address = "192.0.2.10"
local_id = "192.0.2.1"
remote_id = "192.0.2.10"
psk = "rampart benchmark key, not a secret"
remote_domain = ["10.2.0.0/24"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "none"
encapsulation = "force"
EOF
}

rampart_remote_conf() {
    cat <<EOF
[gateway]
name = "remote"
status_socket = "$work/remote.sock"
ike_port = 500
nat_t_port = 4500

[tunnel]
device = "rpc0"
mtu = 1400

[local]
domain = ["10.2.0.0/24"]

[[peer]]
name = "cluster"
local_address = "192.0.2.10"
remote_address = "192.0.2.1"
local_id = "192.0.2.10"
remote_id = "192.0.2.1"
psk = "rampart benchmark key, not a secret"
remote_domain = ["10.1.0.0/24"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "always"
encapsulation = "force"
EOF
}

declare -A rp_pid
start_rampart_member() { # start_rampart_member ID NS
    rampart_member_conf "$1" >"$work/member$1.toml"
    "$rampart" check-config "$work/member$1.toml" >"$work/member$1-check.log" 2>&1 ||
        { echo "   member $1: check-config failed: $(cat "$work/member$1-check.log")" >&2; return 1; }
    ip netns exec "$2" "$rampart" gateway run --config "$work/member$1.toml" \
        >>"$work/rampart-member$1.log" 2>&1 &
    rp_pid[$1]=$!
    disown "${rp_pid[$1]}"
}

cluster_state() { # cluster_state ID: this member's state (init, syncing, standby, active, down)
    "$rampart" cluster status --socket "$work/member$1.sock" --json 2>/dev/null | jq -r '.state'
}
is_state() { [[ $(cluster_state "$1") == "$2" ]]; }

# Connections in member 2's connection table (applied from member 1's delta stream). Not
# `cluster sync-stats .records_applied`: a connection is several records (new, then its state
# changes), so that count reaches $conns before member 2 holds them all.
rampart_replicated_m2() {
    "$rampart" conn stats --socket "$work/member2.sock" --json 2>/dev/null |
        jq -r '(.active // .inspect.active // .stats.active) | numbers'
}

start_rampart_cluster() {
    start_rampart_member 1 "$m1" || return 1
    wait_for 10 "member 1 becoming active" is_state 1 active || return 1
    start_rampart_member 2 "$m2" || return 1
    wait_for 30 "member 2 becoming standby (full sync)" is_state 2 standby || return 1
    rampart_remote_conf >"$work/remote.toml"
    ip netns exec "$rgw" "$rampart" gateway run --config "$work/remote.toml" \
        >>"$work/rampart-remote.log" 2>&1 &
    wait_for 30 "the tunnel to the cluster" reachable
}

kill_rampart_m1() { kill_box "$m1" "${rp_pid[1]}"; }
switchover_rampart() {
    "$rampart" cluster switchover --socket "$work/member1.sock" >>"$work/switchover.log" 2>&1
}

case_rampart() { # case_rampart CASE
    local case=$1 run action
    case $case in
        rampart-kill) action=kill_rampart_m1 ;;
        rampart-switchover) action=switchover_rampart ;;
    esac
    echo "==> $case: two Rampart members, $conns connections, $runs runs"
    for run in $(seq 1 "$runs"); do
        setup rampart
        if ! start_rampart_cluster; then
            echo "   $case run $run: the cluster did not come up (logs in $work)" >&2
            printf '%s\tgap_ms\t%s\tNA\n' "$case" "$run" >>"$samples"
            keep=1
            continue
        fi
        # The sync figures: member 2's table may already hold a few connections (the pings).
        local base
        sleep 0.5 # the reachability pings' connections reach member 2 first
        base=$(rampart_replicated_m2 || echo 0)
        tx_before=$(link_bytes "$m1" sync0 tx)
        rx_before=$(link_bytes "$m1" sync0 rx)
        start_conns "$case-$run"
        rampart_m2_new() { echo $(($(rampart_replicated_m2 || echo 0) - base)); }
        sync_measure rampart-sync "$run" "$case-$run" rampart_m2_new
        # What member 1's sync engine sent: records (a connection is several: new, then its
        # state changes), datagrams and socket payload bytes, per connection opened.
        "$rampart" cluster sync-stats --socket "$work/member1.sock" --json \
            >"$work/sync-stats-$case-$run.json" 2>/dev/null || true
        local opened_n
        opened_n=$(jq '.opened' "$work/conns-$case-$run-ready.json" 2>/dev/null || echo 0)
        if [[ -s $work/sync-stats-$case-$run.json && ${opened_n:-0} -gt 0 ]]; then
            local metric field
            for metric in records_sent:records_per_conn datagrams_sent:datagrams_per_conn \
                bytes_sent:payload_bytes_per_conn; do
                field=${metric%%:*}
                printf 'rampart-sync\t%s\t%s\t%s\n' "${metric#*:}" "$run" \
                    "$(jq -r --argjson n "$opened_n" ".$field / \$n" "$work/sync-stats-$case-$run.json")" \
                    >>"$samples"
            done
        fi
        probe_run "$case" "$run" 1 3 "$action"
        check_conns "$case-$run"
        echo "   connections after the failover: $conn_result"
        printf '%s\tconns_opened\t%s\t%s\n' "$case" "$run" "$(jq -r '.opened // "NA"' <<<"$conn_result")" >>"$samples"
        printf '%s\tconns_lost\t%s\t%s\n' "$case" "$run" "$(jq -r '.failed // "NA"' <<<"$conn_result")" >>"$samples"
    done
}

# ---------------------------------------------------------------- Load Sharing
# Topology (fresh for every configuration):
#
#   host 10.1.0.10 -- rin (10.1.0.1 | in0 10.255.1.1) --[br-in]-- member i in0 10.255.1.1i
#   member i out0 198.51.100.1i --[br-out]-- rout (out0 198.51.100.1 | wan0 203.0.113.1)
#   rout -- peer (wan0 203.0.113.2 | lan0 10.2.0.1) -- remote host 10.2.0.10
#   sync: member i sync0 172.31.0.i on br-sync; VIP 192.0.2.1 on every member (its TUN device)
#
# rin routes 10.2.0.0/24 and rout 192.0.2.1 with one static multipath route over the members
# (fib_multipath_hash_policy 1, a different hash seed each: the two directions of a connection
# hash independently, so its SYN and SYN-ACK often cross different members).
lm_ns() { local v="lm$1"; echo "${!v}"; }

setup_ls() { # setup_ls MEMBERS
    local n=$1 i ns br
    teardown
    for ns in "${ls_ns[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0
        ip netns exec "$ns" sysctl -qw net.ipv4.conf.default.rp_filter=0
        ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    done
    for br in br-in br-out br-sync; do
        ip -n "$lsw" link add "$br" type bridge
        ip -n "$lsw" link set "$br" up
    done
    lslink() { # lslink NS IFNAME PORT BRIDGE ADDR
        ip link add "$2" netns "$1" type veth peer name "$3" netns "$lsw"
        ip -n "$lsw" link set "$3" master "$4" up
        ip -n "$1" addr add "$5" dev "$2"
        ip -n "$1" link set "$2" up
    }
    pair() { # pair NS1 IF1 ADDR1 NS2 IF2 ADDR2
        ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
        ip -n "$1" addr add "$3" dev "$2"
        ip -n "$4" addr add "$6" dev "$5"
        ip -n "$1" link set "$2" up
        ip -n "$4" link set "$5" up
    }
    local in_hops=() out_hops=()
    for i in $(seq 1 "$n"); do
        ns=$(lm_ns "$i")
        lslink "$ns" in0 "m$i-in" br-in "10.255.1.1$i/24"
        lslink "$ns" out0 "m$i-out" br-out "198.51.100.1$i/24"
        lslink "$ns" sync0 "m$i-sync" br-sync "172.31.0.$i/24"
        ip -n "$ns" route add 203.0.113.0/24 via 198.51.100.1
        ip -n "$ns" route add 10.1.0.0/24 via 10.255.1.1
        in_hops+=(nexthop via "10.255.1.1$i")
        out_hops+=(nexthop via "198.51.100.1$i")
    done
    lslink "$lrin" in0 rin-in br-in 10.255.1.1/24
    lslink "$lrout" out0 rout-out br-out 198.51.100.1/24
    pair "$lrin" h0 10.1.0.1/24 "$lh" eth0 10.1.0.10/24
    pair "$lrout" wan0 203.0.113.1/24 "$lpeer" wan0 203.0.113.2/24
    pair "$lpeer" lan0 10.2.0.1/24 "$lrh" eth0 10.2.0.10/24
    ip -n "$lh" route add default via 10.1.0.1
    ip -n "$lrh" route add default via 10.2.0.1
    ip -n "$lpeer" route add default via 203.0.113.1
    ip -n "$lrin" route add 10.2.0.0/24 "${in_hops[@]}"
    ip -n "$lrout" route add 192.0.2.1/32 "${out_hops[@]}"
    ip netns exec "$lrin" sysctl -qw net.ipv4.fib_multipath_hash_policy=1
    ip netns exec "$lrout" sysctl -qw net.ipv4.fib_multipath_hash_policy=1
    ip netns exec "$lrin" sysctl -qw net.ipv4.fib_multipath_hash_seed=1111
    ip netns exec "$lrout" sysctl -qw net.ipv4.fib_multipath_hash_seed=2222
    for ns in "$lh" "$lrh"; do
        ip netns exec "$ns" sysctl -qw net.core.somaxconn=16384
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_max_syn_backlog=16384
    done
    # Runs follow each other within TIME_WAIT: room for 5 x 5000 connections from one address
    # (with the default range, runs 4 and 5 slowed to ~1000/s searching for a free port).
    ip netns exec "$lh" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
    ip netns exec "$lh" sysctl -qw net.ipv4.tcp_tw_reuse=1
}

# ls_member_conf ID MEMBERS WAN: member ID of a routed Load Sharing cluster of MEMBERS members
# (MEMBERS 1: a gateway alone, no [cluster]); WAN 1: timers for a 100 ms round trip with loss.
ls_member_conf() {
    local id=$1 n=$2 wan=$3 j
    cat <<EOF
[gateway]
name = "ls$id"
status_socket = "$work/ls$id.sock"
ike_port = 500
nat_t_port = 4500

[tunnel]
device = "rpl0"
mtu = 1400

[local]
domain = ["10.1.0.0/24"]
EOF
    if [[ $n -gt 1 ]]; then
        local hold=250ms hb=100ms dead=3
        [[ $wan -eq 1 ]] && hold=400ms hb=200ms dead=5
        cat <<EOF

[cluster]
name = "benchls"
member_id = $id
mode = "load-sharing"
distribution = "routed"
flush_ack = true
hold_timeout = "$hold"
update_timeout = "$hold"
heartbeat_interval = "$hb"
dead_after = $dead
monitor = ["in0", "out0"]
secret = "rampart load sharing benchmark secret, not a secret"
EOF
        for j in $(seq 1 "$n"); do
            printf '\n[[cluster.member]]\nid = %s\naddress = "172.31.0.%s"\n' "$j" "$j"
        done
        printf '\n[[cluster.vip]]\naddress = "192.0.2.1"\n'
    fi
    cat <<EOF

[[peer]]
name = "remote"
local_address = "192.0.2.1"
remote_address = "203.0.113.2"
local_id = "192.0.2.1"
remote_id = "203.0.113.2"
psk = "rampart benchmark key, not a secret"
remote_domain = ["10.2.0.0/24"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "none"
EOF
}

ls_remote_conf() {
    cat <<EOF
[gateway]
name = "lsremote"
status_socket = "$work/lsremote.sock"
ike_port = 500
nat_t_port = 4500

[tunnel]
device = "rpl0"
mtu = 1400

[local]
domain = ["10.2.0.0/24"]

[[peer]]
name = "cluster"
local_address = "203.0.113.2"
remote_address = "192.0.2.1"
local_id = "203.0.113.2"
remote_id = "192.0.2.1"
psk = "rampart benchmark key, not a secret"
remote_domain = ["10.1.0.0/24"]
ike_proposals = ["aes256gcm16-prfsha256-x25519"]
esp_proposals = ["aes256gcm16"]
start_action = "always"
EOF
}

ls_reachable() { ip netns exec "$lh" ping -c 1 -W 1 10.2.0.10; }

# Members up (this one included) as member ID sees them.
ls_members_up() {
    "$rampart" cluster status --socket "$work/ls$1.sock" --json 2>/dev/null |
        jq -r "$ls_jq_members_up" 2>/dev/null
}
ls_all_up() { # ls_all_up MEMBERS: every member sees every member up
    local i
    for i in $(seq 1 "$1"); do
        [[ $(ls_members_up "$i") == "$1" ]] || return 1
    done
}

# start_ls MEMBERS WAN: the members, then the remote gateway; returns once the LAN host reaches
# the remote host through the tunnel.
start_ls() {
    local n=$1 wan=$2 i
    if [[ $n -eq 1 ]]; then
        ip -n "$lm1" addr add 192.0.2.1/32 dev lo
    fi
    for i in $(seq 1 "$n"); do
        ls_member_conf "$i" "$n" "$wan" >"$work/ls$i.toml"
        "$rampart" check-config "$work/ls$i.toml" >"$work/ls$i-check.log" 2>&1 ||
            { echo "   member $i: check-config failed: $(cat "$work/ls$i-check.log")" >&2; return 1; }
        ip netns exec "$(lm_ns "$i")" "$rampart" gateway run --config "$work/ls$i.toml" \
            >>"$work/rampart-ls$i.log" 2>&1 &
        disown $!
    done
    if [[ $n -gt 1 ]]; then
        wait_for 60 "every member up and in sync" ls_all_up "$n" || return 1
    fi
    if [[ $wan -eq 1 ]]; then
        local j
        for j in $(seq 1 "$n"); do
            ip netns exec "$(lm_ns "$j")" tc qdisc replace dev sync0 root netem delay 50ms loss 5%
        done
    fi
    ls_remote_conf >"$work/lsremote.toml"
    ip netns exec "$lpeer" "$rampart" gateway run --config "$work/lsremote.toml" \
        >>"$work/rampart-lsremote.log" 2>&1 &
    disown $!
    wait_for 60 "the tunnel to the cluster" ls_reachable
}

machine_load() { cut -d' ' -f1-3 /proc/loadavg; }

# Whether tc netem works here (a throwaway namespace).
netem_works() {
    local ns="$prefix-netem" ok=1
    ip netns add "$ns" && ip -n "$ns" link set lo up || return 1
    ip netns exec "$ns" tc qdisc add dev lo root netem delay 1ms 2>/dev/null || ok=0
    ip netns del "$ns"
    [[ $ok -eq 1 ]]
}

# ls_open CASE RUN COUNT CONCURRENCY: conn-open from the LAN host through the cluster; records
# connections per second and the load average.
ls_open() {
    local case=$1 run=$2 count=$3 conc=$4 tag="$1-$2"
    ip netns exec "$lrh" sh -c "ulimit -n \$(ulimit -Hn); exec '$rbench' conn-serve --listen 10.2.0.10:7000" \
        >"$work/ls-serve-$tag.log" 2>&1 &
    local serve_pid=$!
    wait_for 5 "the connection echo server" ip netns exec "$lrh" sh -c 'ss -ltn | grep -q "10.2.0.10:7000 "'
    rm -f "$work/ls-$tag-go"
    ip netns exec "$lh" sh -c "ulimit -n \$(ulimit -Hn); exec '$rbench' conn-open --connect 10.2.0.10:7000 \
        --count $count --concurrency $conc --ready '$work/ls-$tag-ready.json' \
        --check-when '$work/ls-$tag-go' --hold 120 --json '$work/ls-$tag.json'" \
        >/dev/null 2>"$work/ls-$tag.err" &
    local open_pid=$!
    wait_for 300 "conn-open $tag" test -s "$work/ls-$tag-ready.json" || true
    local load
    load=$(machine_load)
    touch "$work/ls-$tag-go"
    wait "$open_pid" || true
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    local opened secs cps=NA failed=NA
    opened=$(jq '.open.opened' "$work/ls-$tag.json" 2>/dev/null || echo 0)
    secs=$(jq '.open.open_seconds' "$work/ls-$tag.json" 2>/dev/null || echo 0)
    failed=$(jq '.check_failed' "$work/ls-$tag.json" 2>/dev/null || echo NA)
    if [[ ${opened:-0} -gt 0 ]]; then
        cps=$(awk -v n="$opened" -v s="$secs" 'BEGIN{printf "%.0f", n / s}')
    else
        keep=1
    fi
    {
        printf '%s\tconns_per_s\t%s\t%s\n' "$case" "$run" "$cps"
        printf '%s\topened\t%s\t%s\n' "$case" "$run" "$opened"
        printf '%s\tlost\t%s\t%s\n' "$case" "$run" "$failed"
        printf '%s\tload\t%s\t%s\n' "$case" "$run" "${load// /,}"
    } >>"$ls_samples"
    printf '   %-10s run %s: %s of %s opened in %s s: %s conn/s (%s not answering after), load %s\n' \
        "$case" "$run" "$opened" "$count" "$secs" "$cps" "$failed" "$load"
}

# Members up and in sync as member ID sees them (its ownership map).
ls_jq_members_up='.load_sharing.ownership.members | map(select(.up)) | length'

# jq over several `rampart cluster sync-stats --json` documents (-s): quantile $q (0..1) of the
# Flush-and-Ack hold times of all of them together, in microseconds: the upper bound of the
# bucket holding it, capped by the largest hold seen (HoldHistogram::quantile_us of the sum of
# the members' histograms); "NA" when nothing was held.
ls_jq_quantile='
  [25, 50, 100, 200, 350, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 50000,
   100000, 150000, 200000, 500000, 1000000] as $bounds
  | [.[] | .flush_ack.hold_time | select(. != null)] as $h
  | ($h | map(.count) | add // 0) as $count
  | ($h | map(.max_us) | max // 0) as $max
  | [range(0; 21) as $i | ($h | map(.buckets[$i]) | add)] as $b
  | if $count == 0 then "NA" else
      ([(($q * $count) | ceil), 1] | max) as $rank
      | reduce range(0; 21) as $i ({seen: 0, res: null};
          if .res != null then . else
            .seen += $b[$i]
            | if .seen >= $rank then .res = ([($bounds[$i] // $max), $max] | min) else . end
          end)
      | .res
    end'

# ls_holds CASE MEMBERS: every member's sync-stats; records the hold time p50/p99 over all
# members' holds together, the holds and the hold timeouts (summed).
ls_holds() {
    local case=$1 n=$2 i files=()
    for i in $(seq 1 "$n"); do
        local st="$work/ls-syncstats-$case-m$i.json"
        if "$rampart" cluster sync-stats --socket "$work/ls$i.sock" --json >"$st" 2>/dev/null; then
            files+=("$st")
        fi
    done
    [[ ${#files[@]} -gt 0 ]] || { keep=1; return 0; }
    local p50 p99 held timeouts
    p50=$(jq -rs --argjson q 0.5 "$ls_jq_quantile" "${files[@]}" 2>/dev/null || echo NA)
    p99=$(jq -rs --argjson q 0.99 "$ls_jq_quantile" "${files[@]}" 2>/dev/null || echo NA)
    held=$(jq -rs 'map(.flush_ack.held // 0) | add' "${files[@]}" 2>/dev/null || echo NA)
    timeouts=$(jq -rs 'map(.flush_ack.timeouts // 0) | add' "${files[@]}" 2>/dev/null || echo NA)
    {
        printf '%s\thold_p50_us\t1\t%s\n' "$case" "$p50"
        printf '%s\thold_p99_us\t1\t%s\n' "$case" "$p99"
        printf '%s\theld\t1\t%s\n' "$case" "$held"
        printf '%s\ttimeouts\t1\t%s\n' "$case" "$timeouts"
    } >>"$ls_samples"
    printf '   %-10s Flush-and-Ack over %s members: %s holds, p50 %s us, p99 %s us, %s timeouts\n' \
        "$case" "$n" "$held" "$p50" "$p99" "$timeouts"
}

case_ls_cps() {
    local n run
    echo "==> ls-cps: connections/s, 1 member alone, 2 and 3 members with Flush-and-Ack, $runs runs of $ls_conns"
    for n in 1 2 3; do
        setup_ls "$n"
        if ! start_ls "$n" 0; then
            echo "   ls-cps-$n: the cluster did not come up (logs in $work)" >&2
            keep=1
            continue
        fi
        for run in $(seq 1 "$runs"); do
            ls_open "cps-$n" "$run" "$ls_conns" 256
        done
        if [[ $n -gt 1 ]]; then ls_holds "cps-$n" "$n"; fi
    done
}

case_ls_hold() {
    local wan case count
    echo "==> ls-hold: Flush-and-Ack hold time, 3 members, 16 connects in flight, LAN and 100 ms RTT"
    for wan in 0 1; do
        case=hold-lan count=3000
        [[ $wan -eq 1 ]] && case=hold-wan count=600
        if [[ $wan -eq 1 ]] && ! netem_works; then
            echo "   ls-hold-wan: not run: this kernel has no sch_netem (tc netem); tests/netns's"
            echo "   rampart_load_sharing WAN case measures it with its delay hub instead"
            continue
        fi
        setup_ls 3
        if ! start_ls 3 "$wan"; then
            echo "   ls-$case: the cluster did not come up (logs in $work)" >&2
            keep=1
            continue
        fi
        ls_open "$case" 1 "$count" 16
        ls_holds "$case" 3
    done
}

# The median (min-max) of the samples of CASE METRIC (over runs or members), NA when none.
ls_stat() {
    awk -F'\t' -v c="$1" -v m="$2" '$1 == c && $2 == m && $4 != "NA" && $4 != "null" {print $4}' "$ls_samples" |
        sort -g | awk '{v[NR] = $1} END {
            if (NR == 0) { print "NA"; exit }
            med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            if (NR == 1) printf "%g", med; else printf "%g (%g-%g)", med, v[1], v[NR] }'
}
ls_loads() { # the load averages of CASE's runs
    awk -F'\t' -v c="$1" '$1 == c && $2 == "load" {gsub(",", " ", $4); printf "%s%s", sep, $4; sep = "; "}' "$ls_samples"
}

write_ls_results() {
    local out=bench/results/cluster-ls.md cpu cores
    cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    cores=$(nproc)
    {
        echo "## Load Sharing (issue 14)"
        echo
        echo "\`bench/cluster.sh --cases ${cases} --runs ${runs}\` on $(date -u '+%Y-%m-%d %H:%M') UTC, build $(git rev-parse --short HEAD 2>/dev/null || echo unknown), release build."
        echo "CPU: $cpu, $cores cores available; the load average (1, 5, 15 min) is given with each row,"
        echo "taken when the connections were open. Figures: median (min-max) over the runs; the hold"
        echo "times are quantiles of every member's holds together (the sum of the members' histograms"
        echo "from \`rampart cluster sync-stats --json\`, over all runs of the row)."
        echo
        if [[ ,$cases, == *,ls-cps,* ]]; then
            echo "### Connections per second"
            echo
            echo "\`rampart-bench conn-open\`: $ls_conns TCP connections per run, 256 connects in flight, one round"
            echo "trip each, from the inside host through the cluster and the tunnel to the remote host; $runs"
            echo "run(s) per row, all rows in the same run of the script. **On 2 cores this shows the cost of"
            echo "sync, not scale**: every member, the routers, the remote gateway and both hosts share the"
            echo "same two cores, so a member adds no CPU, only work (each connection is synced to every"
            echo "other member and its first packet held until they acknowledge). A member alone is one"
            echo "rampart process (one event loop for inspection and ESP); in the cluster the SYNs spread"
            echo "over 2 or 3 processes, which can keep both cores busy, so a cluster may set up more"
            echo "connections per second than one member here: parallelism across processes on the same"
            echo "2 cores, not added capacity. The spread between runs is large on this shared machine."
            echo
            echo "| members | conn/s | lost after | F&A hold p50 us | F&A hold p99 us | holds (all members) | hold timeouts | load average |"
            echo "|---|---:|---:|---:|---:|---:|---:|---|"
            local n label p50 p99 held to
            for n in 1 2 3; do
                label="$n members, Flush-and-Ack"
                p50=- p99=- held=- to=-
                if [[ $n -eq 1 ]]; then
                    label="1 member alone (no [cluster])"
                else
                    p50=$(ls_stat "cps-$n" hold_p50_us)
                    p99=$(ls_stat "cps-$n" hold_p99_us)
                    held=$(ls_stat "cps-$n" held)
                    to=$(ls_stat "cps-$n" timeouts)
                fi
                echo "| $label | $(ls_stat "cps-$n" conns_per_s) | $(ls_stat "cps-$n" lost) | $p50 | $p99 | $held | $to | $(ls_loads "cps-$n") |"
            done
            echo
        fi
        if [[ ,$cases, == *,ls-hold,* ]]; then
            echo "### Flush-and-Ack hold time"
            echo
            echo "Three members; \`conn-open\` with 16 connects in flight (3,000 connections on the LAN, 600"
            echo "over the WAN link), so the hold is the sync round trip plus processing rather than a queue."
            echo "The WAN link is tc netem \`delay 50ms loss 5%\` on every member's sync interface (100 ms"
            echo "round trip; hold_timeout 400 ms, heartbeats 200 ms, dead after 5). Goal on the LAN: p99"
            echo "< 1 ms (pfsync's defer caps the hold at 20 ms)."
            echo
            echo "| sync link | F&A hold p50 us | F&A hold p99 us | holds (all members) | hold timeouts | conn/s | load average |"
            echo "|---|---:|---:|---:|---:|---:|---|"
            echo "| LAN (veth + bridge) | $(ls_stat hold-lan hold_p50_us) | $(ls_stat hold-lan hold_p99_us) | $(ls_stat hold-lan held) | $(ls_stat hold-lan timeouts) | $(ls_stat hold-lan conns_per_s) | $(ls_loads hold-lan) |"
            if [[ $(ls_stat hold-wan held) == NA ]]; then
                echo "| 100 ms RTT, 5 % loss (netem) | not run: this kernel has no sch_netem | | | | | |"
                echo
                echo "Without netem the script cannot delay the sync link. The netns test"
                echo "\`cargo test -p rampart-netns-tests --test rampart_load_sharing ls_kill9_over_a_wan_sync_link\`"
                echo "puts a delay hub (50 ms each way, 5 % loss per frame) in place of the sync bridge and prints"
                echo "the hold p50/p99 of its 200 connections (a debug build)."
            else
                echo "| 100 ms RTT, 5 % loss (netem) | $(ls_stat hold-wan hold_p50_us) | $(ls_stat hold-wan hold_p99_us) | $(ls_stat hold-wan held) | $(ls_stat hold-wan timeouts) | $(ls_stat hold-wan conns_per_s) | $(ls_loads hold-wan) |"
            fi
            echo
        fi
        echo "Topology: an inside router and an upstream router with static equal-cost multipath routes"
        echo "over the members (\`fib_multipath_hash_policy = 1\`, a hash seed of their own each, so the"
        echo "SYN and the SYN-ACK of a connection are spread independently), members in routed Load"
        echo "Sharing (\`flush_ack = true\`, sync over a bridge), the remote site's Rampart gateway"
        echo "initiating the tunnel to the VIP. The hold-time percentiles come from the 20-bucket"
        echo "histogram (25 us to 1 s): a figure is the upper bound of the bucket holding that"
        echo "quantile (\"p99 2000\" reads \"99 % of the holds took at most 2 ms\"), or the longest hold"
        echo "when that is shorter. Raw samples: \`--keep\`."
    } >"$out"
    echo "==> wrote $out"
}

# Puts bench/results/cluster-ls.md into cluster.md between the markers (appended when absent).
splice_ls_results() {
    local md=bench/results/cluster.md part=bench/results/cluster-ls.md
    [[ -f $part ]] || return 0
    [[ -f $md ]] || : >"$md"
    awk -v part="$part" '
        BEGIN { while ((getline line < part) > 0) body = body line "\n" }
        /^<!-- ls:begin -->/ { print; printf "%s", body; skip = 1; done = 1; next }
        /^<!-- ls:end -->/ { skip = 0 }
        !skip { print }
        END { if (!done) { print ""; print "<!-- ls:begin -->"; printf "%s", body; print "<!-- ls:end -->" } }
    ' "$md" >"$md.tmp"
    mv "$md.tmp" "$md"
    echo "==> spliced $part into $md"
}

# ---------------------------------------------------------------- run
ls_samples="$work/ls-samples.tsv"
: >"$ls_samples"
for c in "${case_list[@]}"; do
    case $c in
        keepalived-1s) case_keepalived keepalived-1s 1 6 ;;
        keepalived-100ms) case_keepalived keepalived-100ms 0.1 2 ;;
        conntrackd) case_conntrackd ;;
        rampart-kill | rampart-switchover) case_rampart "$c" ;;
        ls-cps) case_ls_cps ;;
        ls-hold) case_ls_hold ;;
    esac
done
teardown
mkdir -p bench/results
if [[ $want_ha -eq 1 ]]; then
    quick_flag=()
    [[ $quick -eq 1 ]] && quick_flag=(--quick)
    # The "Rampart sync engine" section (run B, in process) lives in its own file and is included.
    "$rbench" cluster-report --samples "$samples" --runs "$runs" "${quick_flag[@]}" \
        --engine bench/results/cluster-engine.md --out bench/results/cluster.md
    echo "==> wrote bench/results/cluster.md"
fi
if [[ $want_ls -eq 1 ]]; then write_ls_results; fi
# cluster-report rewrites cluster.md: the Load Sharing section goes back in either way.
splice_ls_results
