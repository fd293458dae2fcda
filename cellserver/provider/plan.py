"""Pool arithmetic, pure: how many kernels to start, how long to back off.

Used by ``cellserver.pool.KernelPoolService``; kept apart so the rules are
tested with plain numbers.
"""
from __future__ import annotations


def kernels_to_start(*, ready: int, starting: int, running: int, waiting: int,
                     ready_target: int, capacity: int) -> int:
    """Start enough to have ``ready_target`` ready plus one per waiting ``take()``,
    never going past ``capacity`` kernels in all."""
    wanted = ready_target + waiting - (ready + starting)
    room = capacity - (ready + starting + running)
    return max(0, min(wanted, room))


def restart_delay(failures: int, maximum: float, first: float = 0.5) -> float:
    """Back-off before restarting the provider after ``failures`` quick deaths in a row."""
    if failures <= 0:
        return 0.0
    return min(maximum, first * 2 ** (failures - 1))


# Ready kernels kept out of samepage merging (provider/samepages.py): a merged
# kernel copies its shared pages back before its first execution (~11 ms
# measured), so the kernel a quiet server hands out next should not be one.
UNMERGED_READY = 1


def busy(*, now: float, last_take: float | None, rest: float) -> bool:
    """Whether kernels are being handed out: one was within ``rest`` seconds.
    Why it matters: merging costs a kernel ~5-8 ms of CPU whether or not
    anything was merged (marking at the fork, and unmarking before the first
    execution walks every page marked: RESULTS-provider.md), ~13% of a fresh
    kernel, and a kernel handed out within seconds has had nothing merged
    (ksmd needs about a minute for its passes).  So a busy pool starts its
    kernels unmerged, and merging is for a pool at rest."""
    return last_take is not None and now - last_take < rest


def may_merge(*, unmerged: int, enabled: bool, busy: bool = False, keep: int = UNMERGED_READY) -> bool:
    """Whether the kernel about to start may have its pages merged while it
    waits, given how many ready or starting kernels already may not, and
    whether the pool is ``busy``."""
    return enabled and not busy and unmerged >= keep


def to_replace(ready: list[tuple[str, bool]], *, unmerged_starting: int, enabled: bool,
               keep: int = UNMERGED_READY) -> list[str]:
    """The ready kernels a pool that has come to rest replaces with ones that may
    merge, from (id, may merge) oldest first: the unmerged beyond ``keep``
    (those starting unmerged count first), oldest first, so the newest stays
    the one ``pick_ready`` hands out.  A busy spell leaves every ready kernel
    unmerged; one kernel start each (~45 ms of CPU, once) buys back ~8 MB of
    each while the pool waits."""
    if not enabled:
        return []
    unmerged = [kid for kid, mergeable in ready if not mergeable]
    return unmerged[:max(0, len(unmerged) + unmerged_starting - keep)]


def pick_ready(kernels: list[tuple[str, bool]]) -> str:
    """Which ready kernel to hand out, from (id, may merge) oldest first: the
    newest unmerged one, else the newest (it has waited least, so it has
    the fewest merged pages to copy back).  ``kernels`` must not be empty."""
    for kid, mergeable in reversed(kernels):
        if not mergeable:
            return kid
    return kernels[-1][0]
