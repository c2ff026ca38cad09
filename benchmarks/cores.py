"""Which cores the servers and the load generator run on, so arrangements compare fairly.

Left to the scheduler, one server and the load generator each get a core of a two-core
machine, while two servers and the load generator share the same two cores: the
comparison would then measure the machine, not the product. Pinned, every arrangement
gives its servers (however many) the same cores and the load generator the others.

Two servers sharing a core also preempt each other whenever a datagram wakes one while
the other runs (about 300 times a second here, against 10-50 for one server alone): a
cost of sharing the core, which two nodes on two machines never pay. Run as batch
threads (SCHED_BATCH), a woken server does not preempt the running one: it runs when that
one sleeps or its time slice ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def batch(pid: int) -> None:
    """Every thread of the process and of its children as a batch thread, which does not
    preempt another on waking; threads started later inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setscheduler(int(task.name), os.SCHED_BATCH, os.sched_param(0))
    for child in child_pids(pid):
        batch(child)


@dataclass(frozen=True)
class ServerCores:
    """Where the servers run: on ``cores`` (None: wherever the scheduler puts them), and
    whether as batch threads."""

    cores: set[int] | None
    batch: bool

    def apply(self, pid: int) -> None:
        if self.cores is not None:
            pin(pid, self.cores)
        if self.batch:
            batch(pid)
