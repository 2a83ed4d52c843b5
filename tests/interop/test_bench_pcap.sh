#!/usr/bin/env bash
# The DUT benchmark's inputs, end to end, as root and without any network: airlock-bench-pcap
# writes pcaps, a policy and static sessions; airlock-dataplane on net_pcap replays them.
#   1. One pass (rx_pcap read once): every packet is decrypted and forwarded, no drop of any
#      kind, and every frame the data plane sent (tx_pcap) opens with the next peer's send key.
#   2. infinite_rx=1: the first pass is forwarded, every later pass counts as replay drops only
#      (what a looping traffic generator such as pktgen gets; see bench/README.md).
#   3. A malformed static-sessions file stops the data plane, naming the line, echoing no key.
# Usage: test_bench_pcap.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/interop/lib.sh
source "$here/lib.sh"

build=$(cd "${1:?usage: test_bench_pcap.sh BUILD_DIR}" && pwd)
require_root_or_skip
require_cmd /usr/bin/python3

dp=$build/dataplane/airlock-dataplane
dpctl=$build/dataplane/airlock-dpctl
gen=$build/bench/airlock-bench-pcap
[[ -x $gen ]] || skip "airlock-bench-pcap not built (libpcap missing)"
work=$(mktemp -d /tmp/airlock-bench-pcap.XXXXXX)
peers=4
packets=512
expected=$((peers * packets))
passed=0
failed=0
dp_pid=

cleanup() {
  [[ -n $dp_pid ]] && kill "$dp_pid" 2>/dev/null && wait "$dp_pid" 2>/dev/null
  if ((failed > 0)); then
    echo "--- data plane logs"
    tail -n 20 "$work"/*.log 2>/dev/null || true
  fi
  [[ -n ${AIRLOCK_KEEP_WORK:-} ]] || rm -rf "$work"
  # EAL leaves a runtime directory per --file-prefix.
  rm -rf "/var/run/dpdk/bpone$$" "/var/run/dpdk/bploop$$" "/var/run/dpdk/bpbad$$"
}
on_exit cleanup

# start_dp INSTANCE VDEV [FLAGS...]: the data plane on one net_pcap port, in the background.
start_dp() {
  local instance=$1 vdev=$2
  shift 2
  "$dp" --no-huge -m 512 --no-pci --no-telemetry --file-prefix "$instance" -l 0,1 \
    --log-level='*:warning' --vdev "$vdev" -- --address 198.18.0.1 \
    --private-key "$work/gen/dut.key" --policy "$work/gen/policy.alp" --instance "$instance" \
    "$@" >"$work/$instance.log" 2>&1 &
  dp_pid=$!
}

stop_dp() {
  kill "$dp_pid" 2>/dev/null || true
  wait "$dp_pid" 2>/dev/null || true
  dp_pid=
}

# total INSTANCE EXPR: a Python expression over the stats' "total" (t) and drops (d).
total() {
  "$dpctl" --instance "$1" stats --json 2>/dev/null | /usr/bin/python3 -c "
import json, sys
t = json.load(sys.stdin)['total']
d = t['drops']
print($2)" 2>/dev/null
}

# Counters reach shared memory every 200 ms: wait_total INSTANCE COND waits until COND holds.
total_holds() { [[ $(total "$1" "$2") == True ]]; }
wait_total() { wait_for 30 total_holds "$1" "$2"; }

"$gen" --out "$work/gen" --peers "$peers" --packets "$packets" --sizes 64,1420 --seed 7 \
  >"$work/gen.log"
check "generator wrote pcaps, policy, key and sessions" \
  test -s "$work/gen/wg-64.pcap" -a -s "$work/gen/wg-1420.pcap" -a -s "$work/gen/policy.alp" \
  -a -s "$work/gen/static-sessions" -a -s "$work/gen/dut.key"
check "the static sessions file is readable by its owner only" \
  test "$(stat -c %a "$work/gen/static-sessions")" = 600

# 1. One pass.
one=bpone$$
start_dp "$one" "net_pcap0,rx_pcap=$work/gen/wg-64.pcap,tx_pcap=$work/out-64.pcap" \
  --static-sessions "$work/gen/static-sessions"
check "one pass: all $expected packets received and forwarded" \
  wait_total "$one" "t['rx_packets'] == $expected and t['forwarded_packets'] == $expected"
check "one pass: no drop of any kind" test "$(total "$one" "sum(d.values())")" = 0
check "one pass: as many sent as received" test "$(total "$one" "t['tx_packets']")" = "$expected"
check "the data plane warned that static sessions are in use" \
  grep -q "WARNING: $peers STATIC SESSION(S) IN USE, FOR BENCHMARKS ONLY" "$work/$one.log"
stop_dp
check "every frame sent opens with the next peer's send key" \
  "$gen" --check-tx "$work/gen/static-sessions" "$work/out-64.pcap"
check "and there are $expected of them" \
  grep -q "^$expected frames" <("$gen" --check-tx "$work/gen/static-sessions" "$work/out-64.pcap")

# 2. Looping over the file, as a traffic generator does.
loop=bploop$$
start_dp "$loop" "net_pcap0,rx_pcap=$work/gen/wg-1420.pcap,infinite_rx=1" \
  --static-sessions "$work/gen/static-sessions"
check "looping: later passes arrive" wait_total "$loop" "d['replay'] >= 2 * $expected"
check "looping: exactly the first pass is forwarded" \
  test "$(total "$loop" "t['forwarded_packets']")" = "$expected"
check "looping: every other packet is a replay drop, nothing else dropped" \
  test "$(total "$loop" "sum(d.values()) - d['replay']")" = 0
stop_dp

# 3. A malformed file: line 4 (the second session) loses its send key.
awk 'NR == 4 { $5 = "" } { print }' "$work/gen/static-sessions" >"$work/bad-sessions"
set +e
"$dp" --no-huge -m 512 --no-pci --no-telemetry --file-prefix "bpbad$$" -l 0,1 \
  --log-level='*:warning' --vdev "net_pcap0,rx_pcap=$work/gen/wg-64.pcap" -- \
  --address 198.18.0.1 --private-key "$work/gen/dut.key" --policy "$work/gen/policy.alp" \
  --instance "bpbad$$" --static-sessions "$work/bad-sessions" >"$work/bad-run.log" 2>&1
status=$?
set -e
check "malformed sessions file: the data plane exits with status 1" test "$status" -eq 1
check "the error names the file and line 4" \
  grep -q "static sessions $work/bad-sessions: line 4: expected 7 fields" "$work/bad-run.log"
leaked=0
while read -r key; do
  grep -qF -- "$key" "$work"/*.log && leaked=1
done < <(awk '!/^#/ { print $4; print $5 }' "$work/gen/static-sessions")
check "no session key appears in any log" test "$leaked" = 0

echo "$passed passed, $failed failed"
((failed == 0))
