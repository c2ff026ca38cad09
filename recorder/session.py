"""Wires the recorder to the SFU's tap and to the records side (manifest, archive, audit).

One ``VisitRecording`` per recorded visit: its manifest, its track recorders and the
visit's timeline (epoch = the booked start, so a restart or a rejoin continues the same
timeline). When the visit ends the open segments are closed, each participant's final
file is joined by stream copy, the manifest is sealed, and the seal goes into SQLite.

The SFU asks for a tap from its UDP receive callback at a track's first packet, so
``Recordings.tap`` returns at once: opening (or checking a continued) manifest, the folder
and the index rows are done in the recorder's own thread and database connection. Until
then the tap is not ready, so nothing is forwarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Container
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from recorder import retention
from recorder.finalize import FinalFile, finalize_visit
from recorder.manifest import Fenced, Manifest, ManifestError
from recorder.metrics import BYTES, FAILURES, GAP_SECONDS, SEGMENTS
from recorder.recovery import is_sealed, recover_visit, salvage
from recorder.replay_files import FINALS_KEY, seal_entries
from recorder.segments import RecordingError, SegmentInfo, sync_segment
from recorder.signing import RecordingKey
from recorder.tap import RecordingTap
from recorder.track import BATCH_S, TrackRecorder
from recorder.vault import Vault, encrypted_file
from recorder.visit_recording import VisitRecording
from records.archive import Archive, recording_length
from records.audit import AuditLog
from records.dialect import location
from records.store import Store, connect
from visit.tap import TapRequest

log = logging.getLogger(__name__)


def visit_folder(recordings: Path, visit_id: str) -> Path:
    folder = retention.visit_folder(recordings, visit_id)
    if folder is None:
        raise ValueError(f"visit id {visit_id!r} cannot name a recordings folder")
    return folder


class Recordings:
    def __init__(self, recordings: Path, key: RecordingKey, archive: Archive, store: Store,
                 audit: AuditLog, segment_s: float = 10.0, vault: Vault | None = None,
                 served_by: Callable[[str], dict[str, Any] | None] | None = None,
                 holds: Callable[[str], bool] | None = None) -> None:
        self.dir = recordings
        self._served_by = served_by  # with Redis: node and lease epoch, into the manifest
        self._holds = holds  # with Redis: whether this node still holds the visit's lease
        self.key = key
        self.vault = vault or Vault()
        self.archive = archive
        self._store = store
        self._audit = audit
        self._segment_s = segment_s
        self._batches: asyncio.Handle | None = None  # the next pass, or its next visit
        self._visits: dict[str, VisitRecording] = {}
        self.finalizing: set[asyncio.Task[None]] = set()
        # The recorder's thread: one, so its connection is only ever used by it, and the
        # work queued on it runs in order (a visit is indexed before its visitors).
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="recorder-open")
        self._database = location(store.db)
        self._thread_records: tuple[Store, Archive] | None = None

    # -- the SFU's TapFactory ------------------------------------------------------------

    def tap(self, request: TapRequest) -> RecordingTap:
        """A tap for one track, at once: see ``RecordingTap``. If the recording cannot be
        opened, ``request.on_failure`` is called and the tap never turns ready."""
        prepared = self._prepare(request.visit_id, request.participant)
        rec = self._visits[request.visit_id]
        tap = RecordingTap(on_close=rec.forget)
        rec.taps.append(tap)
        track_name = f"{request.participant}-{request.kind}"

        def on_ready() -> None:
            tap.ready = True
            request.on_ready()

        def on_failure(reason: str) -> None:
            FAILURES.labels(reason).inc()
            rec.failed = True
            tap.ready = False
            request.on_failure(reason)

        def on_segment(info: SegmentInfo) -> None:
            fields = {"track": track_name, "path": info.path, "first_pts": info.first_pts,
                      "last_pts": info.last_pts, "time_base": f"1/{request.clock_rate}",
                      "sha256": info.sha256, "bytes": info.bytes}
            rec.run(self._segment_closed(rec, fields, on_failure))

        def opened(done: asyncio.Future[None]) -> None:
            if done.cancelled() or tap.closed:  # the member left or the visit ended
                return
            error = done.exception()
            if isinstance(error, Fenced):  # another node took the visit meanwhile
                self.abandon(request.visit_id)
                return
            if error is not None:
                log.error("recording cannot be opened: %s", error,
                          extra={"visit": request.visit_id})
                on_failure(RecordingError.reason_of(error))
                return
            tap.start(TrackRecorder(
                rec.folder, track_name, request.kind, request.mime, request.clock_rate,
                epoch=rec.epoch, segment_s=self._segment_s,
                request_keyframe=request.request_keyframe, on_ready=on_ready,
                on_segment=on_segment, on_failure=on_failure, on_gap=GAP_SECONDS.inc,
                clock=tap.wall_clock,
                open_file=lambda path: self.vault.create(request.visit_id, path)))
            self._schedule_batches()

        prepared.add_done_callback(opened)
        return tap

    def _prepare(self, visit_id: str, participant: str) -> asyncio.Task[None]:
        """Open the visit's recording and index the participant, in the recorder's thread,
        once per visit and participant: ``tap`` calls it at a track's first live packet
        (not before: an opened recording is indexed as one), so the SFU's receive
        callback never waits on the disk or the database. The task fails if the
        recording cannot be opened (the tap then reports the failure)."""
        rec = self._visits.get(visit_id)
        if rec is None:
            rec = self._visits[visit_id] = VisitRecording(visit_folder(self.dir, visit_id))
            rec.opened = rec.run(self._open(visit_id, rec))
        task = rec.participants.get(participant)
        if task is None:
            task = rec.participants[participant] = rec.track_job(
                asyncio.ensure_future(self._index(visit_id, participant, rec)))
        return task

    async def _open(self, visit_id: str, rec: VisitRecording) -> None:
        loop = asyncio.get_running_loop()
        served = self._served_by(visit_id) if self._served_by else None
        if self._served_by is not None and served is None:
            raise Fenced(f"visit {visit_id} is not held by this node (its lease moved)")
        rec.manifest, rec.epoch = await loop.run_in_executor(
            self._thread, self._open_in_thread, visit_id, rec.folder, served)
        if rec.manifest.segments:
            self._resumed(visit_id, rec)

    def _resumed(self, visit_id: str, rec: VisitRecording) -> None:
        """The recording of this visit goes on in its existing chain (after a restart):
        the time since its last recorded media is lost to it, and said so."""
        assert rec.manifest is not None
        now = time.time()
        gap = max(0.0, now - rec.epoch - rec.manifest.media_end_s)
        GAP_SECONDS.inc(gap)
        log.warning("recording resumed", extra={"visit": visit_id, "gap_s": round(gap, 1)})
        self._audit.record(action="recording_resumed", actor="recorder", role="system",
                           visit=visit_id, now=now,
                           detail={"gap_s": round(gap, 1), "after_seq": rec.manifest.seq})

    async def _index(self, visit_id: str, participant: str, rec: VisitRecording) -> None:
        assert rec.opened is not None
        await asyncio.shield(rec.opened)  # raises if the recording could not be opened
        await asyncio.get_running_loop().run_in_executor(
            self._thread, self._index_in_thread, visit_id, participant)

    def _records(self) -> tuple[Store, Archive]:
        """The store and archive of the recorder's thread (only it calls this)."""
        if self._thread_records is None:
            db = connect(self._database)
            self._thread_records = Store(db), Archive(db)
        return self._thread_records

    def _open_in_thread(self, visit_id: str, folder: Path,
                        served: dict[str, Any] | None) -> tuple[Manifest, float]:
        store, archive = self._records()
        row = store.visit(visit_id)
        manifest = Manifest.open(folder, self.key, time.time, served_by=served)
        epoch = float(row.starts_at) if row and row.starts_at else time.time()
        inmate = next((p for p in store.participants(visit_id) if p["role"] == "inmate"),
                      None)
        try:
            salvage(manifest, self.vault)  # what a node that died in this visit left open
            archive.started(visit_id, inmate["sub"] if inmate else None,
                            inmate["name"] if inmate else None,
                            row.starts_at if row else None, row.ends_at if row else None,
                            time.time())
        except BaseException:
            manifest.close()
            raise
        return manifest, epoch

    def _index_in_thread(self, visit_id: str, participant: str) -> None:
        store, archive = self._records()
        for p in store.participants(visit_id):
            if p["sub"] == participant:
                index = archive.add_inmate if p["role"] == "inmate" else archive.add_visitor
                index(visit_id, p["sub"], p["name"])

    def _schedule_batches(self) -> None:
        if self._batches is None:
            self._batches = asyncio.get_running_loop().call_later(BATCH_S, self._write_batches)

    def _write_batches(self, visits: list[VisitRecording] | None = None) -> None:
        """Every ``BATCH_S`` while visits are recorded: every track's packets since the last
        pass (``TrackRecorder.flush``), one visit per turn of the event loop: all at once
        held the loop for up to 100 ms with ten visits, and every visit's packets waited."""
        self._batches = None
        visits = list(self._visits.values()) if visits is None else visits
        if visits:
            now = time.time()  # the SFU's clock for arrivals (TrackForwarder.handle)
            rec = visits.pop()
            # A lease that may have lapsed (this node was paused or cut off from Redis)
            # lets the visit go before anything more is written (``holds`` abandons it).
            if self._holds is None or self._holds(rec.folder.name):
                for track in rec.tracks:
                    track.flush(now)
        if visits:
            self._batches = asyncio.get_running_loop().call_soon(self._write_batches, visits)
        elif self._visits:
            self._schedule_batches()

    async def _segment_closed(self, rec: VisitRecording, fields: dict[str, Any],
                              on_failure: Callable[[str], None]) -> None:
        """Make a closed segment durable, then hash and sign it into the manifest; a
        failure ends the visit like a failed write (fail closed)."""
        manifest = rec.manifest
        assert manifest is not None  # segments are recorded only once it is open
        if rec.abandoned:
            return  # left for the visit's new holder to salvage

        def sync_and_append() -> dict[str, Any]:
            sync_segment(Path(fields["path"]))
            self.vault.sync(rec.folder.name)  # its data key, before its hash is signed
            return manifest.append_segment(fields)

        try:
            entry = await asyncio.to_thread(sync_and_append)
        except Fenced as error:
            log.error("recording fenced off: %s", error)
            self.abandon(rec.folder.name)
            return
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
        for tap in list(rec.taps):
            tap.close()  # idempotent: the SFU closed them when the members left

        async def seal() -> None:  # after the opening and the segments queued before it
            if rec.manifest is None:
                return  # never opened: the failure ended the visit, nothing was recorded
            try:
                sealed = await asyncio.to_thread(self._seal_files, visit_id, rec, False)
                self._record_seal(visit_id, rec, *sealed, recovered=False)
            except Exception:
                FAILURES.labels("seal").inc()
                log.exception("sealing the recording failed", extra={"visit": visit_id})

        task = rec.run(seal())
        self.finalizing.add(task)
        task.add_done_callback(self.finalizing.discard)

    def abandon(self, visit_id: str) -> None:
        """Stop recording a visit another node holds now, at once: no more media is
        written, no segment appended, nothing sealed. Its new holder salvages what this
        node left open and continues the chain."""
        rec = self._visits.pop(visit_id, None)
        if rec is None:
            return
        rec.abandoned = True
        for tap in list(rec.taps):
            tap.abandon()
        log.warning("recording let go: the visit moved", extra={"visit": visit_id})

        async def let_go() -> None:  # after the opening and the jobs queued before it
            if rec.manifest is not None:
                rec.manifest.close()

        task = rec.run(let_go())
        self.finalizing.add(task)
        task.add_done_callback(self.finalizing.discard)

    def _seal_files(self, visit_id: str, rec: VisitRecording,
                    recovered: bool) -> tuple[str, list[FinalFile]]:
        try:
            finals = finalize_visit(rec.folder, self.vault)
        except Exception:  # noqa: BLE001 - the evidence (segments) is intact; say so
            log.exception("finalize failed", extra={"visit": visit_id})
            finals = []
        offsets = {f.participant: round(f.offset_s, 3) for f in finals}
        assert rec.manifest is not None
        covered = seal_entries((f.path for f in finals), lambda path: self.vault.open(
            visit_id, path) if encrypted_file(path) else None)
        return rec.manifest.seal({"finals": offsets, FINALS_KEY: covered,
                                  "recovered": recovered}), finals

    def _record_seal(self, visit_id: str, rec: VisitRecording, seal: str,
                     finals: list[FinalFile], recovered: bool) -> None:
        offsets = {f.participant: round(f.offset_s, 3) for f in finals}
        assert rec.manifest is not None
        size = sum(p.stat().st_size for p in rec.folder.rglob("segment-*") if p.is_file())
        seconds = recording_length((f.offset_s, f.seconds) for f in finals)
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
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_thread)
        self._thread.shutdown()

    def _close_thread(self) -> None:
        if self._thread_records is not None:
            self._thread_records[0].db.close()
            self._thread_records = None

    # -- start-up -----------------------------------------------------------------------

    def recover(self, now: float, running: Container[str] = ()) -> list[str]:
        """Salvage visits a crash left unsealed; seal those whose booked slot is over. The
        ``running`` ones (held by another node on a shared volume) are left to their owner."""
        if not self.dir.exists():
            return []
        recovered = []
        for folder in sorted(p for p in self.dir.iterdir() if p.is_dir()
                             and not p.name.startswith(".") and p.name not in running):
            if is_sealed(folder) or not (folder / "manifest.jsonl").exists() and not any(
                    folder.iterdir()):
                continue
            try:
                salvaged = recover_visit(folder, self.key, time.time, self.vault)
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
                rec = VisitRecording(folder)
                rec.manifest = Manifest.open(folder, self.key, time.time)
                self._record_seal(folder.name, rec, *self._seal_files(folder.name, rec, True),
                                  recovered=True)
                recovered.append(folder.name)
        return recovered
