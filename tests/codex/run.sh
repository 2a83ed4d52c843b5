#!/usr/bin/env bash
# Runs one turn of the Codex CLI (npm @openai/codex, unmodified) against a gateway, as an agent
# in a sandbox would, and keeps what it printed.
#
#   tests/codex/run.sh --install-only                    # fetch Codex (needs the registry)
#   ip netns exec al-a tests/codex/run.sh BASE_URL MODE OUT_DIR
#
# BASE_URL: the gateway, e.g. http://100.80.0.1. MODE:
#   provider  a [model_providers.airlock] table with supports_websockets = false, as the README
#             configures Codex;
#   builtin   the built-in OpenAI provider with openai_base_url, which tries a WebSocket on
#             /v1/responses before HTTP.
# OUT_DIR gets codex.out (its stdout) and codex.err (its log). The exit status is Codex's.
#
# node_modules is installed once from the committed lockfile and reused while the lockfile is
# unchanged, so later runs (typically inside a sandbox namespace with no route to the npm
# registry) need no network.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool not found; run scripts/install-deps" >&2
    exit 2
  fi
done

stamp="$here/node_modules/.airlock-lock-sha256"
lock_sum="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]]; then
  echo "installing Codex from package-lock.json" >&2
  (cd "$here" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error >&2)
  echo "$lock_sum" >"$stamp"
fi
[[ ${1:-} == --install-only ]] && exit 0

if (($# != 3)) || [[ $2 != provider && $2 != builtin ]]; then
  echo "usage: $0 BASE_URL provider|builtin OUT_DIR" >&2
  exit 2
fi
base_url=${1%/}
mode=$2
out=$3
mkdir -p "$out"
home=$(mktemp -d /tmp/airlock-codex-home.XXXXXX)
project=$(mktemp -d /tmp/airlock-codex-project.XXXXXX)
trap 'rm -rf "$home" "$project"' EXIT
mkdir -p "$home/.codex"
echo "a file for the agent to find" >"$project/README.txt"
if [[ $mode == provider ]]; then
  cat >"$home/.codex/config.toml" <<TOML
model = "gpt-5.5"
model_provider = "airlock"

[model_providers.airlock]
name = "Airlock"
base_url = "$base_url/v1"
wire_api = "responses"
supports_websockets = false
TOML
else
  cat >"$home/.codex/config.toml" <<TOML
model = "gpt-5.5"
openai_base_url = "$base_url/v1"
TOML
fi

# The sandbox holds no key: Codex gets a placeholder, which the gateway must drop. Nothing from
# the caller's environment may point Codex elsewhere or hand it a real key.
cd "$project"
env -u OPENAI_BASE_URL -u OPENAI_ORG_ID -u OPENAI_PROJECT_ID -u CODEX_HOME \
  HOME="$home" OPENAI_API_KEY=airlock-placeholder-key \
  timeout 120 "$here/node_modules/.bin/codex" exec --skip-git-repo-check \
  "List the files in this directory." </dev/null >"$out/codex.out" 2>"$out/codex.err"
