"""Files that fail on purpose: a full disk or an I/O error after N bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class FailingFile:
    """A real file whose write() fails with ``error`` once ``limit`` bytes are written."""

    def __init__(self, path: Path, limit: int, error: int) -> None:
        self._file = open(path, "wb")
        self._limit = limit
        self._error = error
        self.written = 0

    def write(self, data: bytes) -> int:
        if self.written + len(data) > self._limit:
            raise OSError(self._error, "injected failure")
        self.written += len(data)
        return self._file.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._file, name)


def failing_after(limit: int, error: int) -> Callable[[Path], BinaryIO]:
    return lambda path: FailingFile(path, limit, error)  # type: ignore[return-value]

