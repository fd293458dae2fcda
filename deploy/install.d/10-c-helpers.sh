#!/usr/bin/env bash
# The two small C pieces the kernels need, built into the venv beside the
# interpreter the provider runs on; each rebuilt only when its source is newer.
#  - cellstack-init (cellserver/sandbox/init.c): PID 1 of each sandboxed
#    kernel's pid namespace, in bin/.
#  - cellstack-forkserver.so (cellserver/provider/forkserver.c): the kernel
#    template's fork loop, entered through ctypes, in lib/ (without it the
#    template runs the same loop in Python, slower: see
#    cellserver/provider/forkserver.py).
set -euo pipefail
command -v cc >/dev/null || { echo "c-helpers: no C compiler (apt package build-essential)" >&2; exit 1; }

build() {   # source, output, mode, extra cc flags...
  local src="$HERE/$1" out="$VENV/$2" mode=$3
  shift 3
  if [ ! -f "$out" ] || [ "$src" -nt "$out" ]; then
    [ "${QUIET:-0}" = 1 ] || echo "c-helpers: cc $src"
    local tmp
    tmp=$(mktemp)
    cc -O2 -Wall -Wextra -Werror "$@" -o "$tmp" "$src"
    $SUDO install -D -m "$mode" "$tmp" "$out"
    rm -f "$tmp"
  fi
}

build cellserver/sandbox/init.c bin/cellstack-init 0755
build cellserver/provider/forkserver.c lib/cellstack-forkserver.so 0644 -shared -fPIC
