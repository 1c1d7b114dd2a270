#!/usr/bin/env bash
# arbiter over the planning WAN triangle (70/90/150 ms RTT through userspace link proxies,
# profile `wan`, leader placed in us-east-1): commit latency at the leader against its floor
# (70 ms RTT + an fsync of this disk), lease acquire and keep-alive throughput, and leader
# failover after kill -9 under load. See jepsen/src/wan_bench.rs.
#
#   scripts/wan_bench.sh [CLIENTS] [SECONDS] [FAILOVERS]     (defaults: 2048 10 10)
#
# The clients are spread over 4 connections to the leader (--connections N to change it), as
# several regional proxies would be: a connection carries at most 1,024 calls at once, and at
# ~250 ms a call over the WAN, 5,000 calls/s need more than 1,250 in flight.
#
# Further `arbiter-jepsen wan-bench` flags may follow (e.g. --heartbeat-ms 300 to try a
# tuning, --keep to keep the node logs). Everything runs on loopback and is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

clients="${1:-2048}"
seconds="${2:-10}"
failovers="${3:-10}"
shift $(( $# < 3 ? $# : 3 ))

echo "== building release binaries (arbiter, arbiter-jepsen)"
cargo build --release --locked --bin arbiter
cargo build --release --locked -p arbiter-jepsen

exec target/release/arbiter-jepsen wan-bench --clients "$clients" --seconds "$seconds" \
  --failovers "$failovers" "$@"
