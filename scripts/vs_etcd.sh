#!/usr/bin/env bash
# arbiter and etcd side by side on this machine: keep-alive, grant (acquire), a guarded write,
# and leader failover after kill -9, with the same client count and payload, alternating, and
# a ratio table at the end (medians). See jepsen/src/vs_etcd.rs for what each phase calls.
#
#   scripts/vs_etcd.sh [REPS] [SECONDS] [CLIENTS] [FAILOVERS]     (defaults: 3 10 64 5)
#
# Installs Debian's etcd 3.4 (etcd-server, etcd-client) when `etcd` is missing, builds the
# release binaries, and runs `arbiter-jepsen vs-etcd`. Every cluster runs on loopback (etcd on
# a random 127.x.y.0/24 block at its usual ports) and is killed and removed after its phase.
set -euo pipefail
cd "$(dirname "$0")/.."

reps="${1:-3}"
seconds="${2:-10}"
clients="${3:-64}"
failovers="${4:-5}"

if ! command -v etcd >/dev/null 2>&1; then
  echo "== installing etcd-server and etcd-client (Debian)"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
  # The package may start a system etcd on 127.0.0.1:2379; the benchmark uses none of it.
fi

# etcd-client's build script compiles etcd's protos with protoc; use the one arbiter's own
# build already vendors (protoc-bin-vendored), so no system protoc is needed.
cargo fetch --locked >/dev/null
if [ -z "${PROTOC:-}" ]; then
  PROTOC="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path '*protoc-bin-vendored-linux-x86_64*/bin/protoc' | sort | tail -1)"
  export PROTOC
fi

echo "== building release binaries (arbiter, arbiter-jepsen --features etcd)"
cargo build --release --locked --bin arbiter
cargo build --release --locked -p arbiter-jepsen --features etcd

exec target/release/arbiter-jepsen vs-etcd --reps "$reps" --seconds "$seconds" \
  --clients "$clients" --failovers "$failovers" --etcd-bin "$(command -v etcd)"
