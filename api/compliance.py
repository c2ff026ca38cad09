"""HTTP API of the compliance console: find, replay, verify, export and hold recordings.

Bearer tokens with role ``compliance``. Every search, replay, verify, export, hold and
release is written to the audit log with the token's ``sub`` as actor; every refused
call is audited too (api.bearer). Errors answer ``{"error": code, "message": ...}``
(api.errors).

Legal holds are released one at a time, each for a stated reason (the path names the
hold: ``DELETE .../hold/{hold}`` or ``POST .../hold/{hold}/release``).

Replay: the details (and tickets) endpoints hand out a media ticket (api.replay) in a
cookie scoped to the visit's media, so that a player needs neither a bearer token nor a
ticket in the URL; each final file's replay is audited once, when the ticket is issued.
Each final file is checked against the recording's seal before it is listed for replay,
served or exported; one that fails is refused, and the refusal audited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from api.bearer import Bearer
from api.errors import error, http_error
from api.records import json_body
from api.replay import (
    TICKET_COOKIE,
    TICKET_TTL_S,
    MediaTickets,
    ReplayChecks,
    final_files,
    from_start,
    media_path,
    set_ticket_cookie,
)
from api.search import BadQuery, SearchQuery, people, summary
from api.stored import Stored
from auth.tokens import Claims, TokenVerifier
from recorder.bucket import Bucket, BucketError
from recorder.manifest import file_digest
from recorder.retention import visit_folder
from recorder.signing import RecordingKey
from recorder.vault import Vault
from records.archive import Archive, HoldReleased, RecordingDeleted, UnknownHold, UnknownRecording
from records.audit import AuditLog
from records.refusals import RefusalAudit

ROLES = ("compliance",)
_dumps = partial(json.dumps, default=str)


class Compliance:
    def __init__(self, verifier: TokenVerifier, archive: Archive, audit: AuditLog,
                 recordings_dir: Path, recording_key: RecordingKey, *,
                 refusals: RefusalAudit, clock: Callable[[], float] = time.time,
                 ticket_ttl_s: float = TICKET_TTL_S, vault: Vault | None = None,
                 anchors: Callable[[str], Mapping[str, bytes]] = lambda visit: {},
                 bucket: Bucket | None = None) -> None:
        self._vault = vault or Vault()
        self._bearer = Bearer(verifier, refusals, subject="participant", clock=clock)
        self._archive = archive
        self._audit_log = audit
        self._recordings_dir = Path(recordings_dir)
        self._key = recording_key  # its public half checks, its private half signs exports
        self._clock = clock
        self._anchors = anchors  # time-stamped checkpoints holding a visit's seal
        self._tickets = MediaTickets(clock=clock, ttl_s=ticket_ttl_s)
        # Local files, or the write-once archive bucket when one is configured.
        self._stored = Stored(self._recordings_dir, recording_key.public_pem, self._vault,
                              bucket)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/recordings", self.search),
            web.get("/api/recordings/{visit}", self.details),
            web.post("/api/recordings/{visit}/tickets", self.tickets),
            web.get("/api/recordings/{visit}/media/{participant}", self.media),
            web.post("/api/recordings/{visit}/verify", self.verify),
            web.get("/api/recordings/{visit}/export", self.export),
            web.post("/api/recordings/{visit}/hold", self.hold),
            web.delete("/api/recordings/{visit}/hold/{hold}", self.release),
            web.post("/api/recordings/{visit}/hold/{hold}/release", self.release),
            # The earlier whole-visit release: refused, naming what to send instead.
            web.delete("/api/recordings/{visit}/hold", self.release),
            web.post("/api/recordings/{visit}/hold/release", self.release),
        ]

    # -- authorization and audit ---------------------------------------------------------

    async def _authorize(self, request: web.Request) -> Claims:
        return await self._bearer.authorize(request, ROLES)

    def _audit(self, claims: Claims | None, action: str, visit: str | None,
               subject: str | None = None, reason: str = "", outcome: str = "ok",
               detail: dict[str, Any] | None = None) -> int:
        """``claims`` None: the caller showed a media ticket, which names no one."""
        actor, role = (claims.sub, claims.role) if claims else ("media-ticket", "compliance")
        return self._audit_log.record(action=action, actor=actor, role=role,
                                      visit=visit, subject=subject, reason=reason,
                                      outcome=outcome, detail=detail, now=self._clock())

    # -- helpers ------------------------------------------------------------------------

    def _recording(self, visit: str) -> dict[str, Any]:
        row = self._archive.get(visit)
        if row is None or visit_folder(self._recordings_dir, visit) is None:
            raise http_error(404, "unknown_recording", "no recording of this visit is indexed")
        return row

    async def _call(self, request: web.Request, *, kept: bool = False
                    ) -> tuple[Claims, str, dict[str, Any]]:
        """Authorize a call about the path's recording: the caller's claims, the visit and
        its index row. ``kept``: the call needs the media, which deletion removed (410)."""
        claims = await self._authorize(request)
        visit = request.match_info["visit"]
        row = self._recording(visit)
        if kept and row["state"] == "deleted":
            raise http_error(410, "recording_deleted", "this recording was deleted")
        return claims, visit, row

    def _finals(self, visit: str, row: dict[str, Any]) -> dict[str, tuple[str, float, int]]:
        """Participant id -> (final file in the visit folder, offset on the timeline,
        bytes), from the local folder or the archive bucket; none once deleted."""
        return {} if row["state"] == "deleted" else self._stored.finals(visit, row)

    async def _issue(self, claims: Claims, visit: str, row: dict[str, Any]
                     ) -> tuple[list[dict[str, Any]], str]:
        """The final files and the ticket that opens them, each file audited as a replay,
        or, failing its check against the seal, listed with why it is refused."""
        files = self._finals(visit, row)
        order = [p["id"] for p in people(row)]
        names = {p["id"]: p for p in people(row)}
        ordered = sorted(files, key=lambda p: (order.index(p) if p in order else len(order), p))
        expires_at = self._tickets.expiry()
        finals = []
        for participant in ordered:
            person = names.get(participant, {"name": participant, "role": "participant"})
            rel, offset, size = files[participant]
            shown = {"participant": participant, "name": person["name"],
                     "role": person["role"], "offset_s": offset}
            problem = await self._stored.problem(visit, row, rel)
            if problem is not None:
                self._audit(claims, "recording_replay", visit, subject=participant,
                            outcome="refused", reason=problem[:300])
                finals.append({**shown, "refused": f"The replay file of {person['name']} "
                               f"failed its integrity check and is not played: {problem}"})
                continue
            self._audit(claims, "recording_replay", visit, subject=participant,
                        detail={"ticket_expires_at": expires_at})
            finals.append({
                **shown, "url": media_path(visit, participant),
                "expires_at": expires_at, "bytes": size,
            })
        return finals, self._tickets.ticket(visit, expires_at)

    def _with_ticket(self, request: web.Request, response: web.Response, visit: str,
                     ticket: str) -> web.Response:
        set_ticket_cookie(request, response, visit, ticket, self._tickets.ttl_s)
        return response

    async def _run_verify(self, visit: str, row: dict[str, Any]) -> dict[str, Any]:
        """The integrity report, or ``{"ok": None, "unavailable": message}``."""
        try:
            from recorder.verify import verify_visit
        except ModuleNotFoundError as exc:
            if exc.name != "recorder.verify":
                raise
            return {"ok": None, "unavailable": "integrity checking is not installed"}
        # A recording still running has no seal yet, and its newest segment is open.
        live = {"allow_unsealed": True} if row["state"] == "recording" else {}
        try:
            async with self._stored.folder(visit, row) as folder:
                report = await asyncio.to_thread(verify_visit, folder, self._key.public_pem,
                                                 expected_seal=row.get("seal"), **live)
        except BucketError as exc:
            return {"ok": None, "unavailable": f"the archive bucket cannot be read: {exc}"}
        return json.loads(_dumps(dataclasses.asdict(report)))  # JSON-ready data

    # -- handlers -----------------------------------------------------------------------

    async def search(self, request: web.Request) -> web.Response:
        claims = await self._authorize(request)
        try:
            query = SearchQuery.of(request.query)
        except BadQuery as exc:
            return error(400, exc.code, str(exc))
        rows = self._archive.search(visit=query.visit, inmate=query.inmate,
                                    visitor=query.visitor, date_from=query.date_from,
                                    date_to=query.date_to, limit=query.limit)
        self._audit(claims, "recording_search", query.visit,
                    detail={"filters": query.filters, "results": len(rows),
                            "visits": [r["visit"] for r in rows]})
        return web.json_response({"recordings": [summary(r) for r in rows]}, dumps=_dumps)

    async def details(self, request: web.Request) -> web.Response:
        claims, visit, row = await self._call(request)
        finals, ticket = await self._issue(claims, visit, row)
        if row["state"] == "deleted":
            integrity: dict[str, Any] = {"ok": None, "unavailable": "the recording was deleted"}
        else:
            integrity = await self._run_verify(visit, row)
            if integrity.get("ok") is not None:
                self._audit(claims, "recording_verify", visit,
                            detail={"via": "details", "intact": bool(integrity["ok"]),
                                    "problems": len(integrity.get("problems") or [])})
        return self._with_ticket(request, web.json_response({
            **summary(row), "participants": people(row), "finals": finals,
            "holds": self._archive.holds(visit), "integrity": integrity,
            "export_url": f"/api/recordings/{quote(visit, safe='')}/export",
            "ticket_ttl_s": self._tickets.ttl_s,
        }, dumps=_dumps), visit, ticket)

    async def tickets(self, request: web.Request) -> web.Response:
        """A fresh media ticket (a player renews it before it expires)."""
        claims, visit, row = await self._call(request)
        finals, ticket = await self._issue(claims, visit, row)
        return self._with_ticket(request, web.json_response({"visit": visit, "finals": finals}),
                                 visit, ticket)

    async def media(self, request: web.Request) -> web.StreamResponse:
        visit = request.match_info["visit"]
        participant = request.match_info["participant"]
        claims: Claims | None = None
        ticket = request.cookies.get(TICKET_COOKIE)
        if "Authorization" in request.headers or ticket is None:
            claims = await self._authorize(request)
        else:
            refusal = self._tickets.check(ticket, visit)
            if refusal is not None:
                self._bearer.refused(request, refusal)
                return error(403, refusal, "this media link is not valid; reload the recording"
                             if refusal == "bad_ticket" else
                             "this media link has expired; reload the recording")
        row = self._recording(visit)
        final = self._finals(visit, row).get(participant)
        if final is None:
            return error(404, "no_media", "there is no replay file for this participant")
        rel = final[0]
        problem = await self._stored.problem(visit, row, rel)
        if problem is not None:
            self._audit(claims, "recording_replay", visit, subject=participant,
                        outcome="refused", reason=problem[:300])
            return error(409, "replay_file_altered",
                         f"This replay file failed its integrity check and is not played: "
                         f"{problem}")
        if claims is not None and from_start(request):
            # A header-authorized player: audit each play from the start, not each range.
            self._audit(claims, "recording_replay", visit, subject=participant,
                        detail={"via": "bearer"})
        return await self._stored.serve(request, visit, row, rel)

    async def verify(self, request: web.Request) -> web.Response:
        claims, visit, row = await self._call(request, kept=True)
        report = await self._run_verify(visit, row)
        if report.get("ok") is None:
            self._audit(claims, "recording_verify", visit, outcome="error",
                        reason=report["unavailable"])
            return error(503, "verify_unavailable", report["unavailable"])
        self._audit(claims, "recording_verify", visit,
                    detail={"intact": bool(report["ok"]),
                            "problems": len(report.get("problems") or [])})
        return web.json_response({"visit": visit, "expected_seal": row.get("seal"), **report},
                                 dumps=_dumps)

    async def export(self, request: web.Request) -> web.StreamResponse:
        claims, visit, row = await self._call(request, kept=True)
        if row["state"] == "recording":
            return error(409, "still_recording", "this visit is still being recorded")
        try:
            from recorder.export import export_visit
        except ModuleNotFoundError as exc:
            if exc.name != "recorder.export":
                raise
            return error(503, "export_unavailable", "export is not installed")
        try:
            async with self._stored.folder(visit, row) as folder:
                return await self._export(request, claims, visit, row, folder, export_visit)
        except BucketError as exc:
            self._audit(claims, "recording_export", visit, outcome="error",
                        reason=str(exc)[:300])
            return error(502, "bucket_unavailable", f"the archive bucket cannot be read: {exc}")

    async def _export(self, request: web.Request, claims: Claims, visit: str,
                      row: dict[str, Any], folder: Path,
                      export_visit: Callable[..., Path]) -> web.StreamResponse:
        """Check the replay files in ``folder`` against the seal, then export from it."""
        files, checks = final_files(folder, row), ReplayChecks()
        for participant, (path, _) in files.items():
            problem = await asyncio.to_thread(checks.problem, folder, path,
                                              self._key.public_pem, row.get("seal"))
            if problem is not None:
                self._audit(claims, "recording_export", visit, subject=participant,
                            outcome="refused", reason=problem[:300])
                return error(409, "replay_file_altered", "The export was refused: a replay "
                             f"file failed its integrity check: {problem}")
        finals = [path for path, _ in files.values()]
        name = "visit-" + re.sub(r"[^A-Za-z0-9._-]", "_", visit) + ".zip"
        # Audited first, so that the custody list inside the export includes the export.
        self._audit(claims, "recording_export", visit, detail={"file": name})
        custody = self._audit_log.entries(visit=visit, limit=1_000_000)
        workdir = Path(tempfile.mkdtemp(prefix="visitbridge-export-"))
        try:
            try:
                out = await asyncio.to_thread(export_visit, folder, self._key,
                                              workdir / name, custody, row.get("seal"), finals,
                                              self._anchors(visit), self._vault)
                digest, size = await asyncio.to_thread(file_digest, Path(out))
            except Exception as exc:
                self._audit(claims, "recording_export", visit, outcome="error",
                            reason=str(exc)[:300])
                return error(500, "export_failed", f"the export could not be made: {exc}")
            # The package cannot hold its own hash: the audit log does.
            self._audit(claims, "recording_export_digest", visit,
                        detail={"file": name, "sha256": digest, "bytes": size})
            response = web.StreamResponse(headers={
                "Content-Type": "application/zip", "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{name}"',
                "Cache-Control": "no-store", "X-Export-SHA256": digest})
            await response.prepare(request)
            with Path(out).open("rb") as file:
                while chunk := await asyncio.to_thread(file.read, 1 << 20):
                    await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def hold(self, request: web.Request) -> web.Response:
        claims, visit, _ = await self._call(request)
        reason = await _reason(request)
        if not reason:
            return error(400, "reason_required", "say why the recording is held")
        try:
            hold_id = self._archive.hold(visit, claims.sub, reason, self._clock())
        except UnknownRecording:
            return error(404, "unknown_recording", "no recording of this visit is indexed")
        except RecordingDeleted:
            return error(409, "recording_deleted", "this recording was already deleted")
        self._audit(claims, "recording_hold", visit, reason=reason, detail={"hold": hold_id})
        if (failed := await self._bucket_hold(claims, visit)) is not None:
            return failed
        return web.json_response({"visit": visit, "on_hold": True,
                                  "holds": self._archive.holds(visit)})

    async def release(self, request: web.Request) -> web.Response:
        claims, visit, _ = await self._call(request)
        if "hold" not in request.match_info:
            return error(400, "hold_required", "release one hold at a time: "
                         "DELETE /api/recordings/{visit}/hold/{hold} with a reason")
        hold, reason = request.match_info["hold"], await _reason(request)
        if not reason:
            return error(400, "reason_required", "say why the hold is released")
        try:
            if not hold.isdecimal():
                raise UnknownHold(hold)
            self._archive.release(visit, int(hold), claims.sub, reason, self._clock())
        except UnknownHold:
            return error(404, "unknown_hold", "no hold with this id is on this recording")
        except HoldReleased:
            return error(409, "hold_released", "this hold was already released")
        self._audit(claims, "recording_release", visit, reason=reason,
                    detail={"hold": int(hold)})
        if (failed := await self._bucket_hold(claims, visit)) is not None:
            return failed
        return web.json_response({"visit": visit, "on_hold": self._archive.on_hold(visit),
                                  "holds": self._archive.holds(visit)})


    async def _bucket_hold(self, claims: Claims, visit: str) -> web.Response | None:
        """The error to answer if the archive bucket's legal hold cannot follow the
        index (the hold or release itself is already recorded here)."""
        row = self._archive.get(visit) or {}
        try:
            await self._stored.follow_hold(visit, row)
        except BucketError as exc:
            self._audit(claims, "recording_hold" if row["on_hold"] else "recording_release",
                        visit, outcome="error", reason=str(exc)[:300])
            return error(502, "bucket_hold_failed", "Recorded here, but the archive bucket's "
                         f"legal hold could not be set {'ON' if row['on_hold'] else 'OFF'}: "
                         f"{exc}. Try again.")
        return None


async def _reason(request: web.Request) -> str:
    return str((await json_body(request)).get("reason", "")).strip()[:500]
