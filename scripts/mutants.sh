#!/usr/bin/env bash
# Builds arbiter once per lease-safety mutant — a cargo feature that removes exactly one rule —
# and runs the tests meant to catch it. Each test must pass on the real code (checked first)
# and fail on the mutant. Prints rule → test that caught it → seconds; exits 1 if any mutant
# survives, 2 if a build fails or a test fails on the real code.
#
#   bash scripts/mutants.sh            # every mutant
#   bash scripts/mutants.sh 1 4        # only the mutants of rules 1 and 4
#   bash scripts/mutants.sh --ci       # CI's share: every mutant caught by the core's or the
#                                      # SDK's own tests, and one of those caught only by a
#                                      # cluster test (package arbiter), chosen by the commit
#                                      # so that successive commits take turns
#
# Mutant features are off by default, enabled by no crate, and refused by release builds
# (`compile_error!` in each crate's lib.rs); this script is their only user.
set -uo pipefail
cd "$(dirname "$0")/.."

# rule | package tested | mutant (crate/feature) | test target (cargo args) | test name filter
# A mutant may sit in a dependency of the package whose tests catch it (e.g. the SDK's keeper,
# caught by a cluster test of `arbiter`).
MUTANTS=(
  "1|arbiter|arbiter/mutant-no-quorum-keepalive|--test lease_isolation|a_leader_cut_off_from_its_followers_cannot_renew"
  "2|arbiter-client|arbiter-client/mutant-renew-on-error|--lib|lease_keeper::tests::failed_keep_alives_do_not_extend_validity"
  "2|arbiter|arbiter-client/mutant-renew-on-error|--test lease_isolation|a_leader_cut_off_from_its_followers_cannot_renew"
  "3|arbiter-client|arbiter-client/mutant-deadline-from-reply|--lib|lease_keeper::tests::deadlines_count_from_the_send_less_the_margin"
  "3|arbiter-client|arbiter-client/mutant-no-drift-margin|--lib|lease_keeper::tests::deadlines_count_from_the_send_less_the_margin"
  "4|arbiter-core|arbiter-core/mutant-renew-lapsed|--test lease_timers|a_deadline_that_passed_cannot_be_renewed"
  "5|arbiter-core|arbiter-core/mutant-grant-while-draining|--test lease_table|revoked_lease_drains_until_expire_then_a_new_grant_gets_a_higher_token"
  "5|arbiter|arbiter-core/mutant-grant-while-draining|--test lease|a_revoked_holder_is_refused_at_once_and_fenced_by_the_new_epoch"
  "6|arbiter-core|arbiter-core/mutant-break-glass-unlogged|--lib|state_machine::tests::a_break_glass_override_is_granted_and_logged_in_one_step"
  "6|arbiter|arbiter/mutant-break-glass-no-estimate|--test auth|audit_records_name_the_authenticated_caller_not_the_body"
  "7|arbiter|arbiter/mutant-wall-clock-expiry|--test lease_clock|a_wall_clock_step_neither_expires_a_lease_early_nor_keeps_it_late"
  "8|arbiter-core|arbiter-core/mutant-elected-keeps-old-deadlines|--test lease_timers|on_elected_forgets_deadlines_from_an_earlier_term"
  "8|arbiter|arbiter/mutant-reelected-keeps-timers|--test lease_handover|a_node_that_leads_again_does_not_act_on_deadlines_from_its_earlier_term"
  "9|arbiter-client|arbiter-client/mutant-check-then-write|--lib|fenced_resource::tests::a_higher_token_waits_for_a_running_lower_write_and_lands_after_it"
  "10|arbiter-core|arbiter-core/mutant-token-not-log-position|--lib|state_machine::tests::tokens_are_the_log_positions"
  "10|arbiter|arbiter-core/mutant-token-not-log-position|--test snapshot|a_backup_restores_into_a_new_cluster_with_the_same_state"
  "11|arbiter|arbiter/mutant-agent-stays-writable|--test drill|an_isolated_region_takes_no_write_once_the_other_is_granted"
)

declare -A RULES=(
  [1]="keep-alive renewed only after a quorum round begun after it arrived"
  [2]="holders behind an isolated leader lose the lease by their deadline"
  [3]="holder validity = send time + TTL - drift margin"
  [4]="a deadline that passed on the leader cannot be renewed"
  [5]="a revoked or fenced lease blocks new grants until the old deadline"
  [6]="break-glass is logged with its data-loss estimate"
  [7]="expiry runs on the monotonic clock (wall-clock steps change nothing)"
  [8]="a new leader gives every live lease a full TTL before expiring any"
  [9]="FencedResource checks and writes atomically"
  [10]="tokens are log positions, strictly increasing, never reused"
  [11]="an isolated region's database takes no write once another region holds the lease"
)

ci=false
if [[ ${1:-} == --ci ]]; then
  ci=true
  shift
  cluster_rows=()
  for i in "${!MUTANTS[@]}"; do
    [[ ${MUTANTS[$i]} == *"|arbiter|"* ]] && cluster_rows+=("$i")
  done
  commit=$(git rev-parse --short=8 HEAD 2>/dev/null || echo 0)
  ci_cluster_row=${cluster_rows[$((16#$commit % ${#cluster_rows[@]}))]}
fi

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
  local args=(-p "$package" $target)
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
for i in "${!MUTANTS[@]}"; do
  IFS='|' read -r rule package feature target filter <<<"${MUTANTS[$i]}"
  if (($# > 0)) && [[ " $* " != *" $rule "* ]]; then
    continue
  fi
  if $ci && [[ $package == arbiter ]] && ((i != ci_cluster_row)); then
    continue
  fi
  base="$log_dir/${feature//\//_}-$package"

  # The test must pass on the real code, or its failure on the mutant proves nothing.
  if ! run_tests "" "$base.real"; then
    echo "rule $rule: '$filter' fails without the mutant:" >&2
    grep -E '^test .*FAILED|panicked' "$base.real" >&2
    exit 2
  fi
  if ! grep -qE '^test result: ok\. [1-9]' "$base.real"; then
    echo "rule $rule: no test matches '$filter' in $package $target" >&2
    exit 2
  fi

  started=$(date +%s)
  if run_tests "$feature" "$base.mutant"; then
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
  printf 'rule %-3s %-52s %s (%ss)\n' "$rule" "$feature" "$caught" "$seconds" >&2
done

echo
printf '%-5s %-70s %-52s %-80s %s\n' rule "" mutant "caught by" seconds
for row in "${rows[@]}"; do
  IFS='|' read -r rule text feature caught seconds <<<"$row"
  printf '%-5s %-70s %-52s %-80s %s\n' "$rule" "$text" "$feature" "$caught" "$seconds"
done
echo
if ((survivors > 0)); then
  echo "$survivors mutant(s) survived: the tests above pass without the rule" >&2
  exit 1
fi
echo "every mutant was caught"
