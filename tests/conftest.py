"""Fixtures shared across the test packages."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real, tiny filesystem for recordings: it fills up during the visit."""
    mount = tmp_path / "volume"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (the tests run as root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
