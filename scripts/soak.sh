#!/usr/bin/env bash
# Runs the integration tests and the jepsen CI pass N times in a row and counts failures: the
# proof that the suite does not flake. Builds once, then repeats only the runs.
#
#   scripts/soak.sh 10            # 10 rounds; logs of failed rounds kept in $SOAK_OUT
#
# Exit status: 0 when every round passed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-10}
out="${SOAK_OUT:-$(mktemp -d -t arbiter-soak.XXXXXX)}"
mkdir -p "$out"
cargo test --workspace --locked --no-run >/dev/null 2>&1
cargo build --release --locked -p arbiter -p arbiter-jepsen >/dev/null 2>&1

passed=0
failed=0
for round in $(seq 1 "$rounds"); do
    start=$(date +%s)
    log="$out/round-$round.log"
    status=ok
    if ! cargo test --workspace --locked >"$log" 2>&1; then
        status="cargo test failed"
    elif ! JEPSEN_OUT="$out/jepsen-$round" bash jepsen/ci.sh >>"$log" 2>&1; then
        status="jepsen/ci.sh failed"
    fi
    secs=$(($(date +%s) - start))
    if [[ $status == ok ]]; then
        passed=$((passed + 1))
        rm -rf "$log" "$out/jepsen-$round"
        echo "round $round/$rounds: ok (${secs} s)"
    else
        failed=$((failed + 1))
        echo "round $round/$rounds: $status (${secs} s; see $log)"
    fi
done
echo "soak: $passed passed, $failed failed (rounds of cargo test --workspace + jepsen/ci.sh)"
[[ $failed -eq 0 ]]
