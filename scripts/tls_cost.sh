#!/usr/bin/env bash
# The cost of TLS on lease operations: the same lease_bench binary against a local cluster
# started with TLS (`arbiter up`) and without (`arbiter up --no-tls`, plain TCP on loopback),
# alternating, REPS times each; prints every run and the medians of keep-alive and acquire
# throughput. Bounded: each bench phase runs SECONDS, each cluster start waits at most 60 s.
#
#   scripts/tls_cost.sh [REPS (default 3)] [SECONDS (default 5)] [CLIENTS (default 64)]
#
# Environment: ARBITER_BIN / LEASE_BENCH_BIN (default: release builds, built on demand).
set -euo pipefail

cd "$(dirname "$0")/.."
REPS=${1:-3}
SECONDS_PER_PHASE=${2:-5}
CLIENTS=${3:-64}
BIN=${ARBITER_BIN:-target/release/arbiter}
BENCH=${LEASE_BENCH_BIN:-target/release/examples/lease_bench}
if [ -z "${ARBITER_BIN:-}" ] || [ -z "${LEASE_BENCH_BIN:-}" ]; then
  cargo build --release --quiet --bin arbiter -p arbiter
  cargo build --release --quiet -p arbiter-client --example lease_bench
fi
WORK=$(mktemp -d)
UP_PID=
cleanup() {
  if [ -n "$UP_PID" ] && kill -0 "$UP_PID" 2>/dev/null; then
    kill -TERM "$UP_PID"
    for _ in $(seq 1 100); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$UP_PID" 2>/dev/null && kill -KILL "$UP_PID"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# run MODE REP: one cluster, one bench run; appends "MODE keepalive acquire" to results.
run() {
  local mode=$1 rep=$2 dir="$WORK/$1-$2" flags=() bench_flags=()
  if [ "$mode" = plain ]; then flags=(--no-tls); bench_flags=(--no-tls); fi
  mkdir -p "$dir"
  "$BIN" up --data-dir "$dir" --base-port 27000 "${flags[@]}" >"$dir/up.log" 2>&1 &
  UP_PID=$!
  for _ in $(seq 1 600); do
    [ -f "$dir/cluster.json" ] && break
    kill -0 "$UP_PID" 2>/dev/null || { cat "$dir/up.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -f "$dir/cluster.json" ] || { echo "cluster not up within 60 s" >&2; cat "$dir/up.log" >&2; exit 1; }
  "$BENCH" --endpoints 127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003 --data-dir "$dir" \
    "${bench_flags[@]}" --clients "$CLIENTS" --seconds "$SECONDS_PER_PHASE" >"$dir/bench.log"
  local ka acq
  ka=$(awk '$1 == "keep-alive" { for (i = 1; i <= NF; i++) if ($i == "ops/s") print $(i - 1) }' "$dir/bench.log")
  acq=$(awk '$1 == "acquire" { for (i = 1; i <= NF; i++) if ($i == "ops/s") print $(i - 1) }' "$dir/bench.log")
  echo "rep $rep $mode: keep-alive $ka ops/s, acquire $acq ops/s"
  echo "$mode $ka $acq" >>"$WORK/results"
  kill -TERM "$UP_PID"
  for _ in $(seq 1 150); do kill -0 "$UP_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$UP_PID" 2>/dev/null && kill -KILL "$UP_PID"
  UP_PID=
}

for rep in $(seq 1 "$REPS"); do
  run tls "$rep"
  run plain "$rep"
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for mode in tls plain; do
  ka=$(awk -v m="$mode" '$1 == m { print $2 }' "$WORK/results" | median)
  acq=$(awk -v m="$mode" '$1 == m { print $3 }' "$WORK/results" | median)
  echo "median $mode: keep-alive $ka ops/s, acquire $acq ops/s"
  echo "$mode $ka $acq" >>"$WORK/medians"
done
awk '$1 == "tls" { k = $2; a = $3 } $1 == "plain" { pk = $2; pa = $3 }
  END { printf "TLS cost: keep-alive %.1f %%, acquire %.1f %%\n", 100 * (1 - k / pk), 100 * (1 - a / pa) }' "$WORK/medians"
