#!/usr/bin/env bash
# Samepage merging for idle ready kernels (cellserver/provider/samepages.py):
# turns ksmd on, now and at every boot (a systemd-tmpfiles line), with the
# kernel's own scan rate (100 pages every 20 ms: ~3% of one CPU while there
# is anything to scan; idle kernels are merged within ~1.5 min).  Only
# processes that ask are merged (the kernels, until their first execution).
# Skipped where the kernel has no KSM or /sys is read-only (a container);
# CELLSTACK_KSM=0 leaves the host's setting alone.
set -euo pipefail
run=/sys/kernel/mm/ksm/run
[ "${CELLSTACK_KSM:-1}" = 1 ] || exit 0
[ -e "$run" ] || { [ "${QUIET:-0}" = 1 ] || echo "samepages: this kernel has no KSM; skipped"; exit 0; }
if [ "$(cat "$run")" != 1 ]; then
  if echo 1 | $SUDO tee "$run" >/dev/null 2>&1; then
    [ "${QUIET:-0}" = 1 ] || echo "samepages: ksmd on ($run)"
  else
    echo "samepages: cannot write $run (read-only /sys?); idle kernels keep their own pages" >&2
    exit 0
  fi
fi
if [ -d /etc/tmpfiles.d ] && [ ! -f /etc/tmpfiles.d/cellstack-ksm.conf ]; then
  echo "w $run - - - - 1" | $SUDO tee /etc/tmpfiles.d/cellstack-ksm.conf >/dev/null
fi
