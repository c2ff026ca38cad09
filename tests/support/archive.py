"""Rows of the recordings index at fixed times, as the recorder leaves them."""

from __future__ import annotations

from datetime import UTC, datetime

from records.archive import Archive

DAY = 86400.0
T0 = datetime(2026, 11, 20, 14, 0, tzinfo=UTC).timestamp()  # a Friday afternoon visit


def add(archive: Archive, visit: str, inmate: str, inmate_name: str, starts_at: float,
        visitors: tuple[tuple[str, str], ...] = (), *, seal: bool = True,
        minutes: float = 30) -> None:
    ends_at = starts_at + minutes * 60
    archive.started(visit, inmate, inmate_name, starts_at, ends_at, now=starts_at)
    for sub, name in visitors:
        archive.add_visitor(visit, sub, name)
    if seal:
        archive.sealed(visit, "ab" * 32, 1000, minutes * 60,
                       {inmate: f"final/{inmate}.webm"}, now=ends_at + 5)
