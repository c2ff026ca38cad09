"""HTTP API of the compliance console: find, replay, verify, export and hold recordings.

Bearer tokens with role ``compliance``. Every search, replay, verify, export, hold and
release is written to the audit log with the token's ``sub`` as actor; every refused
call is audited too (api.bearer). Errors answer ``{"error": code, "message": ...}``
(api.errors).

Replay: the details (and tickets) endpoints hand out a media ticket (api.replay) in a
cookie scoped to the visit's media, so that a player needs neither a bearer token nor a
ticket in the URL; each final file's replay is audited once, when the ticket is issued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from api.bearer import Bearer
from api.errors import error, http_error
from api.records import json_body
from api.replay import (
    MEDIA_TYPES,
    TICKET_COOKIE,
    TICKET_TTL_S,
    MediaTickets,
    final_files,
    from_start,
    media_path,
    plaintext_response,
    set_ticket_cookie,
)
from auth.tokens import Claims, TokenVerifier
from recorder.envelope import EnvelopeError
from recorder.retention import visit_folder
from recorder.vault import KeyUnavailable, Vault, encrypted_file
from records.archive import Archive, RecordingDeleted, UnknownRecording
from records.audit import AuditLog
from records.refusals import RefusalAudit

ROLES = ("compliance",)
_dumps = partial(json.dumps, default=str)


def parse_when(text: str, *, end: bool) -> float:
    """Unix seconds from ``from``/``to`` query text.

    Unix seconds or ISO 8601. A date alone is a whole UTC day: as ``from`` it means its
    start, as ``to`` the start of the next day (so ``to`` is inclusive of that date). A
    date-time without a zone is UTC. Raises ValueError.
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
        return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _report(report: Any) -> dict[str, Any]:
    """A verify report (dataclass or plain object) as JSON-ready data."""
    if dataclasses.is_dataclass(report) and not isinstance(report, type):
        data = dataclasses.asdict(report)
    elif isinstance(report, dict):
        data = dict(report)
    else:
        data = {k: getattr(report, k) for k in
                ("ok", "problems", "segments", "tracks", "sealed", "seconds")
                if hasattr(report, k)}
    return json.loads(_dumps(data))


class Compliance:
    def __init__(self, verifier: TokenVerifier, archive: Archive, audit: AuditLog,
                 recordings_dir: Path, recording_public_pem: Callable[[], bytes], *,
                 refusals: RefusalAudit, clock: Callable[[], float] = time.time,
                 ticket_ttl_s: float = TICKET_TTL_S, vault: Vault | None = None) -> None:
        self._vault = vault or Vault()
        self._bearer = Bearer(verifier, refusals, subject="participant", clock=clock)
        self._archive = archive
        self._audit_log = audit
        self._recordings_dir = Path(recordings_dir)
        self._public_pem = recording_public_pem
        self._clock = clock
        self._tickets = MediaTickets(clock=clock, ttl_s=ticket_ttl_s)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/recordings", self.search),
            web.get("/api/recordings/{visit}", self.details),
            web.post("/api/recordings/{visit}/tickets", self.tickets),
            web.get("/api/recordings/{visit}/media/{participant}", self.media),
            web.post("/api/recordings/{visit}/verify", self.verify),
            web.get("/api/recordings/{visit}/export", self.export),
            web.post("/api/recordings/{visit}/hold", self.hold),
            web.delete("/api/recordings/{visit}/hold", self.release),
            web.post("/api/recordings/{visit}/hold/release", self.release),
        ]

    # -- authorization and audit ---------------------------------------------------------

    async def _authorize(self, request: web.Request) -> Claims:
        return await self._bearer.authorize(request, ROLES)

    def _audit(self, claims: Claims, action: str, visit: str | None,
               subject: str | None = None, reason: str = "", outcome: str = "ok",
               detail: dict[str, Any] | None = None) -> int:
        return self._audit_log.record(action=action, actor=claims.sub, role=claims.role,
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

    def _folder(self, visit: str) -> Path:
        folder = visit_folder(self._recordings_dir, visit)
        assert folder is not None  # checked by _recording
        return folder

    def _finals(self, visit: str, row: dict[str, Any]) -> dict[str, tuple[Path, float]]:
        """Participant id -> (final file, offset on the timeline); none once deleted."""
        return {} if row["state"] == "deleted" else final_files(self._folder(visit), row)

    def _people(self, row: dict[str, Any]) -> list[dict[str, str]]:
        people = []
        if row.get("inmate"):
            people.append({"id": row["inmate"], "name": row.get("inmate_name") or row["inmate"],
                           "role": "inmate"})
        for v in row.get("visitors") or []:
            people.append({"id": v["sub"], "name": v.get("name") or v["sub"],
                           "role": "visitor"})
        return people

    def _issue(self, claims: Claims, visit: str, row: dict[str, Any]
               ) -> tuple[list[dict[str, Any]], str]:
        """The final files and the ticket that opens them, each file audited as a replay."""
        files = self._finals(visit, row)
        order = [p["id"] for p in self._people(row)]
        names = {p["id"]: p for p in self._people(row)}
        ordered = sorted(files, key=lambda p: (order.index(p) if p in order else len(order), p))
        expires_at = self._tickets.expiry()
        finals = []
        for participant in ordered:
            person = names.get(participant, {"name": participant, "role": "participant"})
            self._audit(claims, "recording_replay", visit, subject=participant,
                        detail={"ticket_expires_at": expires_at})
            path, offset = files[participant]
            finals.append({
                "participant": participant, "name": person["name"], "role": person["role"],
                "url": media_path(visit, participant),
                "expires_at": expires_at, "bytes": path.stat().st_size, "offset_s": offset,
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
        try:
            public_pem = self._public_pem()
        except OSError as exc:
            return {"ok": None, "unavailable": f"the recording public key is missing ({exc})"}
        # A recording still running has no seal yet, and its newest segment is open.
        live = {"allow_unsealed": True} if row["state"] == "recording" else {}
        report = await asyncio.to_thread(verify_visit, self._folder(visit), public_pem,
                                         expected_seal=row.get("seal"), **live)
        return _report(report)

    def _summary(self, row: dict[str, Any]) -> dict[str, Any]:
        keys = ("visit", "inmate", "inmate_name", "visitors", "starts_at", "ends_at", "state",
                "seconds", "bytes", "seal", "on_hold", "sealed_at", "deleted_at")
        return {k: row.get(k) for k in keys}

    # -- handlers -----------------------------------------------------------------------

    async def search(self, request: web.Request) -> web.Response:
        claims = await self._authorize(request)
        query = {k: request.query.get(k, "").strip()[:200]
                 for k in ("visit", "inmate", "visitor", "from", "to")}
        try:
            date_from = parse_when(query["from"], end=False) if query["from"] else None
            date_to = parse_when(query["to"], end=True) if query["to"] else None
        except ValueError:
            return error(400, "bad_date", "give dates as YYYY-MM-DD or ISO 8601")
        try:
            limit = max(1, min(int(request.query.get("limit", "100")), 500))
        except ValueError:
            return error(400, "bad_limit", "limit must be a number")
        rows = self._archive.search(visit=query["visit"] or None, inmate=query["inmate"] or None,
                                    visitor=query["visitor"] or None, date_from=date_from,
                                    date_to=date_to, limit=limit)
        self._audit(claims, "recording_search", query["visit"] or None,
                    detail={"filters": {k: v for k, v in query.items() if v},
                            "results": len(rows), "visits": [r["visit"] for r in rows]})
        return web.json_response({"recordings": [self._summary(r) for r in rows]},
                                 dumps=_dumps)

    async def details(self, request: web.Request) -> web.Response:
        claims, visit, row = await self._call(request)
        finals, ticket = self._issue(claims, visit, row)
        if row["state"] == "deleted":
            integrity: dict[str, Any] = {"ok": None, "unavailable": "the recording was deleted"}
        else:
            integrity = await self._run_verify(visit, row)
            if integrity.get("ok") is not None:
                self._audit(claims, "recording_verify", visit,
                            detail={"via": "details", "intact": bool(integrity["ok"]),
                                    "problems": len(integrity.get("problems") or [])})
        return self._with_ticket(request, web.json_response({
            **self._summary(row), "participants": self._people(row), "finals": finals,
            "holds": self._archive.holds(visit), "integrity": integrity,
            "export_url": f"/api/recordings/{quote(visit, safe='')}/export",
            "ticket_ttl_s": self._tickets.ttl_s,
        }, dumps=_dumps), visit, ticket)

    async def tickets(self, request: web.Request) -> web.Response:
        """A fresh media ticket (a player renews it before it expires)."""
        claims, visit, row = await self._call(request)
        finals, ticket = self._issue(claims, visit, row)
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
        path = final[0]
        if claims is not None and from_start(request):
            # A header-authorized player: audit each play from the start, not each range.
            self._audit(claims, "recording_replay", visit, subject=participant,
                        detail={"via": "bearer"})
        headers = {"Content-Type": MEDIA_TYPES[path.suffix], "Cache-Control": "no-store"}
        if not await asyncio.to_thread(encrypted_file, path):
            return web.FileResponse(path, headers=headers)
        try:
            return await plaintext_response(
                request, partial(self._vault.open, visit, path), headers)
        except KeyUnavailable as exc:
            return error(503, "key_unavailable", f"this recording cannot be decrypted: {exc}")
        except EnvelopeError as exc:
            return error(500, "media_damaged", f"this replay file fails its check: {exc}")

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
            public_pem = self._public_pem()
        except OSError:
            return error(503, "export_unavailable", "the recording public key is missing")
        finals = [path for path, _ in self._finals(visit, row).values()]
        name = "visit-" + re.sub(r"[^A-Za-z0-9._-]", "_", visit) + ".zip"
        # Audited first, so that the custody list inside the export includes the export.
        self._audit(claims, "recording_export", visit, detail={"file": name})
        custody = self._audit_log.entries(visit=visit, limit=1_000_000)
        workdir = Path(tempfile.mkdtemp(prefix="visitbridge-export-"))
        try:
            try:
                out = await asyncio.to_thread(export_visit, self._folder(visit), public_pem,
                                              workdir / name, custody, row.get("seal"), finals,
                                              self._vault)
                digest, size = await asyncio.to_thread(_digest, Path(out))
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
        reason = str((await json_body(request)).get("reason", "")).strip()[:500]
        if not reason:
            return error(400, "reason_required", "say why the recording is held")
        try:
            hold_id = self._archive.hold(visit, claims.sub, reason, self._clock())
        except UnknownRecording:
            return error(404, "unknown_recording", "no recording of this visit is indexed")
        except RecordingDeleted:
            return error(409, "recording_deleted", "this recording was already deleted")
        self._audit(claims, "recording_hold", visit, reason=reason, detail={"hold": hold_id})
        return web.json_response({"visit": visit, "on_hold": True,
                                  "holds": self._archive.holds(visit)})

    async def release(self, request: web.Request) -> web.Response:
        claims, visit, _ = await self._call(request)
        reason = str((await json_body(request)).get("reason", "")).strip()[:500]
        released = self._archive.release(visit, claims.sub, self._clock())
        if not released:
            return error(409, "not_on_hold", "this recording is not on hold")
        self._audit(claims, "recording_release", visit, reason=reason,
                    detail={"released": released})
        return web.json_response({"visit": visit, "on_hold": self._archive.on_hold(visit),
                                  "holds": self._archive.holds(visit)})


def _digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size
