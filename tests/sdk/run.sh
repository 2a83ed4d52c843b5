#!/usr/bin/env bash
# Runs the official-SDK checks (run.mjs) against a gateway or the simulated provider.
#
#   tests/sdk/run.sh http://100.80.0.1                  # or BASE_URL=... tests/sdk/run.sh
#   ip netns exec al-a tests/sdk/run.sh http://100.80.0.1
#   tests/sdk/run.sh --install-only                      # fetch the SDKs (needs the registry)
#
# node_modules comes from the committed lockfile, once (tests/npm-ci-once.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
base_url="${1:-${BASE_URL:-}}"
install_only=false
if [[ $base_url == --install-only ]]; then
  install_only=true
elif [[ -z "$base_url" ]]; then
  echo "usage: $0 BASE_URL   (e.g. http://100.80.0.1)" >&2
  exit 2
fi

"$here/../npm-ci-once.sh" "$here" "SDKs"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if ((node_major < 20)); then
  echo "$0: node $(node --version) is too old; the SDKs need node 20 or later (Debian 12 ships 18; use NodeSource)" >&2
  exit 2
fi
$install_only && exit 0

# The checks must prove the gateway supplies the credentials, so no provider key or endpoint
# override from the caller's environment may reach the SDKs.
exec env -u OPENAI_API_KEY -u OPENAI_BASE_URL -u OPENAI_ORG_ID -u OPENAI_PROJECT_ID \
  -u ANTHROPIC_API_KEY -u ANTHROPIC_AUTH_TOKEN -u ANTHROPIC_BASE_URL \
  BASE_URL="$base_url" node "$here/run.mjs"
