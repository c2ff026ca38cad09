"""What the compliance API refuses, and why: bad dates, foreign or expired media tickets,
bad bearer tokens, and recordings that are live or deleted."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from api.compliance import Compliance
from api.replay import MediaTickets
from api.search import parse_when
from auth.issuer import issue_token
from auth.keys import PemDirKeyStore, load_private_key, write_keypair
from auth.tokens import TokenVerifier
from recorder.manifest import Manifest
from recorder.replay_files import FINALS_KEY, seal_entries
from recorder.signing import RecordingKey
from records import store as sqlite_store
from records.archive import Archive
from records.audit import AuditLog
from records.refusals import RefusalAudit
from tests.support.archive import DAY, T0, add
from tests.support.postgres import server_database
from tests.support.server import AUDIENCE, ISSUER


def test_dates_are_parsed_as_days_instants_or_unix_seconds() -> None:
    day = datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    assert parse_when("2026-11-20", end=False) == day
    assert parse_when("2026-11-20", end=True) == day + DAY  # "to" includes the whole day
    assert parse_when("2026-11-20T13:00:00Z", end=True) == day + 13 * 3600
    assert parse_when("2026-11-20T13:00:00+01:00", end=False) == day + 12 * 3600
    assert parse_when("2026-11-20T13:00:00", end=False) == day + 13 * 3600  # UTC
    assert parse_when(str(int(day)), end=False) == day
    for bad in ("yesterday", "2026-13-01", "20/11/2026"):
        with pytest.raises(ValueError):
            parse_when(bad, end=False)


def test_tickets_bind_visit_and_expiry() -> None:
    clock = [T0]
    tickets = MediaTickets(clock=lambda: clock[0])
    ticket = tickets.ticket("v-1", int(T0 + 600))
    assert tickets.check(ticket, "v-1") is None
    assert tickets.check(ticket, "v-2") == "bad_ticket"
    expiry, _, sig = ticket.partition(".")
    assert tickets.check(f"{int(expiry) + 600}.{sig}", "v-1") == "bad_ticket"
    assert tickets.check(f"{expiry}.{sig[:-2]}AA", "v-1") == "bad_ticket"
    for junk in ("", ".", "x.y", "-1.abc", "1" * 40):
        assert tickets.check(junk, "v-1") == "bad_ticket"
    clock[0] = T0 + 601
    assert tickets.check(ticket, "v-1") == "ticket_expired"
    # Another process (a restart) has another secret: old tickets stop working.
    other = MediaTickets(clock=lambda: T0)
    assert other.check(ticket, "v-1") == "bad_ticket"


@dataclass
class InProcess:
    client: TestClient
    token: str
    archive: Archive
    audit: AuditLog
    clock: list[float]
    recordings: Path
    key: RecordingKey

    def seal(self, visit: str, participant: str) -> None:
        """Seal the visit's manifest over its final files, as the recorder does."""
        folder = self.recordings / visit
        finals = sorted((folder / "final").iterdir())
        seal = Manifest.open(folder, self.key, time.time).seal(
            {FINALS_KEY: seal_entries(finals)})
        self.archive.sealed(visit, seal, 1000, 1800.0,
                            {participant: f"final/{participant}.webm"}, now=T0 + 1805)

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        sent = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        resp = await self.client.request(method, path, json=body, headers=sent)
        raw = await resp.read()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw


@contextlib.asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[InProcess]:
    keys = tmp_path / "keys"
    write_keypair("k1", keys / "public", keys / "k1.private.pem")
    clock = [time.time()]
    key = RecordingKey.generate()
    db = sqlite_store.connect(server_database(tmp_path))
    try:
        archive, audit = Archive(db), AuditLog(db)
        verifier = TokenVerifier(PemDirKeyStore(keys / "public"), ISSUER, AUDIENCE)
        compliance = Compliance(verifier, archive, audit, tmp_path / "recordings",
                                key, clock=lambda: clock[0],
                                refusals=RefusalAudit(audit, clock=lambda: clock[0]))
        app = web.Application()
        app.router.add_routes(compliance.routes())
        token = issue_token(load_private_key(keys / "k1.private.pem"), kid="k1",
                            issuer=ISSUER, audience=AUDIENCE, sub="compliance-1",
                            role="compliance", name="C", now=clock[0])
        async with TestClient(TestServer(app)) as client:
            yield InProcess(client, token, archive, audit, clock, tmp_path / "recordings", key)
    finally:
        db.close()


def final_file(recordings: Path, visit: str, participant: str, data: bytes) -> None:
    (recordings / visit / "final").mkdir(parents=True, exist_ok=True)
    (recordings / visit / "final" / f"{participant}.webm").write_bytes(data)


async def test_an_expired_ticket_is_refused(tmp_path: Path) -> None:
    async with in_process(tmp_path) as it:
        add(it.archive, "v-1", "inmate-1", "A", T0)
        final_file(it.recordings, "v-1", "inmate-1", b"x" * 500)
        it.seal("v-1", "inmate-1")
        status, body = await it.call("GET", "/api/recordings/v-1")
        assert status == 200
        url = body["finals"][0]["url"]
        it.clock[0] += 599
        resp = await it.client.get(url, headers={"Range": "bytes=0-9"})
        assert (resp.status, await resp.read()) == (206, b"x" * 10)
        it.clock[0] += 2
        resp = await it.client.get(url, headers={"Range": "bytes=0-9"})
        assert resp.status == 403
        assert (await resp.json())["error"] == "ticket_expired"
        refused = it.audit.entries(action="api")
        assert [(e["reason"], e["visit"], e["subject"], e["detail"]["visit"],
                 e["detail"]["subject"]) for e in refused] == [
            ("ticket_expired", None, None, "v-1", "inmate-1")]


def refusals(code: str) -> float:
    return REGISTRY.get_sample_value("visitbridge_token_refusals_total", {"code": code}) or 0


async def test_a_refused_bearer_token_is_counted_and_audited(tmp_path: Path) -> None:
    async with in_process(tmp_path) as it:
        before = {code: refusals(code) for code in ("malformed", "missing_token")}
        path = "/api/recordings/v-1/media/inmate-1"
        status, body = await it.call("GET", path, headers={"Authorization": "Bearer x.y"})
        assert (status, body["error"]) == (401, "malformed")
        status, body = await it.call("POST", "/api/recordings/v-1/hold",
                                     headers={"Authorization": ""})
        assert (status, body["error"]) == (401, "missing_token")
        assert {code: refusals(code) - n for code, n in before.items()} == {
            "malformed": 1, "missing_token": 1}
        now = it.clock[0]
        assert [(e["actor"], e["outcome"], e["reason"], e["visit"], e["subject"],
                 e["detail"]) for e in it.audit.entries(action="api")] == [
            ("unknown", "refused", "malformed", None, None,
             {"source": "127.0.0.1", "count": 1, "first_at": now, "last_at": now,
              "window_s": 60.0, "visit": "v-1", "subject": "inmate-1",
              "request": f"GET {path}"}),
            ("unknown", "refused", "missing_token", None, None,
             {"source": "127.0.0.1", "count": 1, "first_at": now, "last_at": now,
              "window_s": 60.0, "visit": "v-1", "request": "POST /api/recordings/v-1/hold"})]


async def test_live_and_deleted_recordings_are_answered_for_what_they_are(
        tmp_path: Path) -> None:
    async with in_process(tmp_path) as it:
        add(it.archive, "live", "inmate-1", "A", T0, seal=False)
        add(it.archive, "gone", "inmate-2", "B", T0)
        final_file(it.recordings, "gone", "inmate-2", b"y" * 50)
        it.archive.mark_deleted("gone", T0 + DAY)
        # A file that escapes the visit folder is never served, whatever the index says.
        add(it.archive, "odd", "inmate-3", "C", T0)
        it.archive.sealed("odd", "s", 1, 1.0, {"inmate-3": "../gone/final/inmate-2.webm",
                                               "x": {"path": "final/x.webm", "offset_s": 2.5}},
                          now=T0)
        final_file(it.recordings, "odd", "x", b"z" * 10)

        status, body = await it.call("GET", "/api/recordings/gone")
        assert (status, body["state"], body["finals"]) == (200, "deleted", [])
        assert body["integrity"] == {"ok": None, "unavailable": "the recording was deleted"}
        for method, path, code in (("POST", "/api/recordings/gone/verify", 410),
                                   ("GET", "/api/recordings/gone/export", 410),
                                   ("POST", "/api/recordings/gone/hold", 409),
                                   ("GET", "/api/recordings/gone/media/inmate-2", 404),
                                   ("GET", "/api/recordings/live/export", 409)):
            status, body = await it.call(method, path, {"reason": "r"})
            assert status == code, (path, body)
        status, body = await it.call("GET", "/api/recordings/odd")
        assert [(f["participant"], f["offset_s"]) for f in body["finals"]] == [("x", 2.5)]
        status, _ = await it.call("GET", "/api/recordings/odd/media/inmate-3")
        assert status == 404
