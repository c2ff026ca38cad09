"""`serve --workers 2`: the front places visits from verified tokens only, and refuses a
first message it cannot use without falling over."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from records.dialect import open_database
from tests.support.postgres import server_database
from tests.support.server import (
    AUDIENCE,
    ISSUER,
    KID,
    Participant,
    Server,
    metric,
    participants,
    running_server,
    visit_now,
)


def forged(visit_id: str, ends_at: Any, key: ed25519.Ed25519PrivateKey | None) -> str:
    """A family token an attacker writes: unsigned (``key`` None) or signed with their key."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "intruder", "jti": f"j-{visit_id}",
               "iat": now, "nbf": now - 60, "exp": now + 3600, "role": "family",
               "name": "Intruder", "visit": {"id": visit_id, "starts_at": 0, "ends_at": ends_at}}
    return jwt.api_jws.encode(json.dumps(payload).encode(), key,
                              algorithm="EdDSA" if key else "none", headers={"kid": KID})


async def first_reply(server: Server, data: str | bytes) -> tuple[dict[str, Any], int | None]:
    """Send one first message on a new WebSocket; return the reply and the close code."""
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
        msg = await ws.receive(timeout=10)
        reply = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {
            "type": msg.type.name}
        await ws.receive(timeout=10)  # the close
        return reply, ws.close_code


def refused_joins(server: Server) -> int:
    with open_database(server_database(server.data_dir)) as db:
        return db.execute("SELECT count(*) FROM audit WHERE action = 'join'"
                          " AND outcome = 'refused'").fetchone()[0]


async def test_forged_tokens_are_refused_at_the_front_and_move_no_visit(tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_WORKERS="2") as server:
        visit = visit_now("v-held")
        inmate = Participant(server, server.token("inmate-h", "inmate", visit),
                             colour=(30, 200, 30))
        family = Participant(server, server.token("family-h", "family", visit))
        async with participants(inmate, family):
            assert (await inmate.join())["type"] == "joined"
            assert await metric(server, "visitbridge_front_placements") == 1
            # Forged tokens for the running visit ending "now", and for new visits ending
            # never: each refused with the worker's own code and close code.
            stranger = ed25519.Ed25519PrivateKey.generate()
            attempts = [(forged("v-held", 0, None), "unsupported_algorithm"),
                        (forged("v-held", 0, stranger), "bad_signature")]
            attempts += [(forged(f"v-{i}-" + "x" * 2000, float("inf"), key), code)
                         for i, (key, code) in enumerate(
                             [(None, "unsupported_algorithm"), (stranger, "bad_signature")])]
            for token, code in attempts:
                for message in ({"type": "join", "token": token},
                                {"type": "join", "token": token, "visit": "v-held"}):
                    reply, close = await first_reply(server, json.dumps(message))
                    assert (reply["type"], reply["code"], close) == ("error", code, 4001)
            # The front refused them (no worker saw one), counted each, audited them the
            # bounded way (one row now per code from this source, the rest counted into
            # one row per code when the window closes), and placed nothing.
            assert await metric(server, "visitbridge_token_refusals_total") == 8
            for i in range(2):
                worker = replace(server, port=server.port + 1 + i)
                assert await metric(worker, "visitbridge_token_refusals_total") == 0
            assert refused_joins(server) == 2
            assert await metric(server, "visitbridge_front_placements") == 1
            # The visit is still whole on its worker: the inmate kept the connection, a
            # new member lands beside it (two-way media), and an officer call reaches it.
            assert (await family.join())["type"] == "joined"
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 20)
            await inmate.wait_for(lambda: inmate.video_from(1).frames >= 10, 20)
            officer = server.token("officer-h", "officer", None)
            async with aiohttp.ClientSession() as http, http.post(
                    f"{server.url}/api/visits/v-held/participants/family-h/mute",
                    json={"muted": True, "reason": "test"},
                    headers={"Authorization": f"Bearer {officer}"}) as resp:
                assert resp.status == 200, await resp.text()
            assert inmate.close_code is None and inmate.error is None
            assert await metric(server, "visitbridge_front_placements") == 1


async def test_unusable_first_messages_are_refused_and_the_front_stays_up(
        tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_WORKERS="2",
                        VISITBRIDGE_FRONT_MAX_PLACEMENTS="1") as server:
        nested = "[" * 100_000 + "]" * 100_000
        for data in ("[]", "null", "42", '"join"', "{}", '{"type": "join"}', "not json",
                     "[" * 5000 + "]" * 5000, nested[:200_000],
                     '{"type": "join", "token": "t", "x": ' + nested[:100_000] + "}",
                     b'{"type": "join", "token": "t"}'):
            reply, close = await first_reply(server, data)
            assert (reply["type"], reply.get("code"), close) == ("error", "bad_message", 4400)
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/healthz") as resp:
            assert resp.status == 200
        assert server.process is not None and server.process.poll() is None
        # Still serving joins, up to its placement cap: then a new visit is server_full.
        joiner = Participant(server, server.token("inmate-b", "inmate", visit_now("v-b")))
        late = Participant(server, server.token("inmate-c", "inmate", visit_now("v-c")))
        async with participants(joiner, late):
            assert (await joiner.join())["type"] == "joined"
            assert (await late.join())["code"] == "server_full"
            assert late.close_code == 4014
            assert await metric(server, "visitbridge_front_placements") == 1
        with open_database(server_database(server.data_dir)) as db:
            assert [tuple(r) for r in db.execute(
                "SELECT actor, visit FROM audit WHERE action = 'join' AND "
                "reason = 'server_full'")] == [("inmate-c", "v-c")]
        assert "Traceback" not in server.log_text()
