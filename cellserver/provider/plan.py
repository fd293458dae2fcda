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
