#!/usr/bin/env bash
# The code editor bundle (issue 6): cellserver/editor_frontend (CodeMirror 6)
# -> cellserver/static/build/editor.js.
# Idempotent: npm ci only when package-lock.json changed since the last
# install, the build only when a source or the lock file is newer than the bundle.
set -euo pipefail
src="$HERE/cellserver/editor_frontend"
out="$HERE/cellserver/static/build/editor.js"
say() { [ "${QUIET:-0}" = 1 ] || echo "editor: $*"; }
command -v npm >/dev/null || { echo "editor: npm is missing (apt package npm)" >&2; exit 1; }
cd "$src"
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp="node_modules/.cellstack-lock"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_hash" > "$stamp"
fi
if [ ! -f "$out" ] || [ -n "$(find src build.mjs package-lock.json -newer "$out" -print -quit)" ]; then
  say "build"
  node build.mjs >/dev/null
fi
[ -s "$out" ] || { echo "editor: build produced no $out" >&2; exit 1; }
