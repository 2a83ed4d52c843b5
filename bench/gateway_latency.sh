#!/usr/bin/env bash
# What the Airlock gateway adds to a provider request, measured against nginx as a plain reverse
# proxy doing the same hop. Everything runs on loopback against the simulated provider:
#
#   direct   airlock-http-load -> airlock-sim-upstream
#   nginx    airlock-http-load -> nginx (proxy_pass, keep-alive, unbuffered) -> sim
#   gateway  airlock-http-load -> gateway -> sim
#   portkey  airlock-http-load -> Portkey's open-source gateway (Node.js) -> sim
#
# Latency mode: interleaved rounds (each round runs every path once, in a rotating order, so a
# slow patch of the shared machine hits all paths alike) of open-loop load with a small
# non-streamed chat completion (with --stream, the same request streamed, as agents send it; a
# request's latency is then until its last event); prints a markdown table of the medians over rounds of p50 and
# p99, the latency each proxy ADDS over direct (the per-round difference, then its median), and
# each proxy's added latency as a multiple of nginx's.
#
# Memory mode: holds N streaming requests to the model "sim-stall" (one event, then silence)
# open through each proxy and reports (RSS while open - RSS before) / N of the proxy's process
# tree. It runs before the latency rounds so the proxies' heaps have not yet grown to a size
# that would absorb the streams unseen.
#
# The gateway, in order of precedence:
#   AIRLOCK_GATEWAY_URL=http://HOST:PORT   an already-running gateway (AIRLOCK_GATEWAY_PID
#                                          enables its memory measurement)
#   --gateway-cmd CMD                      started here; CMD runs under bash with {SIM_URL} and
#                                          {LISTEN} (ADDR:PORT it must listen on) substituted,
#                                          also exported as SIM_URL and GATEWAY_LISTEN
#   airlock-control in the build dir: started as a bare gateway (--no-dataplane, loopback
#                                          clients attributed to one bench peer by --local-peer)
#                                          with a policy that routes every model to the sim;
#                                          $AIRLOCK_GATEWAY_ARGS are appended
# Without any of these only direct and nginx are measured.
#
# Portkey (npm @portkey-ai/gateway) is installed on first use into $PORTKEY_DIR (default
# bench/.cache/portkey, npm registry access needed once) and started with node; requests reach
# the sim through its custom-host headers for an OpenAI-compatible provider. When node or npm
# is missing, the install fails, or Portkey cannot reach the sim, the script says why and
# measures the other paths. Portkey 1.15.2 on Node answers a streamed chat request with a 500
# (the "TypeError: immutable" of Portkey-AI/gateway issues 1389 and 1550), so its memory row
# stays empty.
#
# Usage: bench/gateway_latency.sh [--build DIR] [--mode latency|memory|both] [--rounds N]
#          [--seconds S] [--rate R] [--connections C] [--streams N] [--nginx-workers N]
#          [--stream] [--body FILE] [--gateway-cmd CMD] [--gateway-header 'K: V']...
#          [--no-gateway] [--no-portkey]
#        bench/gateway_latency.sh [--build DIR] [--streams N] --memory-of URL PID
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$repo/build}"
mode=both
rounds=5
seconds=10
rate=500
connections=32
streams=200
nginx_workers=1
gateway_cmd=""
no_gateway=0
no_portkey=0
stream=0
portkey_dir="${PORTKEY_DIR:-$repo/bench/.cache/portkey}"
gateway_headers=()
memory_of_url=""
memory_of_pid=""
body_file=""

die() {
  echo "gateway_latency: $*" >&2
  exit 1
}

usage() {
  sed -n '/^# Usage:/,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

while (($#)); do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --mode) mode="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --streams) streams="$2"; shift 2 ;;
    --nginx-workers) nginx_workers="$2"; shift 2 ;;
    --gateway-cmd) gateway_cmd="$2"; shift 2 ;;
    --gateway-header) gateway_headers+=(--header "$2"); shift 2 ;;
    --no-gateway) no_gateway=1; shift ;;
    --no-portkey) no_portkey=1; shift ;;
    --stream) stream=1; shift ;;
    --body) body_file="$2"; shift 2 ;;
    --memory-of) memory_of_url="$2"; memory_of_pid="$3"; shift 3 ;;
    -h | --help) usage ;;
    *) echo "gateway_latency: unknown option $1" >&2; usage ;;
  esac
done
case "$mode" in latency | memory | both) ;; *) die "--mode must be latency, memory or both" ;; esac

load="$build/bench/airlock-http-load"
sim="$build/control/sim/airlock-sim-upstream"
[[ -x "$load" ]] || die "$load not found; build it: ninja -C $build bench/airlock-http-load"
command -v python3 >/dev/null || die "python3 not found; run scripts/install-deps"

chat_body='{"model":"gpt-5.5","messages":[{"role":"user","content":"Say hello in five words."}],"max_completion_tokens":16}'
request_kind="non-streamed chat completion"
if ((stream)); then
  chat_body='{"model":"gpt-5.5","stream":true,"messages":[{"role":"user","content":"Say hello in five words."}],"max_completion_tokens":16}'
  request_kind="streamed chat completion"
fi
# --body: the latency runs send FILE's request instead (e.g. bench/agent_body.py's agent turn);
# it must name a model the policy routes to the sim ("gpt-5.5").
if [[ -n $body_file ]]; then
  [[ -r $body_file ]] || die "--body: cannot read $body_file"
  chat_body="$(<"$body_file")"
  request_kind="$request_kind, the $(wc -c <"$body_file")-byte body of $(basename "$body_file")"
fi
stall_body='{"model":"sim-stall","stream":true,"messages":[{"role":"user","content":"hold this stream open"}]}'
chat_path=/v1/chat/completions

# One hold-mode run; prints the tool's JSON line.
measure_memory() {  # URL PID [extra load args...]
  local url="$1" pid="$2"
  shift 2
  "$load" --url "$url$chat_path" --body-json "$stall_body" --hold-streams "$streams" \
    --rss-pid "$pid" --timeout 30 "$@"
}

if [[ -n "$memory_of_url" ]]; then
  [[ -d "/proc/$memory_of_pid" ]] || die "no process with pid '$memory_of_pid'"
  measure_memory "$memory_of_url" "$memory_of_pid"
  exit
fi

[[ -x "$sim" ]] || die "$sim not found; build it: ninja -C $build control/sim/airlock-sim-upstream"
command -v nginx >/dev/null || die "nginx not found; run scripts/install-deps"

tmp="$(mktemp -d /tmp/airlock-gateway-bench.XXXXXX)"
# nginx workers drop root privileges and must still reach their temp paths under here.
chmod 0755 "$tmp"
children=()
cleanup() {
  local pid
  for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${children[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Fails with the reason on stdout, for callers that go on without that path.
port_up() {  # NAME PORT PID [TRIES]
  local name="$1" port="$2" pid="$3"
  for _ in $(seq "${4:-100}"); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited during startup: $(cat "$tmp/$name".*err)"
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$name did not listen on 127.0.0.1:$port within $((${4:-100} / 10)) s"
  return 1
}

wait_for_port() {  # NAME PORT PID
  local why
  why="$(port_up "$@")" || die "$why"
}

# --- the simulated provider ---
# Created first: the background job opens it only when scheduled, and under set -e a read of a
# missing file would end the script.
: >"$tmp/sim.out"
"$sim" --listen 127.0.0.1:0 --quiet >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
children+=("$sim_pid")
sim_addr=""
for _ in $(seq 100); do
  sim_addr="$(sed -n '1s/^listening on //p' "$tmp/sim.out")"
  [[ -n "$sim_addr" ]] && break
  kill -0 "$sim_pid" 2>/dev/null || die "airlock-sim-upstream exited: $(cat "$tmp/sim.err")"
  sleep 0.1
done
[[ -n "$sim_addr" ]] || die "airlock-sim-upstream printed no listening address within 10 s"
sim_url="http://$sim_addr"

# --- nginx as the reference reverse proxy ---
nginx_port="$(free_port)"
mkdir -p "$tmp/nginx-temp"
cat >"$tmp/nginx.conf" <<EOF
worker_processes $nginx_workers;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx-temp/body;
  proxy_temp_path $tmp/nginx-temp/proxy;
  fastcgi_temp_path $tmp/nginx-temp/fastcgi;
  uwsgi_temp_path $tmp/nginx-temp/uwsgi;
  scgi_temp_path $tmp/nginx-temp/scgi;
  upstream sim {
    server $sim_addr;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://sim;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
EOF
nginx -e "$tmp/nginx.err" -c "$tmp/nginx.conf" -g 'daemon off;' 2>"$tmp/nginx.stderr" &
nginx_pid=$!
children+=("$nginx_pid")
wait_for_port nginx "$nginx_port" "$nginx_pid"
nginx_url="http://127.0.0.1:$nginx_port"

# --- the gateway ---
gateway_url=""
gateway_pid=""
if ((!no_gateway)); then
  if [[ -n "${AIRLOCK_GATEWAY_URL:-}" ]]; then
    gateway_url="${AIRLOCK_GATEWAY_URL%/}"
    gateway_pid="${AIRLOCK_GATEWAY_PID:-}"
  else
    control="$(find "$build/control" -name airlock-control -type f -perm -u+x 2>/dev/null | head -1)"
    if [[ -z "$gateway_cmd" && -n "$control" ]]; then
      # airlock-control as a bare gateway: no data plane, loopback clients attributed to one
      # bench peer, the simulated provider behind an "openai" provider.
      bench_pub=$(wg genkey | wg pubkey)
      cat >"$tmp/policy.json" <<JSON
{
  "version": 1,
  "peers": [{"public_key": "$bench_pub", "allowed_ips": ["100.80.0.2/32"], "user": "bench"}],
  "providers": [{"name": "openai", "kind": "openai", "base_url": "$sim_url", "models": ["*"]}],
  "grants": [{"from": ["*"], "models": ["*"]}]
}
JSON
      gateway_cmd="$control --no-dataplane --policy $tmp/policy.json --db $tmp/requests.db"
      gateway_cmd+=" --local-peer $bench_pub --admin-listen 127.0.0.1:$(free_port)"
      gateway_cmd+=" --gateway-listen {LISTEN} ${AIRLOCK_GATEWAY_ARGS:-}"
    fi
    if [[ -n "$gateway_cmd" ]]; then
      gateway_listen="127.0.0.1:$(free_port)"
      gateway_cmd="${gateway_cmd//\{SIM_URL\}/$sim_url}"
      gateway_cmd="${gateway_cmd//\{LISTEN\}/$gateway_listen}"
      echo "starting gateway: $gateway_cmd" >&2
      SIM_URL="$sim_url" GATEWAY_LISTEN="$gateway_listen" \
        bash -c "exec $gateway_cmd" >"$tmp/gateway.out" 2>"$tmp/gateway.err" &
      gateway_pid=$!
      children+=("$gateway_pid")
      wait_for_port gateway "${gateway_listen##*:}" "$gateway_pid"
      gateway_url="http://$gateway_listen"
    fi
  fi
  [[ -n "$gateway_url" ]] ||
    echo "gateway_latency: no gateway (set AIRLOCK_GATEWAY_URL or --gateway-cmd); measuring direct and nginx only" >&2
fi

# --- Portkey's gateway, as the Node.js AI-gateway reference ---
# Its custom host must be an OpenAI-compatible base URL; loopback is on its default trusted list.
portkey_headers=(--header "x-portkey-provider: openai" --header "x-portkey-custom-host: $sim_url/v1"
  --header "Authorization: Bearer sk-airlock-bench")
portkey_url=""
portkey_pid=""
skip_portkey=""
# Starts Portkey and sets portkey_url and portkey_pid, or fails with the reason in skip_portkey.
# Runs in this shell, not in $(...), so that the process it starts is ours to stop.
start_portkey() {
  local entry="$portkey_dir/node_modules/@portkey-ai/gateway/build/start-server.js" port
  command -v node >/dev/null || { skip_portkey="node not found"; return 1; }
  if [[ ! -f "$entry" ]]; then
    command -v npm >/dev/null || { skip_portkey="npm not found"; return 1; }
    echo "installing @portkey-ai/gateway into $portkey_dir" >&2
    if ! mkdir -p "$portkey_dir" 2>"$tmp/portkey-install.log"; then
      skip_portkey="cannot create $portkey_dir: $(cat "$tmp/portkey-install.log")"
      return 1
    fi
    # npm retries an unreachable registry for minutes; the benchmark does not wait that long.
    if ! timeout 300 npm install --prefix "$portkey_dir" --no-audit --no-fund \
      @portkey-ai/gateway >"$tmp/portkey-install.log" 2>&1 || [[ ! -f "$entry" ]]; then
      skip_portkey="npm install @portkey-ai/gateway failed: $(tail -5 "$tmp/portkey-install.log")"
      return 1
    fi
  fi
  port="$(free_port)"
  node "$entry" --port="$port" --headless >"$tmp/portkey.out" 2>"$tmp/portkey.err" &
  portkey_pid=$!
  children+=("$portkey_pid")
  # Node takes a few seconds to load Portkey on a busy machine.
  skip_portkey="$(port_up portkey "$port" "$portkey_pid" 300)" || return 1
  portkey_url="http://127.0.0.1:$port"
  # Listening is not enough: Portkey refuses custom hosts it does not trust with an error status,
  # so a few requests must come back 2xx from the sim.
  if ! "$load" --url "$portkey_url$chat_path" --body-json "$chat_body" "${portkey_headers[@]}" \
    --rate 20 --duration 1 >"$tmp/portkey-probe.out" 2>&1; then
    skip_portkey="it does not reach the sim at $sim_url/v1: $(cat "$tmp/portkey-probe.out")"
    portkey_url=""
    kill "$portkey_pid" 2>/dev/null || true
    return 1
  fi
}
if ((stream)) && ((!no_portkey)); then
  echo "gateway_latency: skipping portkey: it answers a streamed chat request with a 500" >&2
elif ((!no_portkey)) && ! start_portkey; then
  echo "gateway_latency: skipping portkey: $skip_portkey" >&2
fi

paths=(direct nginx)
declare -A url=([direct]="$sim_url" [nginx]="$nginx_url")
declare -A pid=([direct]="$sim_pid" [nginx]="$nginx_pid")
if [[ -n "$gateway_url" ]]; then
  paths+=(gateway)
  url[gateway]="$gateway_url"
  pid[gateway]="$gateway_pid"
fi
if [[ -n "$portkey_url" ]]; then
  paths+=(portkey)
  url[portkey]="$portkey_url"
  pid[portkey]="$portkey_pid"
fi

path_headers() {  # PATH-NAME
  local headers=()
  case "$1" in
    gateway) headers=("${gateway_headers[@]}") ;;
    portkey) headers=("${portkey_headers[@]}") ;;
  esac
  ((${#headers[@]} == 0)) || printf '%s\n' "${headers[@]}"
}

load_args() {  # PATH-NAME
  local args=(--url "${url[$1]}$chat_path" --body-json "$chat_body" --connections "$connections")
  printf '%s\n' "${args[@]}"
  path_headers "$1"
}

# A short run per path up front: proves each path answers and warms connection pools.
for p in "${paths[@]}"; do
  mapfile -t args < <(load_args "$p")
  if ! "$load" "${args[@]}" --rate "$rate" --duration 2 >/dev/null 2>"$tmp/warmup.err"; then
    # Portkey answered the probe, so errors now are its response to the load: a result to
    # report in the rounds, not a reason to stop.
    [[ "$p" == portkey ]] || die "$p (${url[$p]}) does not answer the chat request: $(cat "$tmp/warmup.err")"
    echo "gateway_latency: portkey had errors while warming up: $(cat "$tmp/warmup.err")" >&2
  fi
done

echo "machine: $(nproc) cores; sim $sim_url, nginx $nginx_url ($nginx_workers worker(s))${gateway_url:+, gateway $gateway_url}${portkey_url:+, portkey $portkey_url}"
echo

if [[ "$mode" != latency ]]; then
  echo "## Memory per open stream ($streams concurrent streams to sim-stall)"
  echo
  echo "| path | streams open | RSS before (KiB) | RSS open (KiB) | KiB per stream |"
  echo "|---|---|---|---|---|"
  for p in "${paths[@]}"; do
    [[ "$p" == direct ]] && continue
    if [[ -z "${pid[$p]}" ]]; then
      echo "| $p | (no pid: set AIRLOCK_GATEWAY_PID) | | | |"
      continue
    fi
    mapfile -t headers < <(path_headers "$p")
    result="$(measure_memory "${url[$p]}" "${pid[$p]}" "${headers[@]}" 2>"$tmp/memory.err")" ||
      echo "gateway_latency: $p memory run incomplete: $(cat "$tmp/memory.err")" >&2
    python3 -c '
import json, sys
r = json.loads(sys.argv[2])
per_stream = "{:.1f}".format(r["rss_per_stream_kb"]) if r["open"] and "rss_per_stream_kb" in r else "—"
print("| {} | {}/{} | {} | {} | {} |".format(sys.argv[1], r["open"], r["streams"],
      r.get("rss_before_kb", "?"), r.get("rss_open_kb", "?"), per_stream))
' "$p" "$result"
  done
  echo
fi

if [[ "$mode" != memory ]]; then
  results="$tmp/latency.jsonl"
  for ((round = 0; round < rounds; ++round)); do
    for ((i = 0; i < ${#paths[@]}; ++i)); do
      p="${paths[$(((round + i) % ${#paths[@]}))]}"
      mapfile -t args < <(load_args "$p")
      line="$("$load" "${args[@]}" --rate "$rate" --duration "$seconds" 2>"$tmp/round.err")" ||
        echo "gateway_latency: round $round $p had errors: $(cat "$tmp/round.err")" >&2
      echo "{\"round\":$round,\"path\":\"$p\",\"result\":$line}" >>"$results"
      echo "round $((round + 1))/$rounds $p: $line" >&2
    done
  done
  python3 - "$results" "$rounds" "$seconds" "$rate" "$connections" "$request_kind" <<'EOF'
import json, statistics, sys
path, rounds, seconds, rate, connections, request_kind = sys.argv[1:]
runs = [json.loads(line) for line in open(path)]
by = {}
for run in runs:
    by.setdefault(run["path"], {})[run["round"]] = run["result"]
names = [n for n in ("direct", "nginx", "gateway", "portkey") if n in by]

def med(values):
    return statistics.median(values) if values else float("nan")

def added(name, key):
    common = sorted(set(by[name]) & set(by["direct"]))
    return med([by[name][r][key] - by["direct"][r][key] for r in common])

def vs_nginx(name, key):
    if name == "direct" or "nginx" not in by:
        return "—"
    n = added("nginx", key)
    return f"{added(name, key) / n:.2f}" if n > 0 else "n/a"

print(f"## Latency: {rounds} interleaved rounds x {seconds} s at {rate} req/s, "
      f"{connections} connections, {request_kind}")
print()
print("| path | p50 (µs) | p99 (µs) | added p50 (µs) | added p99 (µs) | added p50 / nginx's "
      "| added p99 / nginx's | requests | errors |")
print("|---|---|---|---|---|---|---|---|---|")
for name in names:
    rs = by[name].values()
    p50 = med([r["p50_us"] for r in rs])
    p99 = med([r["p99_us"] for r in rs])
    a50 = "—" if name == "direct" else f"{added(name, 'p50_us'):.0f}"
    a99 = "—" if name == "direct" else f"{added(name, 'p99_us'):.0f}"
    print(f"| {name} | {p50:.0f} | {p99:.0f} | {a50} | {a99} | {vs_nginx(name, 'p50_us')} | "
          f"{vs_nginx(name, 'p99_us')} | {sum(r['sent'] for r in rs)} | "
          f"{sum(r['errors'] for r in rs)} |")
print()
print("p50/p99: median over rounds of each round's percentile; added: median over rounds of "
      "(path - direct) in the same round.")
for name in ("gateway", "portkey"):
    if name not in by or "nginx" not in by:
        continue
    for key in ("p50_us", "p99_us"):
        g, n = added(name, key), added("nginx", key)
        ratio = f"{g / n:.2f}" if n > 0 else "n/a (nginx adds nothing measurable)"
        print(f"{name}_added / nginx_added ({key[:3]}): {ratio}")
# An open-loop run that takes well past its duration had a backlog: its percentiles measure the
# queue in front of a saturated proxy, not the latency the proxy adds.
for name in names:
    elapsed = [r["elapsed_s"] for r in by[name].values()]
    behind = [e for e in elapsed if e > float(seconds) * 1.1]
    if behind:
        print(f"note: {name} fell behind {rate} req/s in {len(behind)}/{len(elapsed)} rounds "
              f"(up to {max(behind):.1f} s for {seconds} s of requests), so its latency includes "
              f"queueing; compare it at a lower --rate")
EOF
fi
