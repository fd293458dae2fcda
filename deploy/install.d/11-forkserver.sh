#!/usr/bin/env bash
# The kernel template's fork loop (cellserver/provider/forkserver.c), a
# shared library in the venv's lib/, entered by the template through ctypes
# (without it the template runs the same loop in Python, slower: see
# cellserver/provider/forkserver.py).  Rebuilt only when the source is newer.
set -euo pipefail
src="$HERE/cellserver/provider/forkserver.c"
out="$VENV/lib/cellstack-forkserver.so"
command -v cc >/dev/null || { echo "forkserver: no C compiler (apt package build-essential)" >&2; exit 1; }
if [ ! -f "$out" ] || [ "$src" -nt "$out" ]; then
  [ "${QUIET:-0}" = 1 ] || echo "forkserver: cc $src"
  tmp=$(mktemp)
  cc -O2 -Wall -Wextra -Werror -shared -fPIC -o "$tmp" "$src"
  $SUDO install -m 0644 "$tmp" "$out"
  rm -f "$tmp"
fi
