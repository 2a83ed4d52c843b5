#!/usr/bin/env bash
# npm-ci-once.sh DIR WHAT: installs DIR/node_modules from DIR/package-lock.json, once and then
# again only when the lockfile changes, so later runs (typically inside a sandbox namespace with
# no route to the npm registry) need no network. WHAT names the packages in the message.
set -euo pipefail
dir=$1
what=$2
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool not found; run scripts/install-deps" >&2
    exit 2
  fi
done
stamp="$dir/node_modules/.airlock-lock-sha256"
lock_sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]]; then
  echo "installing $what from package-lock.json" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error >&2)
  echo "$lock_sum" >"$stamp"
fi
