# Shared by the benchmark scripts: namespace teardown. The sourcing script sets `all_ns` (the
# namespaces it creates, unique names) before calling `teardown_namespaces`.

ns_exists() { [[ -e /run/netns/$1 ]]; }

# Stops every process in the namespaces (TERM, up to 3 s, then KILL) and deletes them; safe to
# call when some or none exist.
teardown_namespaces() {
    local ns pid
    for ns in "${all_ns[@]}"; do
        if ns_exists "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -TERM "$pid" 2>/dev/null || true; done
        fi
    done
    # Give daemons a moment to exit cleanly, then make sure.
    for _ in $(seq 1 30); do
        local left=0
        for ns in "${all_ns[@]}"; do
            if ns_exists "$ns" && [[ -n $(ip netns pids "$ns") ]]; then left=1; fi
        done
        [[ $left -eq 0 ]] && break
        sleep 0.1
    done
    for ns in "${all_ns[@]}"; do
        if ns_exists "$ns"; then
            for pid in $(ip netns pids "$ns"); do kill -KILL "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}

# Creates every namespace of `all_ns`, loopback up.
add_namespaces() {
    local ns
    for ns in "${all_ns[@]}"; do
        ip netns add "$ns"
        ip -n "$ns" link set lo up
    done
}

# EXIT trap: the sourcing script's `teardown`, then `$work` (raw samples and logs) is removed
# unless the run failed or `keep=1`.
on_exit() {
    local rc=$?
    teardown
    if [[ ${keep:-0} -eq 0 && $rc -eq 0 ]]; then rm -rf "$work"; else echo "raw samples and logs: $work"; fi
    exit "$rc"
}

install_exit_traps() {
    trap on_exit EXIT
    trap 'exit 130' INT TERM
}
