#!/usr/bin/env bash
# The CI pass of the jepsen harness: a short run under every nemesis, one of crashes only
# (kill -9, whole-cluster restart) and one of planned leadership moves that must find nothing, then each negative control, which
# must find an anomaly, including a power loss (lose-unsynced: data dirs on lazyfs, unsynced
# writes dropped) with fsyncs skipped, and a run whose lease holders write to a real PostgreSQL
# behind the arbiter's fence. A checker that cannot fail proves nothing, so a control
# that passes fails CI.
#
#   jepsen/ci.sh                 # from anywhere; runs go to jepsen/runs/ci-<UTC time>/
#   JEPSEN_OUT=/tmp/j jepsen/ci.sh
#   JEPSEN_PROFILE=debug jepsen/ci.sh   # the debug build (.ci/run: `cargo test` built it
#                                       # already; a release build would add minutes)
#
# Exit status: 0 when the safe runs are clean and every control was caught, 1 otherwise.
set -euo pipefail

cd "$(dirname "$0")/.."
profile="${JEPSEN_PROFILE:-release}"
case "$profile" in
  release) cargo build --release -p arbiter -p arbiter-jepsen ;;
  debug) cargo build -p arbiter -p arbiter-jepsen ;;
  *) echo "JEPSEN_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac

bin=target/$profile/arbiter-jepsen
out="${JEPSEN_OUT:-jepsen/runs/ci-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
# Short and without WAN latency: the lan profile fails over in well under a second, so a minute
# holds several faults and their recoveries.
common=(--nemesis all --seed 1 --latency none)

results=()
failed=0

# run NAME EXPECTED_EXIT ARGS...: runs the harness, logs to $out/NAME.log, records the outcome.
run() {
    local name=$1 expected=$2
    shift 2
    local status=0
    echo "== jepsen $name: $bin $*"
    "$bin" "$@" --out "$out/$name" >"$out/$name.log" 2>&1 || status=$?
    grep -E '^(arbiter-jepsen: |tokens|lease_exclusion|fenced_writes|linearizable|failover_log|durability|availability|recovery after heal|final heal)' \
        "$out/$name.log" || true
    if [[ $status -eq $expected ]]; then
        results+=("PASS  $name (exit $status)")
    else
        results+=("FAIL  $name (exit $status, expected $expected; see $out/$name.log)")
        failed=1
    fi
}

# Exit 0: no anomalies.
run safe 0 "${common[@]}" --time-limit 60
# Seed 1's minute draws no whole-cluster kill: a short run of crashes only covers durability.
run crash-restart 0 --nemesis kill9,kill-all --seed 1 --latency none --time-limit 30
# Planned leadership moves at arbitrary moments, alone and under a leader partition (seed 1
# draws one of each): every lease rule must hold across a move exactly as across a crash.
run move-leader 0 --nemesis move-leader,kill9,isolate-leader --seed 1 --latency none --time-limit 35
# Exit 1: anomalies found (4 would be a harness failure, which proves nothing).
run unsafe-ignore-deadline 1 "${common[@]}" --time-limit 25 --unsafe-ignore-deadline
run unsafe-no-fencing 1 "${common[@]}" --time-limit 25 --unsafe-no-fencing
run unsafe-stale-reads 1 "${common[@]}" --time-limit 25 --unsafe-stale-reads
# Power loss needs lazyfs (FUSE): root and /dev/fuse. The safe pass loses every node's unsynced
# writes with the cluster and must find nothing; the control (every node skips its fsyncs) is
# forced a whole-cluster loss of unsynced writes, and the checkers must catch it.
if [[ $(id -u) -eq 0 && -c /dev/fuse ]]; then
    power=(--nemesis lose-unsynced,kill9,kill-all --seed 1 --latency none)
    run lose-unsynced 0 "${power[@]}" --time-limit 35
    run unsafe-no-fsync 1 "${power[@]}" --time-limit 25 --unsafe-no-fsync
else
    results+=("SKIP  lose-unsynced, unsafe-no-fsync (need root and /dev/fuse)")
fi
# The fenced resources as a real PostgreSQL 15 behind the arbiter's fence (arbiter_fence.check
# in every write transaction), started as the unprivileged postgres user: the safe run must
# find nothing, and the control, whose writes skip the check, must be caught.
if [[ $(id -u) -eq 0 && -x /usr/lib/postgresql/15/bin/postgres ]]; then
    run pg-fence 0 "${common[@]}" --time-limit 25 --fenced-store postgres
    run unsafe-no-fencing-pg 1 "${common[@]}" --time-limit 25 --unsafe-no-fencing --fenced-store postgres
else
    results+=("SKIP  pg-fence, unsafe-no-fencing-pg (need root and Debian postgresql 15)")
fi

echo
echo "jepsen CI summary (runs in $out):"
printf '  %s\n' "${results[@]}"
exit "$failed"
