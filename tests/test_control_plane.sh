#!/usr/bin/env bash
# airlock-control stops cleanly on SIGTERM: it stops accepting, lets the requests in flight end
# within its drain time (--drain-seconds), cuts the rest, exits with status 0 with every request
# in the log (one still streaming after the drain is recorded as cut short), and under valgrind
# makes no access to freed memory. The gateway spreads connections over two io_contexts; a shutdown that destroys one
# while the other still holds its handlers reads freed memory, and with MALLOC_PERTURB_ that
# hangs the process. Runs the control plane as a bare gateway (--no-dataplane), so no root.
# Usage: test_control_plane.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:?usage: test_control_plane.sh BUILD_DIR}" && pwd)
control=$build/control/app/airlock-control
sim=$build/control/sim/airlock-sim-upstream
work=$(mktemp -d /tmp/airlock-control-plane.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [[ -n ${AIRLOCK_KEEP_WORK:-} ]] || rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for log in control sim; do
    echo "--- $log log"
    tail -n 40 "$work/$log.log" 2>/dev/null || true
  done
  exit 1
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Created here: the background job opens it only when it gets scheduled, and a read of a missing
# file would end this script under set -e.
: >"$work/sim.out"
"$sim" --listen 127.0.0.1:0 --quiet >"$work/sim.out" 2>"$work/sim.log" &
pids+=($!)
for _ in $(seq 100); do
  sim_addr=$(sed -n '1s/^listening on //p' "$work/sim.out")
  [[ -n $sim_addr ]] && break
  sleep 0.1
done
[[ -n $sim_addr ]] || fail "the simulated upstream did not start"

peer=$(wg genkey | wg pubkey)
cat >"$work/policy.json" <<JSON
{
  "version": 1,
  "peers": [{"public_key": "$peer", "allowed_ips": ["100.80.0.2/32"], "user": "alice"}],
  "providers": [{"name": "openai", "kind": "openai", "base_url": "http://$sim_addr",
                 "models": ["*"]}],
  "grants": [{"from": ["*"], "models": ["*"]}]
}
JSON

runner=()
if command -v valgrind >/dev/null; then
  # airlock-control allocates through tcmalloc: memcheck must track its heap as it does glibc's.
  # tcmalloc's sized operator delete[] is an alias of its free, so memcheck would take every
  # delete[] for a mismatched free.
  runner=(valgrind --quiet --error-exitcode=99 --soname-synonyms='somalloc=*tcmalloc*'
    --show-mismatched-frees=no --log-file="$work/valgrind.log")
else
  echo "note: valgrind not installed; checking the exit only"
fi
admin_port=$(free_port)
gateway_port=$(free_port)
gateway=http://127.0.0.1:$gateway_port
drain=6
"${runner[@]}" "$control" --no-dataplane --threads 2 --drain-seconds $drain --policy "$work/policy.json" \
  --db "$work/requests.db" --local-peer "$peer" --admin-listen "127.0.0.1:$admin_port" \
  --gateway-listen "127.0.0.1:$gateway_port" >"$work/control.log" 2>&1 &
control_pid=$!
pids+=("$control_pid")
for _ in $(seq 600); do
  curl -s -o /dev/null "http://127.0.0.1:$admin_port/" && break
  kill -0 "$control_pid" 2>/dev/null || fail "airlock-control exited at start"
  sleep 0.1
done

# Named threads, so that top -H and perf tell them apart.
names=" $(cat /proc/"$control_pid"/task/*/comm | tr '\n' ' ')"
for want in airlock-io-1 airlock-store airlock-ledger airlock-outbox airlock-hooks; do
  [[ $names == *" $want "* ]] || fail "no thread named $want (threads:$names)"
done
echo "ok: the control plane's threads are named"

# Two finished requests and a stream: connections go to the two io_contexts in turn, and the
# accept loop waits with the socket for the next one, so after three it holds one of the second.
chat='{"model":"gpt-4o","messages":[{"role":"user","content":"hello"}]}'
for _ in 1 2; do
  status=$(curl -s -o "$work/chat.json" -w '%{http_code}' -H 'content-type: application/json' \
    -d "$chat" "$gateway/v1/chat/completions")
  [[ $status == 200 ]] || fail "chat completions answered $status: $(cat "$work/chat.json")"
done

# The stream is still open when the signal comes.
stall='{"model":"sim-stall","stream":true,"messages":[{"role":"user","content":"hold on"}]}'
curl -s -N -H 'content-type: application/json' -d "$stall" "$gateway/v1/chat/completions" \
  >"$work/stall.txt" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  [[ -s $work/stall.txt ]] && break
  sleep 0.1
done
[[ -s $work/stall.txt ]] || fail "the stalled stream sent nothing"

# A slow request (the simulated provider waits 2 s before it answers) is in flight too: it
# reaches the provider before the signal, and its answer comes during the drain.
slow='{"model":"sim-slow","messages":[{"role":"user","content":"take your time"}]}'
curl -s -o "$work/slow.json" -w '%{http_code}' -H 'content-type: application/json' -d "$slow" \
  "$gateway/v1/chat/completions" >"$work/slow.status" 2>&1 &
slow_pid=$!
pids+=("$slow_pid")
for _ in $(seq 300); do
  curl -s "http://$sim_addr/_sim/requests" | grep -q sim-slow && break
  sleep 0.1
done

kill -TERM "$control_pid"
stopped_at=$SECONDS
for _ in $(seq 100); do
  grep -q "airlock-control: stopping" "$work/control.log" && break
  sleep 0.1
done
rc=0
curl -s -o /dev/null -H 'content-type: application/json' -d "$chat" \
  "$gateway/v1/chat/completions" || rc=$?
((rc == 7)) || fail "a request after SIGTERM was not refused (curl exit $rc)"
wait "$slow_pid" || true
[[ $(cat "$work/slow.status") == 200 ]] ||
  fail "the request in flight at SIGTERM got $(cat "$work/slow.status"): $(cat "$work/slow.json")"
grep -q '"usage"' "$work/slow.json" || fail "the drained request's answer is cut: $(cat "$work/slow.json")"
echo "ok: after SIGTERM new requests are refused and the one in flight gets its whole answer"
deadline=$((SECONDS + 60))
while kill -0 "$control_pid" 2>/dev/null; do
  ((SECONDS < deadline)) || fail "airlock-control still running 60 s after SIGTERM"
  sleep 0.2
done
rc=0
wait "$control_pid" || rc=$?
((rc != 99)) || fail "valgrind found invalid memory accesses: $(head -n 12 "$work/valgrind.log")"
((rc == 0)) || fail "airlock-control exited with $rc after SIGTERM"
((SECONDS - stopped_at >= drain - 1)) || fail "the stalled stream was cut before the drain time"
grep -q "still open after $drain s: cutting them" "$work/control.log" ||
  fail "the control log does not say what the drain cut"
grep -qx "airlock-control: stopped" "$work/control.log" || fail "no 'stopped' in the control log"
echo "ok: airlock-control exits 0 on SIGTERM${runner:+, valgrind clean}"

/usr/bin/python3 - "$work/requests.db" <<'PY' || fail "the request log is incomplete"
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT model, status, streamed, usage_complete, user, error FROM requests"
    " ORDER BY time_ms").fetchall()
assert len(rows) == 4, rows
by_model = {}
for row in rows:
    by_model.setdefault(row[0], []).append(row)
done = by_model["gpt-4o"]
assert len(done) == 2, rows
for row in done:
    assert row[:4] == ("gpt-4o", 200, 0, 1) and row[4] == "alice" and not row[5], row
[slow] = by_model["sim-slow"]
assert slow[:4] == ("sim-slow", 200, 0, 1) and not slow[5], slow
[cut] = by_model["sim-stall"]
assert cut[2] == 1 and cut[3] == 0 and cut[4] == "alice", cut
assert cut[5] == "the gateway stopped before the request ended", cut
PY
echo "ok: every request is in the log, the drained one whole, the stream cut after the drain marked incomplete and why"
