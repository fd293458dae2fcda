#!/usr/bin/env bash
# The front-end bundles, each an npm package built with esbuild into
# cellserver/static/build/:
#   - the code editor (issue 6): cellserver/editor_frontend (CodeMirror 6) -> editor.js;
#   - the Jupyter widget manager (issue 7): cellserver/widgets_frontend -> widgets.js
#     (+ widgets.css, widgets-assets/).
# Idempotent: npm ci only when package-lock.json changed since the last
# install, the build only when a source or the lock file is newer than the bundle.
set -euo pipefail
command -v npm >/dev/null || { echo "frontend: npm is missing (apt package npm)" >&2; exit 1; }

bundle() {  # NAME SOURCE-DIR BUNDLE
  local name=$1 src=$2 out=$3
  say() { [ "${QUIET:-0}" = 1 ] || echo "$name: $*"; }
  cd "$src"
  local lock_hash stamp=node_modules/.cellstack-lock
  lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
    echo "$lock_hash" > "$stamp"
  fi
  if [ ! -f "$out" ] || [ -n "$(find src build.mjs package-lock.json -newer "$out" -print -quit)" ]; then
    say "build"
    node build.mjs >/dev/null
  fi
  [ -s "$out" ] || { echo "$name: build produced no $out" >&2; exit 1; }
}

bundle editor "$HERE/cellserver/editor_frontend" "$HERE/cellserver/static/build/editor.js"
bundle widgets "$HERE/cellserver/widgets_frontend" "$HERE/cellserver/static/build/widgets.js"
