#!/usr/bin/env bash
# Runs one turn of a coding agent (npm @openai/codex or @anthropic-ai/claude-code, unmodified)
# against a gateway, as in a sandbox, and keeps what it printed.
#
#   tests/agents/run.sh --install-only                     # fetch the agents (needs the registry)
#   ip netns exec al-a tests/agents/run.sh BASE_URL AGENT OUT_DIR
#
# BASE_URL: the gateway, e.g. http://100.80.0.1. AGENT:
#   codex          Codex CLI with a [model_providers.airlock] table and supports_websockets =
#                  false, so over HTTP and SSE;
#   codex-builtin  Codex CLI's built-in OpenAI provider with openai_base_url, which opens a
#                  WebSocket on /v1/responses for its turns;
#   claude         Claude Code in print mode with ANTHROPIC_BASE_URL, allowed to run Bash.
# The agent is asked to list the files of a fresh project directory that holds README.txt.
# OUT_DIR gets agent.out (its stdout) and agent.err (its log). The exit status is the agent's.
#
# node_modules comes from the committed lockfile, once (tests/npm-ci-once.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/../npm-ci-once.sh" "$here" "the agents"
[[ ${1:-} == --install-only ]] && exit 0

if (($# != 3)) || [[ ! $2 =~ ^(codex|codex-builtin|claude)$ ]]; then
  echo "usage: $0 BASE_URL codex|codex-builtin|claude OUT_DIR" >&2
  exit 2
fi
base_url=${1%/}
agent=$2
out=$3
mkdir -p "$out"
home=$(mktemp -d /tmp/airlock-agent-home.XXXXXX)
project=$(mktemp -d /tmp/airlock-agent-project.XXXXXX)
trap 'rm -rf "$home" "$project"' EXIT
echo "a file for the agent to find" >"$project/README.txt"
prompt="List the files in this directory."

case $agent in
  codex)
    mkdir -p "$home/.codex"
    cat >"$home/.codex/config.toml" <<TOML
model = "gpt-5.5"
model_provider = "airlock"

[model_providers.airlock]
name = "Airlock"
base_url = "$base_url/v1"
wire_api = "responses"
supports_websockets = false
TOML
    ;;
  codex-builtin)
    mkdir -p "$home/.codex"
    cat >"$home/.codex/config.toml" <<TOML
model = "gpt-5.5"
openai_base_url = "$base_url/v1"
TOML
    ;;
esac
if [[ $agent == claude ]]; then
  command=("$here/node_modules/.bin/claude" -p "$prompt" --allowedTools Bash)
else
  command=("$here/node_modules/.bin/codex" exec --skip-git-repo-check "$prompt")
fi

# The sandbox holds no key: the agent gets a placeholder, which the gateway must drop. Nothing
# from the caller's environment may point the agent elsewhere or hand it a real key.
cd "$project"
env -u OPENAI_BASE_URL -u OPENAI_ORG_ID -u OPENAI_PROJECT_ID -u CODEX_HOME \
  -u ANTHROPIC_API_KEY -u ANTHROPIC_MODEL -u CLAUDE_CONFIG_DIR \
  HOME="$home" OPENAI_API_KEY=airlock-placeholder-key \
  ANTHROPIC_BASE_URL="$base_url" ANTHROPIC_AUTH_TOKEN=airlock-placeholder-key \
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 \
  timeout 120 "${command[@]}" </dev/null >"$out/agent.out" 2>"$out/agent.err"
