#!/usr/bin/env bash
# Start, stop and inspect a local three-node arbiter cluster on loopback (`arbiter up` in the
# background). Idempotent: `start` on a running cluster and `stop` on a stopped one are no-ops.
#
#   scripts/cluster.sh start [--data-dir DIR] [--base-port N]   # builds (release) if needed
#   scripts/cluster.sh status
#   scripts/cluster.sh stop
#
# Environment: ARBITER_BIN (default: target/release/arbiter, built on demand).
set -euo pipefail

cd "$(dirname "$0")/.."
DATA_DIR=arbiter-data
BASE_PORT=7000
cmd=${1:-}
shift || true
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --base-port) BASE_PORT=$2; shift 2 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
PID_FILE="$DATA_DIR/up.pid"
BIN=${ARBITER_BIN:-target/release/arbiter}

running() { [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

case "$cmd" in
  start)
    if running; then echo "already running (pid $(cat "$PID_FILE"))"; exit 0; fi
    if [ -z "${ARBITER_BIN:-}" ] && [ ! -x "$BIN" ]; then cargo build --release --quiet; fi
    mkdir -p "$DATA_DIR"
    rm -f "$DATA_DIR/cluster.json"
    nohup "$BIN" up --data-dir "$DATA_DIR" --base-port "$BASE_PORT" >"$DATA_DIR/up.log" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 300); do
      [ -f "$DATA_DIR/cluster.json" ] && break
      if ! running; then echo "arbiter up exited; see $DATA_DIR/up.log" >&2; exit 1; fi
      sleep 0.1
    done
    [ -f "$DATA_DIR/cluster.json" ] || { echo "cluster not up within 30 s; see $DATA_DIR/up.log" >&2; exit 1; }
    cat "$DATA_DIR/up.log"
    ;;
  stop)
    if ! running; then echo "not running"; rm -f "$PID_FILE"; exit 0; fi
    pid=$(cat "$PID_FILE")
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    rm -f "$PID_FILE"
    echo "stopped"
    ;;
  status)
    if running; then
      "$BIN" status --data-dir "$DATA_DIR"
    else
      echo "not running"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status [--data-dir DIR] [--base-port N]" >&2
    exit 2
    ;;
esac
