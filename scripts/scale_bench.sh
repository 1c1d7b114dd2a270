#!/usr/bin/env bash
# arbiter at scale: keep-alive throughput with 100,000 live leases held by 1,000 holders
# against 1,000 leases, a leader kill -9 with every lease kept renewed (expiries, elections),
# snapshot build and install at 100k, RSS per node, and memory per lease at 1,000,000 leases.
# See jepsen/src/scale_bench.rs for what each phase does.
#
#   scripts/scale_bench.sh [--leases N] [--holders N] [--seconds S] [--clients N] [--ttl S]
#                          [--memory-leases N | --no-million | --memory-only] [--snapshot-every N]
#                          [--keep]
#
# Defaults: 100,000 leases, 1,000 holders, 10 s phases, 64 clients, TTL 30 s, 1,000,000 leases
# in the memory phase (about 5 minutes in all on a 2-core machine; --no-million skips the
# memory phase, --memory-only runs it alone). Smaller runs for a quick look:
#
#   scripts/scale_bench.sh --leases 10000 --holders 100 --seconds 3 --ttl 9 --memory-leases 50000
#
# Builds the release binaries and runs `arbiter-jepsen scale-bench`; every cluster runs on
# loopback in a temp dir that is removed afterwards (--keep leaves it, with the node logs).
# Progress goes to stderr, the summary table to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --leases|--holders|--seconds|--clients|--ttl|--memory-leases|--snapshot-every|--max-ops)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; exit 2; }
      args+=("$1" "$2")
      shift 2
      ;;
    --memory-only|--keep)
      args+=("$1")
      shift
      ;;
    --million)
      args+=(--memory-leases 1000000)
      shift
      ;;
    --no-million)
      args+=(--memory-leases 0)
      shift
      ;;
    -h|--help)
      sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "unknown flag: $1 (see --help)" >&2
      exit 2
      ;;
  esac
done

echo "== building release binaries (arbiter, arbiter-jepsen)" >&2
cargo build --release --locked --bin arbiter
cargo build --release --locked -p arbiter-jepsen

exec target/release/arbiter-jepsen scale-bench "${args[@]}"
