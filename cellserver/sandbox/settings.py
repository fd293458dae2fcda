"""What confines a kernel: settings, the plan of layers, and their report.  Pure.

Layers used here (issue 3; ARCHITECTURE section 5), applied by
``cellserver.sandbox.apply`` in the forked child, in this order:

- ``net``: a new network namespace with only a down loopback: no network
  at all (kernels talk zmq over ipc sockets, which are files);
- ``mounts``: new mount, IPC and UTS namespaces and a root of the
  kernel's own (``cellserver.sandbox.mounts``): read-only ``/usr``,
  interpreter and virtualenv, a minimal ``/etc`` (no ``shadow``), a minimal
  ``/dev``, a fresh ``/proc`` mounted ``hidepid=invisible`` (a kernel sees
  only its own processes), size-capped tmpfs for ``/tmp`` (``tmp_mb``),
  ``/dev/shm`` and the home (``home_mb``, the working directory whose files
  the cell server serves; as root, mounted by the provider at the host path
  for the kernel's lifetime; without root a plain directory); ``pivot_root`` and the host's tree detached: no
  ``/root``, ``/home``, project tree or other kernels' directories;
- ``account``: as root, a per-kernel unprivileged uid/gid (``uid_base`` +
  slot), never reused while a process of it exists (its cgroup is emptied
  and removed first; at take, accounts with a live process anywhere on the
  host are skipped: another cell server's kernels, orphans); no
  supplementary groups, so no capabilities; the parent-death signal is set
  again after the switch (a change of credentials clears it);
- ``no_new_privs``: setuid binaries cannot raise privileges;
- ``rlimits``: address space, CPU seconds, file size, open files, core 0,
  process count;
- ``cgroups`` (v1 here; v2 when unified): memory, pids (threads count),
  cpu shares; a per-kernel group, emptied and removed when the kernel ends;
- ``pidns``: a pid namespace per kernel (``cellserver.sandbox.pidns``): the
  kernel is PID 2 beside a tiny init (``cellstack-init``) that reaps; no
  process outside is nameable, and what is left in it dies with it;
- ``landlock`` (``cellserver.sandbox.landlock``; no root needed): files
  readable only under /usr, the interpreter's prefixes, /etc's needed files,
  /proc and a few device nodes, writable only in the kernel's home and
  socket directory (and its own /tmp); no TCP bind or connect; no signal or
  abstract unix socket outside its domain (what the running kernel's
  Landlock ABI supports, reported as ``landlock_abi``);
- ``seccomp``: a deny list, last, since it forbids calls made above.

Without root (``Plan.userns``, ``cellserver.sandbox.userns``): the
namespaces are made inside a user namespace of the kernel's own (its uid
mapped to itself), whose capabilities are dropped once its root is built;
``rlimits`` then include the process count (per user namespace), and there
are no ``account`` or ``cgroups`` (root only), which the report says.  Where
user namespaces are forbidden too, ``landlock``, ``rlimits``, ``no_new_privs``
and ``seccomp`` are what is left, and the report lists the rest as missing.

Layers of the design this version does not build would be reported as not
implemented (``NOT_IMPLEMENTED``, none today), apart from the layers that
are ``missing`` on this machine: ``--require-sandbox`` refuses to start
when a layer this version builds cannot be used here, and the start-up log
warns about both.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

ALL_LAYERS = ("ipc", "net", "mounts", "pidns", "account", "no_new_privs", "rlimits", "cgroups", "landlock",
              "seccomp")
OPTIONAL = ("mounts", "pidns", "userns", "landlock")      # what --sandbox-skip may leave out
NOT_IMPLEMENTED: tuple[str, ...] = ()    # layers of the design this version does not build


@dataclass(frozen=True)
class SandboxSettings:
    enabled: bool = True
    cpu_seconds: int = 30
    address_space_mb: int = 4096
    memory_mb: int = 512
    pids: int = 64
    cpu_shares: int = 512
    file_size_mb: int = 64
    open_files: int = 256
    uid_base: int = 61000
    slots: int = 512
    cgroup_root: str = "/sys/fs/cgroup"
    cgroup_name: str = "cellstack"
    home_mb: int = 64          # tmpfs of the kernel's home (its working directory, the served files)
    tmp_mb: int = 64           # tmpfs of its /tmp
    shm_mb: int = 16           # tmpfs of its /dev/shm
    mounts: bool = True        # False: leave the mounts layer out (to measure what it costs)
    pidns: bool = True         # False: leave the pid namespace out (likewise)
    userns: bool = True        # False: not root, do not use user namespaces (try the Landlock fallback)
    landlock: bool = True      # False: leave Landlock out

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "SandboxSettings":
        return cls(**json.loads(text)) if text else cls(enabled=False)

    def rlimits(self) -> list[tuple[str, int]]:
        """(RLIMIT name, limit) pairs; soft = hard so the kernel cannot raise them."""
        mb = 1024 * 1024
        return [("RLIMIT_AS", self.address_space_mb * mb), ("RLIMIT_CPU", self.cpu_seconds),
                ("RLIMIT_FSIZE", self.file_size_mb * mb), ("RLIMIT_NOFILE", self.open_files),
                ("RLIMIT_CORE", 0), ("RLIMIT_NPROC", self.pids)]


@dataclass(frozen=True)
class Capabilities:
    """What this machine allows, found at start (``cellserver.sandbox.detect``)."""
    root: bool = False
    netns: bool = False
    cgroups: tuple[str, ...] = ()      # writable v1 controllers (or "unified")
    seccomp: bool = False
    mounts: bool = False               # mount + ipc + uts namespaces, tmpfs, pivot_root, proc
    mounts_error: str = ""             # why not, when tried
    pidns: bool = False                # a pid namespace per kernel
    pidns_error: str = ""              # why not
    userns: bool = False               # not root: the namespaces above made inside a user namespace
    landlock_abi: int = 0              # the kernel's Landlock ABI (0: none)


@dataclass(frozen=True)
class Plan:
    layers: dict[str, bool] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    userns: bool = False       # namespaces made in a user namespace of the kernel's own (not root)
    landlock_abi: int = 0      # the Landlock ABI the ``landlock`` layer uses (its rights depend on it)

    @property
    def missing(self) -> list[str]:
        """Layers this version builds that are not in use here (what --require-sandbox refuses)."""
        return [name for name in ALL_LAYERS if not self.layers.get(name) and name not in NOT_IMPLEMENTED]

    @property
    def not_implemented(self) -> list[str]:
        return [name for name in NOT_IMPLEMENTED if not self.layers.get(name)]

    def report(self) -> dict:
        return {"layers": self.layers, "missing": self.missing, "not_implemented": self.not_implemented,
                "why": self.why, "user_namespace": self.userns, "landlock_abi": self.landlock_abi}


def plan(settings: SandboxSettings, caps: Capabilities | None) -> Plan:
    """Which layers will be used on this machine, and why others will not."""
    if not settings.enabled or caps is None:
        return Plan({"ipc": True}, {"sandbox": "disabled by --no-sandbox"})
    layers = {"ipc": True, "rlimits": True, "no_new_privs": True}
    why = {}
    userns = not caps.root and caps.userns and settings.userns
    layers["net"] = caps.netns and (caps.root or userns)
    if not layers["net"]:
        why["net"] = "cannot make a network namespace (not root, no user namespaces)"
    layers["account"] = caps.root
    if not caps.root:
        why["account"] = "needs root to switch each kernel to its own account"
    want = {"memory", "pids", "cpu"}
    layers["cgroups"] = caps.root and ("unified" in caps.cgroups or want <= set(caps.cgroups))
    if not layers["cgroups"]:
        why["cgroups"] = ("needs root" if not caps.root else
                          f"writable memory/pids/cpu controllers not found (have {list(caps.cgroups)})")
    layers["landlock"] = settings.landlock and caps.landlock_abi > 0
    if not layers["landlock"]:
        why["landlock"] = "turned off in the settings" if not settings.landlock else "the kernel has no Landlock"
    layers["seccomp"] = caps.seccomp
    if not caps.seccomp:
        why["seccomp"] = "libseccomp (pyseccomp) not available"
    no_ns = "needs root or user namespaces"
    layers["mounts"] = settings.mounts and (caps.root or userns) and caps.mounts
    if not layers["mounts"]:
        why["mounts"] = ("turned off in the settings" if not settings.mounts else
                         no_ns if not (caps.root or userns) else
                         f"mount namespace / pivot_root failed here: {caps.mounts_error or 'unknown'}")
    elif userns:
        why["mounts"] = "the home is not size-capped without root (only each file, by RLIMIT_FSIZE)"
    layers["pidns"] = settings.pidns and (caps.root or userns) and caps.pidns
    if not layers["pidns"]:
        why["pidns"] = ("turned off in the settings" if not settings.pidns else
                        no_ns if not (caps.root or userns) else
                        f"cannot make a pid namespace here: {caps.pidns_error or 'unknown'}")
    return Plan(layers, why, userns=userns, landlock_abi=caps.landlock_abi if layers["landlock"] else 0)


class SlotAllocator:
    """Pool accounts: slot -> uid ``base + slot``; a slot is reused only once freed."""

    def __init__(self, slots: int):
        self.free = list(range(slots - 1, -1, -1))
        self.used: set[int] = set()

    def take(self, busy=frozenset()) -> int:
        """The longest-free slot not in ``busy`` (slots whose account still has a
        process: another cell server's kernel on this host, or an orphan)."""
        for i in range(len(self.free) - 1, -1, -1):
            if self.free[i] not in busy:
                slot = self.free.pop(i)
                self.used.add(slot)
                return slot
        raise RuntimeError("no free sandbox account")

    def release(self, slot: int) -> None:
        if slot in self.used:
            self.used.discard(slot)
            self.free.insert(0, slot)   # reuse the longest-free slot last
