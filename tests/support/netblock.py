"""Cutting a media path on this machine: drop UDP to local ports (nftables, input hook).

The input hook drops silently (on the output hook the sender's ``sendto`` would fail
with EPERM, which no real network does). ``nft`` comes from ``make test`` (nftables);
under ``CI`` a missing one fails the test (``need_binary``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

from tests.support.binaries import need_binary


@contextlib.contextmanager
def udp_dropped(*ports: int) -> Iterator[None]:
    """Every UDP datagram to one of ``ports`` is dropped on arrival inside the block
    (both ends of a path on this machine: both directions die, as on a network switch)."""
    with udp_lossy(100, *ports):
        yield


@contextlib.contextmanager
def udp_lossy(percent: int, *ports: int) -> Iterator[None]:
    """``percent`` of the UDP datagrams to ``ports``, chosen at random, are dropped on
    arrival inside the block (a lossy link, as on weak Wi-Fi)."""
    table = f"visitbridge_test_{os.getpid()}_{ports[0]}"
    command = need_binary("nft")
    chance = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
    subprocess.run([command, "-f", "-"], check=True, text=True, input=(
        f"table inet {table} {{\n"
        f"  chain input {{ type filter hook input priority -10; policy accept;\n"
        f"    udp dport {{ {', '.join(map(str, ports))} }} {chance}drop\n  }}\n}}\n"))
    try:
        yield
    finally:
        subprocess.run([command, "delete", "table", "inet", table], check=True)
