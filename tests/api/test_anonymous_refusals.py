"""Anonymous callers cannot fill the audit log or a visit's chain of custody.

A real server with a real finished recording is sent 300 refused requests of three kinds
(bad bearer tokens, bad media tickets, join tokens that do not verify but name the real
visit): they add a few aggregated rows, none attached to the visit, none in its export,
and the log still verifies. A verified token with the wrong role is audited by name.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from pathlib import Path

import aiohttp

from api.replay import TICKET_COOKIE
from tests.support.compliance import (
    VISIT,
    audit_rows,
    call,
    compliance_token,
    fabricate,
    last_seq,
)
from tests.support.server import Server, metric, running_server
from tests.support.server_records import audit_verify

ROUNDS = 100  # three refused requests each
# One row when a (source, action, code) first fails, one when its window closes.
KEYS = 4  # api/missing_token, api/malformed, api/bad_ticket, join/malformed


async def refused_join(server: Server, http: aiohttp.ClientSession, i: int) -> None:
    async with http.ws_connect(server.ws_url) as ws:
        await ws.send_json({"type": "join", "token": f"not.a.jwt{i}", "visit": VISIT})
        message = await ws.receive_json(timeout=10)
        assert message["code"] == "malformed", message


async def flood(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        for i in range(ROUNDS):
            async with http.get(f"{server.url}/api/visits/{VISIT}{'x' * 500}",
                                headers={"Authorization": f"Bearer {'y' * 300}"}) as resp:
                assert (resp.status, (await resp.json())["error"]) == (401, "malformed")
            async with http.get(f"{server.url}/api/recordings/{VISIT}/media/inmate-41",
                                headers={"Cookie": f"{TICKET_COOKIE}={10**9}.forged{i}"}
                                ) as resp:
                assert (resp.status, (await resp.json())["error"]) == (403, "bad_ticket")
            await refused_join(server, http, i)
        async with http.get(f"{server.url}/api/visits") as resp:
            assert resp.status == 401


async def test_an_anonymous_flood_adds_a_few_rows_and_none_to_the_visit(
        tmp_path: Path) -> None:
    recording = fabricate(tmp_path / "server")
    since = last_seq(recording)
    with running_server(recording.data_dir) as server:
        refusals_before = await metric(server, "visitbridge_token_refusals_total")
        await flood(server)
        # Every refusal is still counted (bad tickets are not tokens).
        assert await metric(server, "visitbridge_token_refusals_total") \
            - refusals_before == 2 * ROUNDS + 1
        status, export, _ = await call(server, "GET", f"/api/recordings/{VISIT}/export",
                                       compliance_token(server))
        assert status == 200
    custody = json.loads(zipfile.ZipFile(io.BytesIO(export)).read("custody.json"))
    assert [e["action"] for e in custody] == ["recording_export"]

    rows = audit_rows(recording, since)  # after the stop: the open windows are written
    refused = [r for r in rows if r["outcome"] == "refused"]
    assert len(refused) <= 2 * KEYS, [(r["action"], r["reason"]) for r in refused]
    assert all(r["visit"] is None and r["subject"] is None and r["actor"] == "unknown"
               for r in refused)
    counts: dict[tuple[str, str], int] = {}
    for r in refused:
        assert r["detail"]["source"] == "127.0.0.1"
        key = (r["action"], r["reason"])
        counts[key] = counts.get(key, 0) + r["detail"]["count"]
    assert counts == {("api", "malformed"): ROUNDS, ("api", "bad_ticket"): ROUNDS,
                      ("join", "malformed"): ROUNDS, ("api", "missing_token"): 1}
    # The request's own fields are kept, cut short, only in the detail.
    malformed = next(r for r in refused if r["reason"] == "malformed" and r["action"] == "api")
    assert malformed["detail"]["visit"].startswith(VISIT)
    assert all(len(v) <= 100 for v in malformed["detail"].values() if isinstance(v, str))
    join = next(r for r in refused if r["action"] == "join")
    assert join["detail"]["visit"] == VISIT

    verified = audit_verify(recording.data_dir)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_wrong_role_is_audited_by_name_and_proxied_sources_apart(
        tmp_path: Path) -> None:
    recording = fabricate(tmp_path / "server")
    since = last_seq(recording)
    with running_server(recording.data_dir, VISITBRIDGE_TRUSTED_PROXIES="127.0.0.1",
                        VISITBRIDGE_AUDIT_REFUSAL_WINDOW_S="1") as server:
        officer = server.token("officer-7", "officer", None)
        status, body, _ = await call(server, "GET", f"/api/recordings/{VISIT}", officer)
        assert (status, body["error"]) == (403, "wrong_role")
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(server.ws_url) as ws:
                await ws.send_json({"type": "join", "token": officer, "visit": VISIT})
                assert (await ws.receive_json(timeout=10))["code"] == "wrong_role"
        # Behind a trusted proxy, each client is its own source.
        for client in ("203.0.113.7", "203.0.113.7", "198.51.100.2"):
            status, _, _ = await call(server, "GET", "/api/visits",
                                      headers={"X-Forwarded-For": f"10.9.9.9, {client}"})
            assert status == 401
        await asyncio.sleep(1.5)  # the window closes on its own, without another refusal
        rows = audit_rows(recording, since)
    refused = [r for r in rows if r["outcome"] == "refused"]
    named = [(r["action"], r["actor"], r["role"], r["visit"]) for r in refused
             if r["reason"] == "wrong_role"]
    assert named == [("api", "officer-7", "officer", VISIT),
                     ("join", "officer-7", "officer", VISIT)]
    anonymous = [(r["detail"]["source"], r["detail"]["count"]) for r in refused
                 if r["reason"] == "missing_token"]
    assert anonymous == [("203.0.113.7", 1), ("198.51.100.2", 1), ("203.0.113.7", 1)]
