# shellcheck shell=bash disable=SC2034 # the variables are for the files that source this
# Shared harness for the netns interop tests, scripts/netns-topology and scripts/wg-peer.
# Source it; it sets no shell options, so callers choose their own (`set -euo pipefail`).
#
# Topology (scripts/netns-topology up a b ...):
#   netns al-hub: bridge albr0 (no IP); veth aldp0 (unbridged, owned by the DPDK process through
#                 net_af_packet, which answers ARP for 198.51.100.1) <-> aldp0-br on albr0
#   netns al-X:   veth eth0 (198.51.100.N/24) <-> alX-br on albr0; N = 2 for a, 3 for b, ...
# The names are fixed, so tests using the topology must not run in parallel with each other.

AL_HUB_NS=al-hub
AL_BRIDGE=albr0
AL_DP_IF=aldp0
AL_DP_BR_IF=aldp0-br
AL_PEER_IF=eth0
AL_UNDERLAY_PREFIX=198.51.100
AL_UNDERLAY_PREFIX_LEN=24
AL_HUB_UNDERLAY_IP=$AL_UNDERLAY_PREFIX.1
AL_HUB_PORT=51820
AL_HUB_ENDPOINT=$AL_HUB_UNDERLAY_IP:$AL_HUB_PORT
AL_TUNNEL_PREFIX=100.80.0
AL_TUNNEL_ROUTE=100.80.0.0/16
AL_WG_IF=wg0
AL_WG_MTU=1420
AL_DEFAULT_PEERS=(a b)

AL_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
AL_SCRIPTS_DIR=$AL_REPO_ROOT/scripts

# meson counts exit status 77 as "skipped".
AL_EXIT_SKIP=77

die() {
  echo "error: $*" >&2
  exit 1
}

skip() {
  echo "SKIP: $*"
  exit "$AL_EXIT_SKIP"
}

require_root_or_skip() {
  [[ $EUID -eq 0 ]] || skip "needs root (network namespaces, veth, TUN)"
}

require_cmd() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || skip "command not found: $cmd"
  done
}

# check NAME CMD...: runs one assertion, counting it in the caller's `passed` / `failed`; never
# aborts the script.
check() {
  local name=$1
  shift
  if "$@"; then
    echo "ok: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    failed=$((failed + 1))
  fi
}

# wait_for TIMEOUT_SECONDS CMD [ARGS...]: polls CMD every 0.1 s until it succeeds.
wait_for() {
  local timeout=$1
  shift
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# on_exit CMD [ARGS...]: registers a cleanup command; all run in reverse order when the shell
# exits, failures ignored, the shell's exit status kept.
AL_EXIT_HANDLERS=()
on_exit() {
  if ((${#AL_EXIT_HANDLERS[@]} == 0)); then
    trap run_exit_handlers EXIT
  fi
  AL_EXIT_HANDLERS+=("$(printf '%q ' "$@")")
}

run_exit_handlers() {
  local status=$? i
  for ((i = ${#AL_EXIT_HANDLERS[@]} - 1; i >= 0; i--)); do
    eval "${AL_EXIT_HANDLERS[i]}" || true
  done
  AL_EXIT_HANDLERS=()
  return "$status"
}

ns_exec() {
  local ns=$1
  shift
  ip netns exec "$ns" "$@"
}

ns_exists() {
  ip netns list | awk '{print $1}' | grep -qxF -- "$1"
}

# Peers are named by one lowercase letter; the letter fixes the namespace and the addresses.
peer_host_octet() {
  [[ $1 =~ ^[a-z]$ ]] || die "peer name must be one letter a-z, got '$1'"
  echo $(($(printf '%d' "'$1") - $(printf '%d' "'a") + 2))
}
peer_ns() { peer_host_octet "$1" >/dev/null && echo "al-$1"; }
peer_br_if() { peer_host_octet "$1" >/dev/null && echo "al$1-br"; }
peer_underlay_ip() { echo "$AL_UNDERLAY_PREFIX.$(peer_host_octet "$1")"; }
peer_tunnel_ip() { echo "$AL_TUNNEL_PREFIX.$(peer_host_octet "$1")"; }

topology_up() { "$AL_SCRIPTS_DIR/netns-topology" up "$@"; }
topology_down() { "$AL_SCRIPTS_DIR/netns-topology" down; }

gen_peer_key() { "$AL_SCRIPTS_DIR/wg-peer" genkey "$@"; }
# start_peer NS --private-key-file F --address A/32 ... (see scripts/wg-peer)
start_peer() { "$AL_SCRIPTS_DIR/wg-peer" start "$@"; }
stop_peer() { "$AL_SCRIPTS_DIR/wg-peer" stop "$1"; }
# peer_wg NS ARGS...: runs `wg ARGS...` against the wireguard-go in NS (e.g. show wg0 transfer).
peer_wg() { "$AL_SCRIPTS_DIR/wg-peer" wg "$@"; }
peer_log() { echo "/tmp/al-wg-$1.log"; }
peer_pidfile() { echo "/run/al-wg-$1.pid"; }

# count_ping NS DST COUNT INTERVAL: prints how many echo replies arrived; never fails.
count_ping() {
  local ns=$1 dst=$2 count=$3 interval=$4 out
  out=$(ns_exec "$ns" ping -n -q -c "$count" -i "$interval" -W 1 "$dst" 2>&1) || true
  sed -n 's/.* \([0-9]\+\) received.*/\1/p' <<<"$out" | grep . || echo 0
}
