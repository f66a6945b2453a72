#!/usr/bin/env bash
# Runs the whole test suite: installs the system packages the network-namespace tests need
# (Debian 12, as root), then formatting, clippy, every test of the workspace and a short fuzz
# run of each cargo-fuzz target (FUZZ_SECONDS each, default 20).
# Exits non-zero when any step fails. CI runs it through .ci/run.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# `--heavy` also runs the large netns variants (10,000 connections through a cluster, 2000
# remote-access clients at once and one after another, ten MEP failovers): they add tens of
# minutes on two cores (the 2000 clients one after another alone take ~10), so CI runs the
# smaller versions only.
case "${1:-}" in
    --heavy) export RAMPART_HEAVY=1 ;;
    "") ;;
    *)
        echo "usage: scripts/test.sh [--heavy]" >&2
        exit 2
        ;;
esac

# Debian packages the netns tests use (binaries they call are checked again by the tests).
PACKAGES=(
    iproute2 iputils-ping procps util-linux nftables conntrack iperf3 tcpdump socat hping3
    strongswan-charon strongswan-swanctl libcharon-extra-plugins
    libstrongswan-standard-plugins libstrongswan-extra-plugins
    bird2
    # Remote access (#13): charon's eap-mschapv2 plugin, an HTTP CONNECT proxy with Basic auth
    # (squid, basic_ncsa_auth), an HTTPS server sharing 443 with Visitor Mode, and the client
    # tools the tests drive (openssl makes the htpasswd hash and the web server's certificate).
    libcharon-extauth-plugins squid nginx-light openssl curl
)

log() { printf '\n==> %s\n' "$*"; }

# Disk: with the default dev profile a full run wrote ~15 GB under target/ (11 GB of it debug
# info, 3 GB incremental caches), and a CI run on a machine with less free space failed with
# "No space left on device". The suite builds each crate once, so it needs no incremental cache,
# and line tables are enough for a panic's file:line and a backtrace. Both can be overridden.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"

disk_report() {
    df -h . | tail -1 | awk '{print "disk: " $4 " free of " $2 " on " $6}'
    if [[ -d target ]]; then du -sh target 2>/dev/null | awk '{print "target/: " $1}'; fi
}

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    # aws-lc-rs builds C code: a C compiler must exist.
    if ! command -v cc >/dev/null 2>&1; then
        missing+=(build-essential)
    fi
    if ((${#missing[@]} == 0)); then
        log "system packages already present"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        echo "warning: not root, cannot install: ${missing[*]} (the netns tests will skip)" >&2
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || return 1
    # Services must not start inside containers; the tests run their own daemons.
    apt-get install -y -q --no-install-recommends "${missing[@]}" || return 1
}

ensure_components() {
    local comp
    for comp in rustfmt clippy; do
        if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                log "adding rustup component $comp"
                rustup component add "$comp" || return 1
            else
                echo "error: cargo ${comp/rustfmt/fmt} is missing and rustup is not available" >&2
                return 1
            fi
        fi
    done
}

# Fuzz smoke: each cargo-fuzz target for FUZZ_SECONDS (default 20); a crash fails the step
# (libFuzzer exits non-zero and leaves the input in fuzz/artifacts/<target>/).
fuzz_smoke() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "installing cargo-fuzz"
        cargo install cargo-fuzz --locked || return 1
    fi
    local seconds=${FUZZ_SECONDS:-20} target rc=0 extra
    for target in $(cd fuzz && cargo fuzz list); do
        log "fuzz $target for ${seconds}s"
        extra=()
        if [[ -d fuzz/seeds/$target ]]; then
            extra=("seeds/$target")
        fi
        mkdir -p "fuzz/corpus/$target"
        if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "${extra[@]}" \
            -- -max_total_time="$seconds"); then
            echo "fuzz target $target failed (crash input in fuzz/artifacts/$target/)" >&2
            rc=1
        fi
    done
    return $rc
}

failed=()
step() {
    local name=$1
    shift
    log "$name"
    local start=$SECONDS
    if "$@"; then
        echo "--- $name: ok ($((SECONDS - start))s)"
    else
        echo "--- $name: FAILED ($((SECONDS - start))s)" >&2
        failed+=("$name")
    fi
}

disk_report
step "install system packages" install_packages
step "rust components" ensure_components
step "cargo fmt" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# The netns tests run target/debug/rampart: build it first (cargo test holds the build lock while
# tests run, so they cannot build it themselves without a second target directory).
step "cargo build -p rampart" cargo build -p rampart
# Property tests draw their cases from a fixed seed so that a CI run is reproducible; set
# PROPTEST_RNG_SEED to explore other cases (a failure prints the seed that reproduces it).
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261121}"
# Test binaries run one after another; each netns test takes a file lock so heavy tests never overlap.
# --no-fail-fast: one failing binary must not hide the others. The output is also kept in
# target/test-output.log so that the failures can be listed again at the very end of the run
# (CI keeps only the tail of the log).
TEST_LOG=target/test-output.log
run_tests() {
    mkdir -p target
    cargo test --workspace --no-fail-fast 2>&1 | tee "$TEST_LOG"
    return "${PIPESTATUS[0]}"
}
step "cargo test" run_tests
disk_report
step "fuzz smoke" fuzz_smoke
disk_report

# The failing tests, their panic messages and the binaries they ran in, repeated here because the
# fuzz output above pushes them out of a log's tail.
test_failures() {
    [[ -f $TEST_LOG ]] || return 0
    awk '
        /^     Running / { bin = $0; shown = 0; next }
        /^test .* FAILED$/ || /panicked at/ || /^error: test failed/ {
            if (!shown && bin != "") { print bin; shown = 1 }
            print
            if ($0 ~ /panicked at/) { getline; print }
        }
    ' "$TEST_LOG" | tail -60
}

if ((${#failed[@]})); then
    if [[ " ${failed[*]} " == *" cargo test "* ]]; then
        log "failing tests (from $TEST_LOG)"
        test_failures
    fi
    log "FAILED steps: ${failed[*]}"
    exit 1
fi
log "all steps passed"
