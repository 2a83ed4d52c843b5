#!/usr/bin/env bash
# What the Airlock gateway adds to a provider request, measured against nginx as a plain reverse
# proxy doing the same hop. Everything runs on loopback against the simulated provider:
#
#   direct   airlock-http-load -> airlock-sim-upstream
#   nginx    airlock-http-load -> nginx (proxy_pass, keep-alive, unbuffered) -> sim
#   gateway  airlock-http-load -> gateway -> sim
#
# Latency mode: interleaved rounds (each round runs every path once, in a rotating order, so a
# slow patch of the shared machine hits all paths alike) of open-loop load with a small
# non-streamed chat completion; prints a markdown table of the medians over rounds of p50 and
# p99, the latency each proxy ADDS over direct (the per-round difference, then its median), and
# gateway_added / nginx_added.
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
# Usage: bench/gateway_latency.sh [--build DIR] [--mode latency|memory|both] [--rounds N]
#          [--seconds S] [--rate R] [--connections C] [--streams N] [--nginx-workers N]
#          [--gateway-cmd CMD] [--gateway-header 'K: V']... [--no-gateway]
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
gateway_headers=()
memory_of_url=""
memory_of_pid=""

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

wait_for_port() {  # NAME PORT PID
  local name="$1" port="$2" pid="$3"
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || die "$name exited during startup: $(cat "$tmp/$name".*err)"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "$name did not listen on 127.0.0.1:$port within 10 s"
}

# --- the simulated provider ---
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

paths=(direct nginx)
declare -A url=([direct]="$sim_url" [nginx]="$nginx_url")
declare -A pid=([direct]="$sim_pid" [nginx]="$nginx_pid")
if [[ -n "$gateway_url" ]]; then
  paths+=(gateway)
  url[gateway]="$gateway_url"
  pid[gateway]="$gateway_pid"
fi

load_args() {  # PATH-NAME
  local args=(--url "${url[$1]}$chat_path" --body-json "$chat_body" --connections "$connections")
  [[ "$1" == gateway ]] && args+=("${gateway_headers[@]}")
  printf '%s\n' "${args[@]}"
}

# A short run per path up front: proves each path answers and warms connection pools.
for p in "${paths[@]}"; do
  mapfile -t args < <(load_args "$p")
  if ! "$load" "${args[@]}" --rate "$rate" --duration 2 >/dev/null 2>"$tmp/warmup.err"; then
    die "$p (${url[$p]}) does not answer the chat request: $(cat "$tmp/warmup.err")"
  fi
done

echo "machine: $(nproc) cores; sim $sim_url, nginx $nginx_url ($nginx_workers worker(s))${gateway_url:+, gateway $gateway_url}"
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
    headers=()
    [[ "$p" == gateway ]] && headers=("${gateway_headers[@]}")
    result="$(measure_memory "${url[$p]}" "${pid[$p]}" "${headers[@]}" 2>"$tmp/memory.err")" ||
      echo "gateway_latency: $p memory run incomplete: $(cat "$tmp/memory.err")" >&2
    python3 -c '
import json, sys
r = json.loads(sys.argv[2])
print("| {} | {}/{} | {} | {} | {:.1f} |".format(sys.argv[1], r["open"], r["streams"],
      r.get("rss_before_kb", "?"), r.get("rss_open_kb", "?"), r.get("rss_per_stream_kb", float("nan"))))
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
  python3 - "$results" "$rounds" "$seconds" "$rate" "$connections" <<'EOF'
import json, statistics, sys
path, rounds, seconds, rate, connections = sys.argv[1:]
runs = [json.loads(line) for line in open(path)]
by = {}
for run in runs:
    by.setdefault(run["path"], {})[run["round"]] = run["result"]
names = [n for n in ("direct", "nginx", "gateway") if n in by]

def med(values):
    return statistics.median(values) if values else float("nan")

def added(name, key):
    common = sorted(set(by[name]) & set(by["direct"]))
    return med([by[name][r][key] - by["direct"][r][key] for r in common])

print(f"## Latency: {rounds} interleaved rounds x {seconds} s at {rate} req/s, "
      f"{connections} connections, non-streamed chat completion")
print()
print("| path | p50 (µs) | p99 (µs) | added p50 (µs) | added p99 (µs) | requests | errors |")
print("|---|---|---|---|---|---|---|")
for name in names:
    rs = by[name].values()
    p50 = med([r["p50_us"] for r in rs])
    p99 = med([r["p99_us"] for r in rs])
    a50 = "—" if name == "direct" else f"{added(name, 'p50_us'):.0f}"
    a99 = "—" if name == "direct" else f"{added(name, 'p99_us'):.0f}"
    print(f"| {name} | {p50:.0f} | {p99:.0f} | {a50} | {a99} | "
          f"{sum(r['sent'] for r in rs)} | {sum(r['errors'] for r in rs)} |")
print()
print("p50/p99: median over rounds of each round's percentile; added: median over rounds of "
      "(path - direct) in the same round.")
if "gateway" in by and "nginx" in by:
    for key in ("p50_us", "p99_us"):
        g, n = added("gateway", key), added("nginx", key)
        ratio = f"{g / n:.2f}" if n > 0 else "n/a (nginx adds nothing measurable)"
        print(f"gateway_added / nginx_added ({key[:3]}): {ratio}")
EOF
fi
