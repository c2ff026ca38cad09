"""Which cores the servers and the load generator run on, so arrangements compare fairly.

Left to the scheduler, one server and the load generator each get a core of a two-core
machine, while two servers and the load generator share the same two cores: the
comparison would then measure the machine, not the product. Pinned, every arrangement
gives its servers (however many) the same cores and the load generator the others.
"""

from __future__ import annotations

import os
from pathlib import Path

from .server import child_pids


def split(available: set[int]) -> tuple[set[int], set[int]]:
    """(the servers' cores, the load generator's core): the highest core for the load,
    every other for the servers. Needs at least two cores."""
    if len(available) < 2:
        raise ValueError(f"pinning needs at least two cores, this process may use {available}")
    load = max(available)
    return available - {load}, {load}


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of the process and of its children on ``cores``; threads started
    later inherit it from the thread that starts them."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)
    for child in child_pids(pid):
        pin(child, cores)
