"""Wires the recorder to the SFU's tap and to the records side (manifest, archive, audit).

One ``VisitRecording`` per recorded visit: its manifest, its track recorders and the
visit's timeline (epoch = the booked start, so a restart or a rejoin continues the same
timeline). When the visit ends the open segments are closed, each participant's final
file is joined by stream copy, the manifest is sealed, and the seal goes into SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, BinaryIO

from prometheus_client import Counter

from recorder import retention
from recorder.finalize import FinalFile, finalize_visit
from recorder.manifest import Manifest, ManifestError
from recorder.recovery import is_sealed, recover_visit
from recorder.segments import RecordingError, SegmentInfo, sync_segment
from recorder.signing import RecordingKey
from recorder.track import BATCH_S, TrackRecorder
from records.archive import Archive
from records.audit import AuditLog
from records.store import Store
from visit.tap import Tap, TapRequest

log = logging.getLogger(__name__)

SEGMENTS = Counter("visitbridge_recording_segments", "Recorded segments closed and hashed")
BYTES = Counter("visitbridge_recording_bytes", "Bytes of closed, hashed recording segments")
FAILURES = Counter("visitbridge_recording_failures", "Recording failures, by reason", ["reason"])
for _reason in ("disk_full", "io_error", "permission", "internal_error", "seal", "recovery"):
    FAILURES.labels(_reason)  # series exist at 0, so the alert and panel have data
GAP_SECONDS = Counter("visitbridge_recording_gap_seconds",
                      "Seconds of media lost to the recording (crash recovery, failures)")

def visit_folder(recordings: Path, visit_id: str) -> Path:
    folder = retention.visit_folder(recordings, visit_id)
    if folder is None:
        raise ValueError(f"visit id {visit_id!r} cannot name a recordings folder")
    return folder


class VisitRecording:
    """One recorded visit. Closed segments are synced, hashed and signed in a thread, one
    at a time and in order (the manifest is a chain), then the seal: ``run`` queues."""

    def __init__(self, folder: Path, manifest: Manifest, epoch: float) -> None:
        self.folder = folder
        self.manifest = manifest
        self.epoch = epoch
        self.tracks: list[TrackRecorder] = []
        self.failed = False
        self._turn = asyncio.Lock()  # FIFO: jobs run in the order they were queued
        self.jobs: set[asyncio.Task[None]] = set()

    def run(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        async def in_turn() -> None:
            async with self._turn:
                await job

        task = asyncio.ensure_future(in_turn())
        self.jobs.add(task)
        task.add_done_callback(self.jobs.discard)
        return task


class Recordings:
    def __init__(self, recordings: Path, key: RecordingKey, archive: Archive, store: Store,
                 audit: AuditLog, segment_s: float = 10.0,
                 open_file: Callable[[Path], BinaryIO] | None = None) -> None:
        self.dir = recordings
        self.key = key
        self.archive = archive
        self._store = store
        self._audit = audit
        self._segment_s = segment_s
        self._open_file = open_file  # fault injection in tests
        self._batches: asyncio.TimerHandle | None = None
        self._visits: dict[str, VisitRecording] = {}
        self.finalizing: set[asyncio.Task[None]] = set()

    # -- the SFU's TapFactory ------------------------------------------------------------

    def tap(self, request: TapRequest) -> Tap:
        rec = self._visits.get(request.visit_id) or self._open(request.visit_id)
        track_name = f"{request.participant}-{request.kind}"

        def on_failure(reason: str) -> None:
            FAILURES.labels(reason).inc()
            rec.failed = True
            request.on_failure(reason)

        def on_segment(info: SegmentInfo) -> None:
            fields = {"track": track_name, "path": info.path, "first_pts": info.first_pts,
                      "last_pts": info.last_pts, "time_base": f"1/{request.clock_rate}",
                      "sha256": info.sha256, "bytes": info.bytes}
            rec.run(self._segment_closed(rec, fields, on_failure))

        track = TrackRecorder(
            rec.folder, track_name, request.kind, request.mime, request.clock_rate,
            epoch=rec.epoch, segment_s=self._segment_s,
            request_keyframe=request.request_keyframe, on_ready=request.on_ready,
            on_segment=on_segment, on_failure=on_failure, on_gap=GAP_SECONDS.inc,
            open_file=self._open_file)
        rec.tracks.append(track)
        self._schedule_batches()
        row = self._store.visit(request.visit_id)
        if row is not None:
            for p in self._store.participants(request.visit_id):
                if p["sub"] == request.participant and p["role"] != "inmate":
                    self.archive.add_visitor(request.visit_id, p["sub"], p["name"])
        return track

    def _schedule_batches(self) -> None:
        if self._batches is None:
            self._batches = asyncio.get_running_loop().call_later(BATCH_S, self._write_batches)

    def _write_batches(self) -> None:
        """Every ``BATCH_S`` while visits are recorded: every track's packets since the last
        pass, all tracks in one pass (``TrackRecorder.flush``)."""
        self._batches = None
        now = time.time()  # the SFU's clock for arrivals (TrackForwarder.handle)
        for rec in self._visits.values():
            for track in rec.tracks:
                track.flush(now)
        if self._visits:
            self._schedule_batches()

    def _open(self, visit_id: str) -> VisitRecording:
        row = self._store.visit(visit_id)
        folder = visit_folder(self.dir, visit_id)
        manifest = Manifest.open(folder, self.key, time.time)
        epoch = float(row.starts_at) if row and row.starts_at else time.time()
        inmate = next((p for p in self._store.participants(visit_id)
                       if p["role"] == "inmate"), None)
        self.archive.started(visit_id, inmate["sub"] if inmate else None,
                             inmate["name"] if inmate else None,
                             row.starts_at if row else None, row.ends_at if row else None,
                             time.time())
        rec = self._visits[visit_id] = VisitRecording(folder, manifest, epoch)
        return rec

    async def _segment_closed(self, rec: VisitRecording, fields: dict[str, Any],
                              on_failure: Callable[[str], None]) -> None:
        """Make a closed segment durable, then hash and sign it into the manifest; a
        failure ends the visit like a failed write (fail closed)."""
        def sync_and_append() -> dict[str, Any]:
            sync_segment(Path(fields["path"]))
            return rec.manifest.append_segment(fields)

        try:
            entry = await asyncio.to_thread(sync_and_append)
        except RecordingError as error:
            log.error("recording segment could not be made durable: %s", error)
            on_failure(error.reason)
            return
        except Exception:
            log.exception("recording segment could not be signed")
            on_failure("internal_error")
            return
        SEGMENTS.inc()
        BYTES.inc(entry["bytes"])

    # -- end of a visit -----------------------------------------------------------------

    def visit_ended(self, visit_id: str) -> None:
        """Seal in the background: joining the final files copies media, so it runs in a
        thread; the database is written back on the event loop (SQLite is per thread)."""
        rec = self._visits.pop(visit_id, None)
        if rec is None:
            return
        for track in rec.tracks:
            track.close()  # idempotent: the SFU closed them when the members left

        async def seal() -> None:  # after the segments queued before it
            try:
                sealed = await asyncio.to_thread(self._seal_files, visit_id, rec, False)
                self._record_seal(visit_id, rec, *sealed, recovered=False)
            except Exception:
                FAILURES.labels("seal").inc()
                log.exception("sealing the recording failed", extra={"visit": visit_id})

        task = rec.run(seal())
        self.finalizing.add(task)
        task.add_done_callback(self.finalizing.discard)

    def _seal_files(self, visit_id: str, rec: VisitRecording,
                    recovered: bool) -> tuple[str, list[FinalFile]]:
        try:
            finals = finalize_visit(rec.folder)
        except Exception:  # noqa: BLE001 - the evidence (segments) is intact; say so
            log.exception("finalize failed", extra={"visit": visit_id})
            finals = []
        offsets = {f.participant: round(f.offset_s, 3) for f in finals}
        return rec.manifest.seal({"finals": offsets, "recovered": recovered}), finals

    def _record_seal(self, visit_id: str, rec: VisitRecording, seal: str,
                     finals: list[FinalFile], recovered: bool) -> None:
        offsets = {f.participant: round(f.offset_s, 3) for f in finals}
        size = sum(p.stat().st_size for p in rec.folder.rglob("segment-*") if p.is_file())
        seconds = max((f.offset_s + f.seconds for f in finals), default=0.0)
        if self.archive.get(visit_id) is None:
            self.archive.started(visit_id, None, None, None, None, time.time())
        self.archive.sealed(visit_id, seal, size, seconds,
                            {f.participant: {"path": str(f.path.relative_to(rec.folder)),
                                             "offset_s": round(f.offset_s, 3)}
                             for f in finals}, time.time(), recovered=recovered)
        self._audit.record(action="recording_sealed", actor="recorder", role="system",
                           visit=visit_id, now=time.time(),
                           detail={"seal": seal, "segments": rec.manifest.segments,
                                   "offsets": offsets, "recovered": recovered})
        log.info("recording sealed", extra={"visit": visit_id,
                                             "segments": rec.manifest.segments})

    async def close(self) -> None:
        if self._batches is not None:  # visits are ended first: nothing is left pending
            self._batches.cancel()
            self._batches = None
        pending = set(self.finalizing)
        for rec in self._visits.values():
            pending |= rec.jobs
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- start-up -----------------------------------------------------------------------

    def recover(self, now: float) -> list[str]:
        """Salvage visits a crash left unsealed; seal those whose booked slot is over."""
        if not self.dir.exists():
            return []
        recovered = []
        for folder in sorted(p for p in self.dir.iterdir()
                             if p.is_dir() and not p.name.startswith(".")):
            if is_sealed(folder) or not (folder / "manifest.jsonl").exists() and not any(
                    folder.iterdir()):
                continue
            try:
                salvaged = recover_visit(folder, self.key, time.time)
            except (ManifestError, OSError) as exc:
                # Damaged evidence is kept as it is and reported; it never stops start-up.
                FAILURES.labels("recovery").inc()
                log.error("recording cannot be recovered", extra={"visit": folder.name,
                                                                 "error": str(exc)})
                self._audit.record(action="recording_unrecoverable", actor="recorder",
                                   role="system", visit=folder.name, now=now,
                                   reason=str(exc)[:300])
                continue
            if salvaged:
                self._audit.record(action="recording_recovered", actor="recorder",
                                   role="system", visit=folder.name, now=now,
                                   detail={"segments": [s.file for s in salvaged]})
            row = self._store.visit(folder.name)
            if row is None or (row.ends_at is not None and row.ends_at <= now) or (
                    row.state == "ended"):
                rec = VisitRecording(folder, Manifest.open(folder, self.key, time.time), 0.0)
                self._record_seal(folder.name, rec, *self._seal_files(folder.name, rec, True),
                                  recovered=True)
                recovered.append(folder.name)
        return recovered
