#!/usr/bin/env bash
# cellstack-init, the PID 1 of each sandboxed kernel's pid namespace
# (cellserver/sandbox/init.c), built into the venv's bin/ beside the
# interpreter the provider runs on.  Rebuilt only when the source is newer.
set -euo pipefail
src="$HERE/cellserver/sandbox/init.c"
out="$VENV/bin/cellstack-init"
command -v cc >/dev/null || { echo "kernel-init: no C compiler (apt package build-essential)" >&2; exit 1; }
if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
  [ "${QUIET:-0}" = 1 ] || echo "kernel-init: cc $src"
  tmp=$(mktemp)
  cc -O2 -Wall -Wextra -Werror -o "$tmp" "$src"
  $SUDO install -m 0755 "$tmp" "$out"
  rm -f "$tmp"
fi
