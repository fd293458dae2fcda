"""Settings of the kernel side of a cell server (provider + pool).

``ProviderSettings`` is the frozen dataclass ``KernelPoolService`` takes.
The cell server's ``tap.py`` adds ``PROVIDER_OPTIONS`` to its
``optParameters`` and builds the settings with
``provider_settings_from_options(opts)`` in ``postOptions`` (a bad value
raises ``usage.UsageError`` with a clear message).  Pure, no I/O except
checking that the kernel interpreter exists.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

from deploy.nodeconfig import positive_float, positive_int
from cellserver.provider import layout
from cellserver.sandbox.settings import SandboxSettings

DEFAULT_PRELOAD = ("numpy", "matplotlib")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ProviderSettings:
    # Kept started, waiting to be handed out.  8, not fewer: a burst of up to
    # 8 computations gets warm kernels, and with idle kernels' pages merged
    # (samepages.py) the second 4 cost ~11 MB in all (measured at rest:
    # template + kernels 120 MB with 4 ready, 131 MB with 8; per kernel 19-20
    # MB merged with 4, 11 MB with 8: each shares the template with more).
    ready_kernels: int = 8
    max_kernels: int = 32              # capacity: ready + starting + running
    preload: tuple[str, ...] = DEFAULT_PRELOAD   # imported once in the template
    kernel_python: str = sys.executable          # interpreter the provider (and kernels) run on
    runtime_dir: str = ""              # sockets + work dirs; "" = /tmp/cs-<node>
    take_wait: float = 5.0             # seconds take() waits for a kernel being started
    start_timeout: float = 30.0        # seconds from fork to ready before a kernel is given up
    restart_delay_max: float = 30.0    # longest back-off between provider restarts
    sandbox: SandboxSettings = SandboxSettings(enabled=False)   # set by the cell server's options
    merge_idle: bool = True            # idle ready kernels share identical pages (provider/samepages.py)
    merge_rest: float = 10.0           # seconds without a take before new kernels may merge (plan.busy)

    def __post_init__(self) -> None:
        if not isinstance(self.max_kernels, int) or self.max_kernels < 1:
            raise ValueError(f"max-kernels must be at least 1, not {self.max_kernels!r}")
        if not isinstance(self.ready_kernels, int) or not 0 <= self.ready_kernels <= self.max_kernels:
            raise ValueError(f"ready-kernels must be between 0 and max-kernels ({self.max_kernels}), "
                             f"not {self.ready_kernels!r}")
        for name in self.preload:
            if not _MODULE_RE.match(name):
                raise ValueError(f"preload: {name!r} is not a module name")
        if not os.path.isabs(self.kernel_python) or not os.access(self.kernel_python, os.X_OK):
            raise ValueError(f"kernel-python {self.kernel_python!r} is not an executable absolute path")
        if self.runtime_dir:
            if not os.path.isabs(self.runtime_dir):
                raise ValueError(f"runtime-dir {self.runtime_dir!r} must be an absolute path")
            layout.check_sock_dir(os.path.join(self.runtime_dir, "sock", "01234567"))
        for name in ("take_wait", "start_timeout", "restart_delay_max", "merge_rest"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name.replace('_', '-')} must be a positive number, not {value!r}")

    def runtime_dir_for(self, node: str) -> str:
        return self.runtime_dir or f"/tmp/cs-{node}"


def parse_preload(text: str) -> tuple[str, ...]:
    """``"numpy, matplotlib"`` -> ``("numpy", "matplotlib")``; ``""`` -> ``()``."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if not _MODULE_RE.match(name):
            raise ValueError(f"preload: {name!r} is not a module name")
    return names


_D = ProviderSettings.__dataclass_fields__

# usage.Options optParameters rows: [long name, short, default, help, coerce]
PROVIDER_OPTIONS = [
    ["ready-kernels", None, _D["ready_kernels"].default,
     "Kernels kept started and waiting to be handed out.", positive_int("ready-kernels", minimum=0)],
    ["max-kernels", None, _D["max_kernels"].default,
     "Capacity: the most kernels (ready + starting + running) this node runs.",
     positive_int("max-kernels")],
    ["preload", None, ",".join(DEFAULT_PRELOAD),
     "Comma-separated modules the kernel template imports once (empty: none). "
     "matplotlib gets the inline backend, so figures come back as image/png.", parse_preload],
    ["kernel-python", None, sys.executable,
     "Python interpreter the kernel provider and its kernels run on "
     "(needs ipykernel; a virtualenv on Debian's python3 for sandboxed kernels).", str],
    ["runtime-dir", None, "",
     "Directory for kernel sockets and working directories (default /tmp/cs-<node>; "
     "keep it short: socket paths must stay under 107 bytes).", str],
    ["kernel-start-timeout", None, _D["start_timeout"].default,
     "Seconds a forked kernel may take to become ready before it is killed.",
     positive_float("kernel-start-timeout", minimum=0.001)],
    ["take-wait", None, _D["take_wait"].default,
     "Seconds a kernel request waits for a kernel being started when none is ready.",
     positive_float("take-wait", minimum=0.001)],
    ["merge-idle-rest", None, _D["merge_rest"].default,
     "Seconds without a kernel handed out before new ready kernels may have their pages merged; "
     "a busy pool starts them unmerged (merging costs each ~13% more CPU) and, once at rest, "
     "replaces the unmerged spares.", positive_float("merge-idle-rest", minimum=0.001)],
]


def provider_settings_from_options(opts) -> ProviderSettings:
    """Build the settings from a parsed usage.Options (values already coerced)."""
    from twisted.python import usage
    preload = opts["preload"]
    if isinstance(preload, str):
        preload = parse_preload(preload)
    try:
        return ProviderSettings(
            ready_kernels=int(opts["ready-kernels"]),
            max_kernels=int(opts["max-kernels"]),
            preload=tuple(preload),
            kernel_python=opts["kernel-python"],
            runtime_dir=opts["runtime-dir"] or "",
            start_timeout=float(opts["kernel-start-timeout"]),
            take_wait=float(opts["take-wait"]),
            merge_rest=float(opts["merge-idle-rest"]),
        )
    except ValueError as e:
        raise usage.UsageError(str(e)) from None
