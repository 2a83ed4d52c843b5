#!/bin/bash
# Baseline without Airlock: two wireguard-go peers (netns al-a, al-b) talk directly over the
# bridge of the interop topology; iperf3 measures one TCP stream through the tunnel, a -> b and
# b -> a (-R). Needs root. Usage: bench/wireguard_go_iperf.sh [-t SECONDS]
set -euo pipefail

# shellcheck source=SCRIPTDIR/../tests/interop/lib.sh
source "$(dirname "$(readlink -f "$0")")/../tests/interop/lib.sh"

PYTHON=/usr/bin/python3

usage() {
  echo "usage: $0 [-t SECONDS]" >&2
  exit 2
}

# Receiver-side throughput in Gbit/s from iperf3 --json output on stdin.
gbits_received() {
  "$PYTHON" -c \
    'import json, sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
}

start_direct_peer() {
  local self=$1 other=$2 keys=$3
  start_peer "$(peer_ns "$self")" \
    --private-key-file "$keys/$self.key" \
    --address "$(peer_tunnel_ip "$self")/32" \
    --route "$AL_TUNNEL_ROUTE" \
    --peer-public-key "$(<"$keys/$other.pub")" \
    --peer-endpoint "$(peer_underlay_ip "$other"):$AL_HUB_PORT" \
    --listen-port "$AL_HUB_PORT"
}

tunnel_answers() {
  ns_exec "$(peer_ns a)" ping -n -q -c 1 -W 1 "$(peer_tunnel_ip b)" >/dev/null 2>&1
}

iperf_server_listening() {
  ns_exec "$(peer_ns b)" ss -Hltn "sport = :5201" | grep -q .
}

# CPU seconds (user + system) a process has used so far.
cpu_seconds() {
  local pid=$1
  awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$pid/stat"
}

# run_client LABEL SECONDS SENDER RECEIVER [iperf3 args]: the throughput, and the CPU each
# wireguard-go used meanwhile, so the rate per core compares with one data-plane worker core.
run_client() {
  local label=$1 seconds=$2 sender=$3 receiver=$4
  shift 4
  local gbits send_pid recv_pid send0 recv0 send1 recv1
  send_pid=$(<"$(peer_pidfile "$(peer_ns "$sender")")")
  recv_pid=$(<"$(peer_pidfile "$(peer_ns "$receiver")")")
  send0=$(cpu_seconds "$send_pid")
  recv0=$(cpu_seconds "$recv_pid")
  gbits=$(ns_exec "$(peer_ns a)" iperf3 --json -c "$(peer_tunnel_ip b)" -t "$seconds" "$@" |
    gbits_received)
  send1=$(cpu_seconds "$send_pid")
  recv1=$(cpu_seconds "$recv_pid")
  awk -v g="$gbits" -v t="$seconds" -v s0="$send0" -v s1="$send1" -v r0="$recv0" -v r1="$recv1" \
    -v label="$label" 'BEGIN {
      sc = (s1 - s0) / t; rc = (r1 - r0) / t
      printf "wireguard-go iperf3 TCP%s: %s Gbit/s (1 stream, %d s); wireguard-go CPU: sender %.2f cores, receiver %.2f cores; %.2f Gbit/s per receiving core\n", label, g, t, sc, rc, (rc > 0 ? g / rc : 0)
    }'
}

main() {
  local seconds=10
  while getopts t: opt; do
    case $opt in
      t) seconds=$OPTARG ;;
      *) usage ;;
    esac
  done
  [[ $seconds =~ ^[1-9][0-9]*$ ]] || usage

  require_root_or_skip
  require_cmd wireguard-go wg iperf3 ethtool nsenter ss "$PYTHON"

  local keys
  keys=$(mktemp -d)
  on_exit rm -rf "$keys"
  on_exit topology_down
  topology_up a b
  gen_peer_key "$keys" a
  gen_peer_key "$keys" b
  start_direct_peer a b "$keys"
  start_direct_peer b a "$keys"
  wait_for 10 tunnel_answers || die "no ping through the tunnel; see $(peer_log al-a)"

  ns_exec "$(peer_ns b)" iperf3 -s -B "$(peer_tunnel_ip b)" >/dev/null 2>&1 &
  wait_for 5 iperf_server_listening || die "iperf3 server did not start"

  run_client "" "$seconds" a b
  run_client " -R" "$seconds" b a -R
}

main "$@"
