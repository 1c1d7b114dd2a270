#!/usr/bin/env bash
# Builds arbiter once per lease-safety mutant — a cargo feature that removes exactly one rule —
# and runs the tests meant to catch it. Each test must pass on the real code (checked first)
# and fail on the mutant. Prints rule → test that caught it → seconds; exits 1 if any mutant
# survives, 2 if a build fails or a test fails on the real code.
#
#   bash scripts/mutants.sh            # every mutant
#   bash scripts/mutants.sh 1 4        # only the mutants of rules 1 and 4
#
# Mutant features are off by default, enabled by no crate, and refused by release builds
# (`compile_error!` in each crate's lib.rs); this script is their only user.
set -uo pipefail
cd "$(dirname "$0")/.."

# rule | crate | feature | test target (cargo args) | test name filter
MUTANTS=(
  "1|arbiter|mutant-no-quorum-keepalive|--test lease_isolation|a_leader_cut_off_from_its_followers_cannot_renew"
  "3|arbiter-client|mutant-deadline-from-reply|--lib|lease_keeper::tests::deadlines_count_from_the_send_less_the_margin"
  "3|arbiter-client|mutant-no-drift-margin|--lib|lease_keeper::tests::deadlines_count_from_the_send_less_the_margin"
  "4|arbiter-core|mutant-renew-lapsed|--test lease_timers|a_deadline_that_passed_cannot_be_renewed"
  "8|arbiter-core|mutant-elected-keeps-old-deadlines|--test lease_timers|on_elected_forgets_deadlines_from_an_earlier_term"
  "10|arbiter-core|mutant-token-not-log-position|--lib|state_machine::tests::tokens_are_the_log_positions"
)

declare -A RULES=(
  [1]="keep-alive renewed only after a quorum round begun after it arrived"
  [3]="holder validity = send time + TTL - drift margin"
  [4]="a deadline that passed on the leader cannot be renewed"
  [8]="a new leader gives every live lease a full TTL before expiring any"
  [10]="tokens are log positions, strictly increasing"
)

log_dir=$(mktemp -d "${TMPDIR:-/tmp}/arbiter-mutants.XXXXXX")
trap 'rm -rf "$log_dir"' EXIT

# `--workspace` must not switch a mutant on (a feature can only be enabled by someone asking).
if cargo tree --workspace -e features --prefix none 2>/dev/null | grep -q 'feature "mutant-'; then
  echo "a workspace build enables a mutant feature" >&2
  exit 2
fi

# cargo test for one mutant's tests; $1 = features ("" for the real code), output to $2.
run_tests() {
  local features=$1 out=$2
  local args=(-p "$crate" $target)
  [[ -n $features ]] && args+=(--features "$features")
  if ! nice -n 10 cargo test "${args[@]}" --no-run >"$out.build" 2>&1; then
    echo "build failed: cargo test ${args[*]}; see below" >&2
    tail -30 "$out.build" >&2
    exit 2
  fi
  nice -n 10 cargo test "${args[@]}" -- "$filter" >"$out" 2>&1
}

rows=()
survivors=0
for mutant in "${MUTANTS[@]}"; do
  IFS='|' read -r rule crate feature target filter <<<"$mutant"
  if (($# > 0)) && [[ " $* " != *" $rule "* ]]; then
    continue
  fi
  base="$log_dir/$feature"

  # The test must pass on the real code, or its failure on the mutant proves nothing.
  if ! run_tests "" "$base.real"; then
    echo "rule $rule: '$filter' fails without the mutant:" >&2
    grep -E '^test .*FAILED|panicked' "$base.real" >&2
    exit 2
  fi
  if ! grep -qE '^test result: ok\. [1-9]' "$base.real"; then
    echo "rule $rule: no test matches '$filter' in $crate $target" >&2
    exit 2
  fi

  started=$(date +%s)
  if run_tests "$crate/$feature" "$base.mutant"; then
    caught="SURVIVED"
    survivors=$((survivors + 1))
  else
    caught=$(grep -E '^test .* FAILED$' "$base.mutant" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' | paste -sd, -)
    if [[ -z $caught ]]; then
      echo "rule $rule: $feature: cargo test failed without a failing test:" >&2
      tail -20 "$base.mutant" >&2
      exit 2
    fi
  fi
  seconds=$(($(date +%s) - started))
  rows+=("$rule|${RULES[$rule]}|$feature|$caught|$seconds")
  printf 'rule %-3s %-36s %s (%ss)\n' "$rule" "$feature" "$caught" "$seconds" >&2
done

echo
printf '%-5s %-66s %-36s %-80s %s\n' rule "" mutant "caught by" seconds
for row in "${rows[@]}"; do
  IFS='|' read -r rule text feature caught seconds <<<"$row"
  printf '%-5s %-66s %-36s %-80s %s\n' "$rule" "$text" "$feature" "$caught" "$seconds"
done
echo
if ((survivors > 0)); then
  echo "$survivors mutant(s) survived: the tests above pass without the rule" >&2
  exit 1
fi
echo "every mutant was caught"
