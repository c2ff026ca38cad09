"""Binaries some tests drive for real: Debian's (Prometheus, promtool, coturn) and those a
registry package installs into the environment's own bin folder (SeaweedFS's weed)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest


def need_binary(name: str) -> str:
    """The binary's path; skip when it is missing, except in CI where `make test` installs it."""
    here = Path(sys.executable).parent / name
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}", str(here))
         if os.path.exists(p)), None)
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{name} is not installed; `make test` installs it (APT_PACKAGES, or the test "
                    "extras for a registry package)")
    pytest.skip(f"{name} is not installed: run `make test` (system packages need root)")
