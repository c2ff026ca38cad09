"""Cutting a media path on this machine: drop UDP to local ports (nftables, input hook).

The input hook drops silently (on the output hook the sender's ``sendto`` would fail
with EPERM, which no real network does). Under ``CI`` a missing ``nft`` fails the test;
``make test`` installs it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest


def nft() -> str:
    path = shutil.which("nft")
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError("nft is not installed: run `make test`")
        pytest.skip("nft is not installed (make test installs nftables)")
    return path


@contextlib.contextmanager
def udp_dropped(*ports: int) -> Iterator[None]:
    """Every UDP datagram to one of ``ports`` is dropped on arrival inside the block
    (both ends of a path on this machine: both directions die, as on a network switch)."""
    table = f"visitbridge_test_{os.getpid()}_{ports[0]}"
    command = nft()
    subprocess.run([command, "-f", "-"], check=True, text=True, input=(
        f"table inet {table} {{\n"
        f"  chain input {{ type filter hook input priority -10; policy accept;\n"
        f"    udp dport {{ {', '.join(map(str, ports))} }} drop\n  }}\n}}\n"))
    try:
        yield
    finally:
        subprocess.run([command, "delete", "table", "inet", table], check=True)
