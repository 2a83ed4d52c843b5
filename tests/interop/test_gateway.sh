#!/usr/bin/env bash
# The keyless AI gateway end to end, as root: wireguard-go sandboxes in network namespaces
# reach the simulated provider only through airlock-dataplane (net_af_packet) -> shared-memory
# rings -> airlock-control (TUN, kernel TCP, HTTP gateway) -> airlock-sim-upstream on loopback.
# Usage: test_gateway.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/interop/lib.sh
source "$here/lib.sh"

build=$(cd "${1:?usage: test_gateway.sh BUILD_DIR}" && pwd)
require_root_or_skip
require_cmd wireguard-go wg ip curl /usr/bin/python3

dp=$build/dataplane/airlock-dataplane
dpctl=$build/dataplane/airlock-dpctl
control=$build/control/app/airlock-control
ctl=$build/control/ctl/airlockctl
sim=$build/control/sim/airlock-sim-upstream
instance=gw$$
work=$(mktemp -d /tmp/airlock-gateway.XXXXXX)
admin_port=$((20000 + $$ % 20000))
admin=http://127.0.0.1:$admin_port
gateway=http://100.80.0.1
# Canary provider keys: they must reach the provider and nothing else.
export AIRLOCK_TEST_OPENAI_KEY=sk-canary-openai-7f3a9c1e5b
export AIRLOCK_TEST_ANTHROPIC_KEY=sk-ant-canary-2d8e6b4a90
export AIRLOCK_TEST_GEMINI_KEY=AIza-canary-gemini-5c1f0e77d2
passed=0
failed=0

cleanup() {
  local status=$?
  for pid in ${control_pid:-} ${dp_pid:-} ${sim_pid:-}; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  topology_down >/dev/null 2>&1 || true
  if ((failed > 0 || status != 0)); then
    for log in control dp sim; do
      echo "--- $log log"
      tail -n 30 "$work/$log.log" 2>/dev/null || true
    done
  fi
  [[ -n ${AIRLOCK_KEEP_WORK:-} ]] || rm -rf "$work"
}
on_exit cleanup

"$sim" --listen 127.0.0.1:0 --quiet >"$work/sim.out" 2>"$work/sim.log" &
sim_pid=$!
wait_for 10 grep -q '^listening on ' "$work/sim.out" || die "simulated upstream did not start"
sim_url=http://$(sed -n 's/^listening on //p' "$work/sim.out" | head -1)

topology_down >/dev/null 2>&1 || true
topology_up a b >/dev/null
for n in hub a b; do gen_peer_key "$work" "$n"; done

write_policy() {  # write_policy VERSION FILE [EXTRA_TEST]
  cat >"$2" <<JSON
{
  // Gateway interop: alice may use every model; bob only OpenAI's gpt-* models.
  "version": $1,
  "gateway": ["100.80.0.1/32"],
  "peers": [
    {"public_key": "$(cat "$work/a.pub")", "allowed_ips": ["100.80.0.2/32"],
     "user": "alice", "device": "sandbox-a", "tags": ["agent"]},
    {"public_key": "$(cat "$work/b.pub")", "allowed_ips": ["100.80.0.3/32"],
     "user": "bob", "device": "sandbox-b", "groups": ["ci"]}
  ],
  "rules": [
    {"name": "gateway", "from": ["*"], "to": ["100.80.0.1/32"], "proto": "tcp", "ports": "80",
     "action": "punt"}
  ],
  "providers": [
    {"name": "openai", "kind": "openai", "base_url": "$sim_url", "models": ["gpt-*", "sim-*"],
     "key": "env:AIRLOCK_TEST_OPENAI_KEY"},
    {"name": "anthropic", "kind": "anthropic", "base_url": "$sim_url", "models": ["claude-*"],
     "key": "env:AIRLOCK_TEST_ANTHROPIC_KEY"},
    {"name": "gemini", "kind": "gemini", "base_url": "$sim_url",
     "models": ["gemini-2.5-flash", "gemini-*"], "key": "env:AIRLOCK_TEST_GEMINI_KEY"}
  ],
  "grants": [
    {"from": ["user:alice"], "models": ["*"]},
    {"from": ["group:ci"], "models": ["openai/gpt-*"]}
  ],
  "prices": {"openai/gpt-sim-1": {"input": "2", "output": "8"}},
  "request_log": {"bodies": true},
  "guardrails": [
    {"name": "secrets", "builtin": ["provider_keys"], "prompt": "redact"},
    {"name": "codes", "patterns": [{"name": "launch-codes", "literal": "LAUNCH-CODES-0000"}],
     "prompt": "block"}
  ],
  "tests": [
    {"from": "user:bob", "model": "anthropic/claude-sonnet-4-5", "expect": "deny"},
    {"from": "user:alice", "to": "100.80.0.1", "proto": "tcp", "port": 80, "expect": "allow"}
    ${3:-}
  ]
}
JSON
}
write_policy 1 "$work/policy.json"
"$build/policy/airlock-policy-build" "$work/policy.json" "$work/policy.alp" >/dev/null

ns_exec "$AL_HUB_NS" "$dp" --no-huge -m 1024 --no-pci --no-telemetry --file-prefix "$instance" \
  -l 0,1 --vdev=net_af_packet0,iface="$AL_DP_IF" -- \
  --address "$AL_HUB_UNDERLAY_IP" --private-key "$work/hub.key" --policy "$work/policy.alp" \
  --instance "$instance" >"$work/dp.log" 2>&1 &
dp_pid=$!
wait_for 20 "$dpctl" --instance "$instance" version >/dev/null 2>&1 ||
  die "data plane did not start: $(cat "$work/dp.log")"

"$control" --policy "$work/policy.json" --instance "$instance" --db "$work/requests.db" \
  --tun "algw$$" --admin-listen "127.0.0.1:$admin_port" --hub-endpoint "$AL_HUB_ENDPOINT" \
  --hub-public-key "$work/hub.pub" >"$work/control.log" 2>&1 &
control_pid=$!
export AIRLOCK_ADMIN=$admin
wait_for 20 "$ctl" policy show >/dev/null 2>&1 || die "control plane did not start: $(cat "$work/control.log")"

hub_pub=$(cat "$work/hub.pub")
for p in a b; do
  start_peer "al-$p" --private-key-file "$work/$p.key" --address "$(peer_tunnel_ip "$p")/32" \
    --route "$AL_TUNNEL_ROUTE" --hub-public-key "$hub_pub" --hub-endpoint "$AL_HUB_ENDPOINT"
done

# curl_in NS ARGS...: an HTTP call from inside a sandbox, which holds no provider key.
curl_in() { local ns=$1; shift; ns_exec "$ns" curl -sS --max-time 20 "$@"; }
chat='{"model":"gpt-sim-1","messages":[{"role":"user","content":"say hello"}]}'
wait_for 15 curl_in al-a -o /dev/null "$gateway/v1/models" || die "gateway unreachable from the sandbox"

curl_in al-a -o "$work/chat.json" -H 'content-type: application/json' \
  -H 'Authorization: Bearer sandbox-client-token' -H 'x-api-key: sandbox-x-api-key' \
  -d "$chat" "$gateway/v1/chat/completions"
check "chat completions without a key" grep -q '"object": *"chat.completion"' "$work/chat.json"

curl_in al-a -N -o "$work/chat-stream.txt" -H 'content-type: application/json' \
  -d '{"model":"gpt-sim-1","stream":true,"messages":[{"role":"user","content":"stream please"}]}' \
  "$gateway/v1/chat/completions"
check "streamed chat completions end with [DONE]" grep -q '^data: \[DONE\]' "$work/chat-stream.txt"
check "the usage chunk the gateway asked for is hidden from the client" \
  bash -c "! grep -q '\"usage\":{' '$work/chat-stream.txt'"

curl_in al-a -N -o "$work/messages-stream.txt" -H 'content-type: application/json' \
  -H 'anthropic-version: 2023-06-01' -H 'anthropic-beta: tools-2024-04-04' \
  -d '{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}' \
  "$gateway/v1/messages"
check "streamed Anthropic messages reach message_stop" grep -q 'event: message_stop' "$work/messages-stream.txt"

curl_in al-a -o "$work/responses.json" -H 'content-type: application/json' \
  -d '{"model":"gpt-sim-1","input":"list files","tools":[{"type":"function","name":"shell","parameters":{"type":"object"}}]}' \
  "$gateway/v1/responses"
check "Responses API answered" grep -q '"object": *"response"' "$work/responses.json"

gemini_body='{"contents":[{"role":"user","parts":[{"text":"hello gemini"}]}]}'
curl_in al-a -N -o "$work/gemini-stream.txt" -H 'content-type: application/json' \
  -H 'x-goog-api-key: sandbox-goog-key' -d "$gemini_body" \
  "$gateway/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=sandbox-query-key"
check "streamed Gemini generateContent ends with its usageMetadata" \
  grep -q '"usageMetadata"' "$work/gemini-stream.txt"
curl_in al-a -o "$work/gemini-count.json" -H 'content-type: application/json' \
  -d "$gemini_body" "$gateway/v1beta/models/gemini-2.5-flash:countTokens"
check "Gemini countTokens answered" grep -q '"totalTokens"' "$work/gemini-count.json"
curl_in al-a -o "$work/gemini-models.json" "$gateway/v1beta/models"
check "GET /v1beta/models lists the granted Gemini models in Gemini's shape" \
  grep -q '"name": *"models/gemini-2.5-flash"' "$work/gemini-models.json"

status=$(curl_in al-b -o "$work/denied.json" -w '%{http_code}' -H 'content-type: application/json' \
  -H 'anthropic-version: 2023-06-01' \
  -d '{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}' \
  "$gateway/v1/messages")
check "ungranted model: 403" test "$status" = 403
check "the 403 is in Anthropic's error format" grep -q '"type": *"error"' "$work/denied.json"

curl -sS "$sim_url/_sim/requests" >"$work/upstream.json"
upstream_check() {
  /usr/bin/python3 - "$work/upstream.json" <<'PY'
import json, os, sys
reqs = json.load(open(sys.argv[1]))
assert reqs, "no request reached the upstream"
def headers(r):
    return {k.lower(): v for k, v in (r["headers"].items() if isinstance(r["headers"], dict) else r["headers"])}
for r in reqs:
    h = headers(r)
    text = json.dumps(h)
    assert "sandbox-client-token" not in text and "sandbox-x-api-key" not in text, "client auth forwarded"
    assert "sandbox-goog-key" not in text and "sandbox-query-key" not in r["target"], "client key forwarded"
    if r["target"].startswith("/v1beta/"):
        assert h.get("x-goog-api-key") == os.environ["AIRLOCK_TEST_GEMINI_KEY"], "gemini key missing"
    elif r["target"].startswith("/v1/messages"):
        assert h.get("x-api-key") == os.environ["AIRLOCK_TEST_ANTHROPIC_KEY"], "anthropic key missing"
        assert h.get("anthropic-version") == "2023-06-01" and h.get("anthropic-beta") == "tools-2024-04-04"
    else:
        assert h.get("authorization") == "Bearer " + os.environ["AIRLOCK_TEST_OPENAI_KEY"], "openai key missing"
PY
}
check "upstream got the central keys and none of the client's auth headers" upstream_check

"$ctl" requests --json >"$work/requests.json"
log_check() {
  /usr/bin/python3 - "$work/requests.json" "$(cat "$work/a.pub")" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
reqs = doc["requests"] if isinstance(doc, dict) else doc
by = {}
for r in reqs:
    by.setdefault((r["user"], r["api"], r["streamed"]), r)
chat = by[("alice", "openai.chat", False)]
assert chat["peer_key"] == sys.argv[2] and chat["device"] == "sandbox-a", chat
assert chat["input_tokens"] > 0 and chat["output_tokens"] > 0, chat
# gpt-sim-1 is priced by the policy at $2 / $8 per million tokens.
want = chat["input_tokens"] * 2_000_000 + chat["output_tokens"] * 8_000_000
assert chat["cost_picodollars"] == want, (chat, want)
stream = by[("alice", "openai.chat", True)]
assert stream["usage_complete"] and stream["output_tokens"] > 0, stream
assert by[("alice", "anthropic.messages", True)]["output_tokens"] > 0
denied = by[("bob", "anthropic.messages", False)]
assert denied["status"] == 403 and denied["error"], denied
gemini = by[("alice", "gemini.stream", True)]
assert gemini["usage_complete"] and gemini["output_tokens"] > 0, gemini
count = by[("alice", "gemini.count_tokens", False)]
assert count["status"] == 200 and count["cost_picodollars"] == 0, count
# One record per request: the seven calls above plus the model lists.
assert len([r for r in reqs if r["api"] != "models"]) == 7, len(reqs)
PY
}
check "request log: identity, tokens and cost per request, the denial too" log_check

# Guardrails through the tunnel: a provider key in a prompt is redacted before the provider or
# the log sees it; a blocked word stops the request at the gateway.
leak=sk-proj-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
curl -sS -X DELETE "$sim_url/_sim/requests" >/dev/null
curl_in al-a -o "$work/redacted.json" -H 'content-type: application/json' \
  -d '{"model":"gpt-sim-1","messages":[{"role":"user","content":"deploy with '"$leak"' now"}]}' \
  "$gateway/v1/chat/completions"
check "a prompt with a provider key is answered (redacted)" \
  grep -q '"object": *"chat.completion"' "$work/redacted.json"
curl -sS "$sim_url/_sim/requests" >"$work/upstream-guard.json"
check "the provider got [REDACTED:provider_keys/openai] instead of the key" \
  grep -qF 'REDACTED:provider_keys/openai' "$work/upstream-guard.json"
check "the key never reached the provider" bash -c "! grep -qF '$leak' '$work/upstream-guard.json'"
status=$(curl_in al-a -o "$work/blocked.json" -w '%{http_code}' -H 'content-type: application/json' \
  -d '{"model":"gpt-sim-1","messages":[{"role":"user","content":"LAUNCH-CODES-0000 please"}]}' \
  "$gateway/v1/chat/completions")
check "a blocked prompt gets 400 guardrail_blocked" \
  bash -c "[ '$status' = 400 ] && grep -q guardrail_blocked '$work/blocked.json'"
check "the blocked prompt never reached the provider" bash -c \
  "curl -sS '$sim_url/_sim/requests' | grep -c LAUNCH-CODES | grep -qx 0"
"$ctl" requests --json --limit 5 >"$work/requests-guard.json"
guard_log_check() {
  /usr/bin/python3 - "$work/requests-guard.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
reqs = doc["requests"] if isinstance(doc, dict) else doc
assert any(r["status"] == 400 and "codes" in r["error"] for r in reqs), reqs
PY
}
check "the request log names the guardrail that blocked" guard_log_check

if [[ -x $here/../sdk/run.sh ]] && command -v node >/dev/null; then
  if "$here/../sdk/run.sh" --install-only >"$work/sdk-install.log" 2>&1; then
    check "official SDKs (openai, @anthropic-ai/sdk) work unmodified through the tunnel" \
      ns_exec al-a "$here/../sdk/run.sh" "$gateway"
  else
    echo "skip: SDK check (npm install failed: $(tail -n 1 "$work/sdk-install.log"))"
  fi
fi

# Coding agents themselves, unmodified, from the sandbox: one turn each, in which the simulated
# model has the agent run a shell command and then answers.
if [[ -x $here/../agents/run.sh ]] && command -v node >/dev/null; then
  if "$here/../agents/run.sh" --install-only >"$work/agents-install.log" 2>&1; then
    agent_turn() {  # agent_turn AGENT: it answered, and never retried a connection
      ns_exec al-a "$here/../agents/run.sh" "$gateway" "$1" "$work/$1" &&
        grep -q 'simulated response' "$work/$1/agent.out" &&
        ! grep -q Reconnecting "$work/$1/agent.err"
    }
    check "Codex (a custom provider without WebSockets, as the README has it) completes a turn" \
      agent_turn codex
    curl -sS -X DELETE "$sim_url/_sim/requests" >/dev/null
    check "Codex (built-in provider) completes a turn over its WebSocket, with no reconnects" \
      agent_turn codex-builtin
    curl -sS "$sim_url/_sim/requests" >"$work/upstream-websocket.json"
    websocket_check() {
      /usr/bin/python3 - "$work/upstream-websocket.json" <<'PY'
import json, sys
seen = json.load(open(sys.argv[1]))
upgrades = [r for r in seen if r["method"] == "GET" and r["target"].startswith("/v1/responses")]
assert len(upgrades) == 1, seen
assert upgrades[0]["headers"].get("upgrade", "").lower() == "websocket", upgrades
assert upgrades[0]["headers"].get("authorization", "").startswith("Bearer sk-"), upgrades
turns = [r for r in seen if r["method"] == "WS"]
assert len(turns) >= 2 and not [r for r in seen if r["method"] == "POST"], seen
PY
    }
    check "the provider got Codex's turns on one WebSocket with the central key, none over HTTP" \
      websocket_check
    check "Claude Code completes a turn" agent_turn claude
    "$ctl" requests --json --limit 40 >"$work/requests-agents.json"
    "$ctl" tools --user alice --json >"$work/tools-agents.json"
    agent_log_check() {
      /usr/bin/python3 - "$work/requests-agents.json" "$work/tools-agents.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
reqs = doc["requests"] if isinstance(doc, dict) else doc
def turns(api):
    return [r for r in reqs if r["api"] == api and r["user"] == "alice" and r["status"] == 200]
assert len(turns("openai.responses")) >= 4, reqs  # per Codex turn: the tool call, the answer
assert len(turns("anthropic.messages")) >= 2, reqs
assert not [r for r in reqs if r["status"] == 426], reqs  # no WebSocket was refused
tools = json.load(open(sys.argv[2]))["tool_calls"]
for name in ("exec_command", "Bash"):
    runs = [t for t in tools if t["name"] == name and "ls -la" in t["arguments"]]
    assert runs, (name, tools)
    assert any("README.txt" in (t.get("result") or {}).get("content", "") for t in runs), runs
PY
    }
    check "the log holds the agents' turns as alice, their commands and output" \
      agent_log_check
    check "the agents' placeholder key never reached the provider" bash -c \
      "curl -sS '$sim_url/_sim/requests' | grep -c airlock-placeholder-key | grep -qx 0"
  else
    echo "skip: coding agent checks (npm install failed: $(tail -n 1 "$work/agents-install.log"))"
  fi
fi

write_policy 2 "$work/policy-bad.json" \
  ', {"from": "user:bob", "model": "anthropic/claude-sonnet-4-5", "expect": "allow"}'
check "policy check rejects a policy whose tests fail" bash -c "! '$ctl' policy check '$work/policy-bad.json' >/dev/null 2>&1"
check "policy push rejects it too" bash -c "! '$ctl' policy push '$work/policy-bad.json' >/dev/null 2>&1"
check "the running policy is still version 1" \
  bash -c "'$dpctl' --instance '$instance' version | grep -qx 'OK 1'"
write_policy 2 "$work/policy-2.json"
check "a good policy pushes" "$ctl" policy push "$work/policy-2.json"
check "the data plane acknowledged version 2" \
  bash -c "'$dpctl' --instance '$instance' version | grep -qx 'OK 2'"
check "the gateway still answers after the push" \
  curl_in al-a -o /dev/null -f -H 'content-type: application/json' -d "$chat" "$gateway/v1/chat/completions"

kill "$control_pid" && wait "$control_pid" 2>/dev/null || true
control_pid=
canary_check() {
  ! grep -rqaF -e "$AIRLOCK_TEST_OPENAI_KEY" -e "$AIRLOCK_TEST_ANTHROPIC_KEY" \
    -e "$AIRLOCK_TEST_GEMINI_KEY" -e "$leak" \
    "$work/control.log" "$work"/*.db* "$work"/*.txt \
    "$work/chat.json" "$work/responses.json" "$work/denied.json" "$work/requests.json" \
    "$work"/gemini-*.json
}
check "the canary provider keys and the redacted secret appear in no log, database row or response" \
  canary_check

echo "gateway interop: $passed passed, $failed failed"
((failed == 0))
