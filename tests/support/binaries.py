"""Debian binaries some tests drive for real (Prometheus, promtool, coturn)."""

from __future__ import annotations

import os
import shutil

import pytest


def need_binary(name: str) -> str:
    """The binary's path; skip when it is missing, except in CI where `make test` installs it."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None)
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{name} is not installed; `make test` installs it (APT_PACKAGES)")
    pytest.skip(f"{name} is not installed: run `make system-packages` (needs root)")
