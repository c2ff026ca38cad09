"""One recorded visit as the recorder holds it while the visit runs here."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from recorder.manifest import Manifest
from recorder.tap import RecordingTap
from recorder.track import TrackRecorder


class VisitRecording:
    """One recorded visit. Closed segments are synced, hashed and signed in a thread, one
    at a time and in order (the manifest is a chain), then the seal: ``run`` queues. The
    opening (manifest, epoch) is the first job queued, so everything else follows it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest: Manifest | None = None  # once opened
        self.epoch = 0.0
        self.taps: list[RecordingTap] = []
        self.failed = False
        self.abandoned = False  # another node holds the visit now: nothing more is appended
        self._turn = asyncio.Lock()  # FIFO: jobs run in the order they were queued
        self.jobs: set[asyncio.Task[None]] = set()
        self.opened: asyncio.Task[None] | None = None
        self.participants: dict[str, asyncio.Task[None]] = {}  # indexed, or being indexed

    def run(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        async def in_turn() -> None:
            async with self._turn:
                await job

        return self.track_job(asyncio.ensure_future(in_turn()))

    def track_job(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self.jobs.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.jobs.discard(task)
        if not task.cancelled():
            task.exception()  # reported by the taps that waited for it

    def forget(self, tap: RecordingTap) -> None:
        """A closed tap (its member left, or rejoined on a new connection) is let go:
        kept, it would hold its track recorder and, through its callbacks, the old peer."""
        if tap in self.taps:
            self.taps.remove(tap)

    @property
    def tracks(self) -> list[TrackRecorder]:
        return [tap.track for tap in self.taps if tap.track is not None]
