#!/usr/bin/env bash
# Kernel-level network faults for a three-node arbiter cluster, as root: each node runs in a
# network namespace of its own (arbf-n1..3, 10.77.0.1-3) joined by a bridge in a fourth
# namespace (arbf-br, which also holds the observer address 10.77.0.254). Faults are nftables
# rules inside the node namespaces. Nothing touches the host's own network namespace, and
# every address used lives only inside these namespaces.
#
#   scripts/netfault.sh up            # namespaces + three nodes (lan profile), bootstrapped
#   scripts/netfault.sh status        # arbiter status, as seen from the observer
#   scripts/netfault.sh isolate N     # cut node N off from the other two (both directions)
#   scripts/netfault.sh oneway A B    # drop packets from node A to node B only
#   scripts/netfault.sh heal          # remove every fault
#   scripts/netfault.sh acquire N RESOURCE HOLDER   # try a lease grant through node N only
#   scripts/netfault.sh down          # stop the nodes, delete namespaces and data
#   scripts/netfault.sh demo          # up, isolate the leader, show the minority cannot
#                                     # commit while the majority can, heal, down
#
# Environment: ARBITER_BIN (default target/release/arbiter, built on demand),
# NETFAULT_DIR (default /tmp/arbiter-netfault). Idempotent: `up` when up and `down` when down
# do nothing.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${ARBITER_BIN:-$PWD/target/release/arbiter}
DIR=${NETFAULT_DIR:-/tmp/arbiter-netfault}
CERTS="$DIR/certs"
# Client commands trust the run's CA and present its operator token (TLS is on: the nodes
# listen on non-loopback addresses, where plain TCP is refused).
CREDS=(--ca "$CERTS/ca.pem" --token-file "$DIR/operator.token")
NET=10.77.0
BR=arbf-br
REGIONS=(us-east-1 us-west-2 eu-central-1)

die() { echo "netfault: $*" >&2; exit 1; }
ns() { echo "arbf-n$1"; }
node_ip() { echo "$NET.$1"; }
in_br() { ip netns exec "$BR" "$@"; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces and nftables)"
  command -v ip >/dev/null || die "ip (iproute2) not found"
  command -v nft >/dev/null || die "nft (nftables) not found; apt-get install nftables"
}

is_up() { ip netns list | grep -qw "$BR"; }

endpoints() { echo "$(node_ip 1):7000,$(node_ip 2):7000,$(node_ip 3):7000"; }

up() {
  require_root
  if is_up; then echo "already up"; return 0; fi
  if [ -z "${ARBITER_BIN:-}" ] && [ ! -x "$BIN" ]; then cargo build --release --quiet; fi
  mkdir -p "$DIR"
  # One tokens file for every node; the token itself only in operator.token (owner-only).
  if [ ! -s "$DIR/operator.token" ]; then
    (umask 077 && "$BIN" auth token --identity operator --role operator \
      --tokens-file "$DIR/tokens.toml" >"$DIR/operator.token" 2>/dev/null)
  fi
  ip netns add "$BR"
  in_br ip link add br0 type bridge
  in_br ip link set br0 up
  in_br ip link set lo up
  in_br ip addr add "$NET.254/24" dev br0
  for i in 1 2 3; do
    local n; n=$(ns "$i")
    ip netns add "$n"
    ip link add "veth$i" netns "$n" type veth peer name "port$i" netns "$BR"
    in_br ip link set "port$i" master br0
    in_br ip link set "port$i" up
    ip netns exec "$n" ip link set lo up
    ip netns exec "$n" ip addr add "$(node_ip "$i")/24" dev "veth$i"
    ip netns exec "$n" ip link set "veth$i" up
  done
  mkdir -p "$CERTS"
  [ -f "$CERTS/ca.pem" ] || "$BIN" certs init --dir "$CERTS" >/dev/null
  for i in 1 2 3; do
    [ -f "$CERTS/node-$i.pem" ] || "$BIN" certs issue --dir "$CERTS" --node "$i" \
      --region "${REGIONS[$((i - 1))]}" --host "$(node_ip "$i")" >/dev/null
  done
  for i in 1 2 3; do
    local args=(serve --node-id "$i" --region "${REGIONS[$((i - 1))]}" --data-dir "$DIR/node-$i"
      --grpc-listen "$(node_ip "$i"):7000" --http-listen "$(node_ip "$i"):8080"
      --peer-listen "$(node_ip "$i"):9000" --profile lan
      --tls-ca "$CERTS/ca.pem" --tls-cert "$CERTS/node-$i.pem" --tls-key "$CERTS/node-$i.key"
      --auth-tokens-file "$DIR/tokens.toml")
    if [ "$i" -eq 1 ]; then
      args+=(--bootstrap
        --peer "2=${REGIONS[1]}@$(node_ip 2):7000,$(node_ip 2):8080,$(node_ip 2):9000"
        --peer "3=${REGIONS[2]}@$(node_ip 3):7000,$(node_ip 3):8080,$(node_ip 3):9000")
    else
      args+=(--join)  # new members: node 1's bootstrap hands them the cluster id
    fi
    mkdir -p "$DIR/node-$i"
    ip netns exec "$(ns "$i")" "$BIN" "${args[@]}" >"$DIR/node-$i.log" 2>&1 &
    echo $! >"$DIR/node-$i.pid"
  done
  wait_leader 30 >/dev/null || die "no leader within 30 s; see $DIR/node-*.log"
  echo "up: nodes at $(endpoints) (observer $NET.254 in namespace $BR)"
}

# Prints the leader's node id once the observer sees one among endpoints $2 (default: all
# three); fails after $1 seconds.
wait_leader() {
  local deadline=$((SECONDS + $1)) leader
  while [ $SECONDS -lt "$deadline" ]; do
    # `status` exits 5 while there is no leader; its JSON is printed all the same.
    leader=$(in_br "$BIN" status "${CREDS[@]}" --endpoints "${2:-$(endpoints)}" -o json 2>/dev/null |
      sed -n 's/^  "leader": \([0-9]*\),*$/\1/p' | head -n1 || true)
    if [ -n "$leader" ]; then echo "$leader"; return 0; fi
    sleep 0.2
  done
  return 1
}

reset_rules() {
  local n=$1
  ip netns exec "$n" nft delete table inet arbfault 2>/dev/null || true
  ip netns exec "$n" nft add table inet arbfault
  ip netns exec "$n" nft add chain inet arbfault input '{ type filter hook input priority 0; policy accept; }'
  ip netns exec "$n" nft add chain inet arbfault output '{ type filter hook output priority 0; policy accept; }'
}

isolate() {
  require_root; is_up || die "not up"
  local i=$1 j
  [[ "$i" =~ ^[123]$ ]] || die "node must be 1, 2 or 3"
  reset_rules "$(ns "$i")"
  for j in 1 2 3; do
    [ "$j" = "$i" ] && continue
    ip netns exec "$(ns "$i")" nft add rule inet arbfault input ip saddr "$(node_ip "$j")" drop
    ip netns exec "$(ns "$i")" nft add rule inet arbfault output ip daddr "$(node_ip "$j")" drop
  done
  echo "node $i isolated from its peers (the observer still reaches it)"
}

oneway() {
  require_root; is_up || die "not up"
  local from=$1 to=$2
  [[ "$from$to" =~ ^[123][123]$ ]] && [ "$from" != "$to" ] || die "nodes must be two of 1, 2, 3"
  local n; n=$(ns "$to")
  ip netns exec "$n" nft list table inet arbfault >/dev/null 2>&1 || reset_rules "$n"
  ip netns exec "$n" nft add rule inet arbfault input ip saddr "$(node_ip "$from")" drop
  echo "packets from node $from to node $to are dropped"
}

heal() {
  require_root; is_up || { echo "not up"; return 0; }
  for i in 1 2 3; do ip netns exec "$(ns "$i")" nft delete table inet arbfault 2>/dev/null || true; done
  echo "healed"
}

acquire() {
  local i=$1 resource=$2 holder=$3
  in_br timeout 10 "$BIN" lease acquire "${CREDS[@]}" --endpoints "$(node_ip "$i"):7000" \
    --resource "$resource" --holder "$holder" --ttl 5
}

down() {
  require_root
  for i in 1 2 3; do
    if [ -f "$DIR/node-$i.pid" ]; then
      local pid; pid=$(cat "$DIR/node-$i.pid")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$DIR/node-$i.pid"
    fi
    ip netns del "$(ns "$i")" 2>/dev/null || true
  done
  ip netns del "$BR" 2>/dev/null || true
  rm -rf "$DIR"
  echo "down"
}

demo() {
  require_root
  trap down EXIT
  up
  local leader; leader=$(wait_leader 10)
  echo "leader: node $leader; isolating it"
  isolate "$leader"
  # The isolated node may still call itself leader (it cannot know better); ask the majority.
  local majority="" j
  for j in 1 2 3; do
    [ "$j" = "$leader" ] || majority="${majority:+$majority,}$(node_ip "$j"):7000"
  done
  local new_leader
  new_leader=$(wait_leader 10 "$majority") || die "the majority did not elect a new leader"
  echo "majority elected node $new_leader"
  if acquire "$new_leader" netfault/demo majority-holder >/dev/null; then
    echo "majority side committed a lease grant: ok"
  else
    die "the majority could not commit"
  fi
  if acquire "$leader" netfault/minority minority-holder >/dev/null 2>&1; then
    die "the isolated minority committed a write (split brain)"
  fi
  echo "isolated minority (node $leader) could not commit: ok"
  heal
  wait_leader 10 >/dev/null || die "no leader after heal"
  if acquire "$leader" netfault/after-heal healed-holder >/dev/null 2>&1 ||
     acquire "$new_leader" netfault/after-heal healed-holder >/dev/null; then
    echo "after heal the cluster commits again: ok"
  else
    die "no commit after heal"
  fi
  in_br "$BIN" status "${CREDS[@]}" --endpoints "$(endpoints)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) require_root; in_br "$BIN" status "${CREDS[@]}" --endpoints "$(endpoints)" ;;
  isolate) isolate "${2:?node}" ;;
  oneway) oneway "${2:?from}" "${3:?to}" ;;
  heal) heal ;;
  acquire) acquire "${2:?node}" "${3:?resource}" "${4:?holder}" ;;
  demo) demo ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
