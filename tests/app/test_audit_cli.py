"""``visitbridge audit verify`` on the audit log a real server wrote, before and after tampering."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from auth.issuer import issue_token
from auth.keys import load_private_key, write_keypair
from auth.tokens import VisitClaim
from records.audit import COLUMNS
from records.dialect import ERRORS, open_database
from tests.support.databases import drop_trigger, triggers
from tests.support.postgres import server_database
from tests.support.server import (
    AUDIENCE,
    ISSUER,
    Participant,
    Server,
    make_server,
    participants,
    start,
    stop,
    visit_now,
)
from tests.support.server_records import audit_verify, server_rows, stored_bytes


def audit_rows(data_dir: Path) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, tuple(r), strict=True)) for r in server_rows(
        data_dir, f"SELECT {','.join(COLUMNS)} FROM audit ORDER BY seq")]


async def post(server: Server, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            server.url + path, headers={"Authorization": f"Bearer {token}"},
            json=body) as resp:
        return resp.status, await resp.json()


async def run_a_visit(server: Server, tmp_path: Path) -> dict[str, str]:
    """A visit with refused joins and officer actions; returns every token it used."""
    visit = visit_now("audit-1")
    tokens = {
        "inmate": server.token("inmate-a", "inmate", visit),
        "family": server.token("family-a", "family", visit),
        "officer": server.token("officer-a", "officer", None),
    }
    # Refused joins: a token signed by a key the server does not know, one that is not a
    # JWT, and a valid token for a visit whose waiting room is not open yet.
    write_keypair("records-1", tmp_path / "stranger-pub", tmp_path / "stranger.private.pem")
    tokens["forged"] = issue_token(
        load_private_key(tmp_path / "stranger.private.pem"), kid="records-1", issuer=ISSUER,
        audience=AUDIENCE, sub="family-a", role="family", name="Family A", visit=visit,
        now=time.time())
    tokens["garbage"] = "definitely.not.a-token-" + "Zm9vYmFy" * 4
    later = VisitClaim(id="audit-2", starts_at=int(time.time()) + 7200,
                       ends_at=int(time.time()) + 9000)
    tokens["early"] = server.token("family-b", "family", later, not_before=time.time())

    inmate = Participant(server, tokens["inmate"], publish=False)
    family = Participant(server, tokens["family"], publish=False)
    refused = {name: Participant(server, tokens[name], publish=False)
               for name in ("forged", "garbage", "early")}
    async with participants(inmate, family, *refused.values()):
        assert (await inmate.join())["type"] == "joined"
        assert (await family.join())["type"] == "joined"
        codes = {name: (await p.join())["code"] for name, p in refused.items()}
        assert codes == {"forged": "bad_signature", "garbage": "malformed",
                         "early": "too_early"}

        status, body = await post(server, "/api/visits/audit-1/participants/family-a/mute",
                                  tokens["officer"], {"reason": "abusive language"})
        assert (status, body["muted"]) == (200, True)
        await family.wait_for(lambda: any(e["type"] == "muted" for e in family.events), 10)
        status, _ = await post(server, "/api/visits/audit-1/participants/family-a/mute",
                               tokens["officer"], {"muted": False, "reason": "calmed down"})
        assert status == 200
        # The family member tries the officer's button with their own token.
        status, body = await post(server, "/api/visits/audit-1/participants/inmate-a/mute",
                                  tokens["family"], {})
        assert (status, body["error"]) == (403, "wrong_role")
        await family.send({"type": "leave"})
    return tokens


async def test_the_audit_log_of_a_real_run_verifies_and_tampering_is_named(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    server = start(make_server(data_dir))
    try:
        tokens = await run_a_visit(server, tmp_path)
    finally:
        await asyncio.to_thread(stop, server)
    database = server_database(data_dir)

    result = audit_verify(data_dir)
    rows = audit_rows(data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"audit log intact: {len(rows)} entries verified"
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))

    joins = [r for r in rows if r["action"] == "join"]
    by_reason = {r["reason"]: r for r in joins}
    assert sorted(by_reason) == ["bad_signature", "malformed", "too_early"]
    assert all(r["outcome"] == "refused" for r in joins)
    # A token that does not verify names nobody; a verified one names its holder.
    assert (by_reason["bad_signature"]["actor"], by_reason["bad_signature"]["visit"]) == (
        "unknown", None)
    assert (by_reason["malformed"]["actor"], by_reason["malformed"]["visit"]) == (
        "unknown", None)
    assert (by_reason["too_early"]["actor"], by_reason["too_early"]["role"],
            by_reason["too_early"]["visit"]) == ("family-b", "family", "audit-2")

    mute = next(r for r in rows if r["action"] == "mute")
    assert {k: mute[k] for k in ("actor", "role", "visit", "subject", "reason", "outcome")} == {
        "actor": "officer-a", "role": "officer", "visit": "audit-1", "subject": "family-a",
        "reason": "abusive language", "outcome": "ok"}
    unmute = next(r for r in rows if r["action"] == "unmute")
    assert (unmute["actor"], unmute["reason"]) == ("officer-a", "calmed down")
    api_refused = [r for r in rows if r["action"] == "api"]
    assert [(r["outcome"], r["reason"], r["visit"]) for r in api_refused] == [
        ("refused", "wrong_role", "audit-1")]
    assert "POST /api/visits/audit-1/participants/inmate-a/mute" in api_refused[0]["detail"]

    # No token, nor the signature part of one, is in the audit log or the server log.
    audit_text = repr(rows)
    db_bytes = stored_bytes(data_dir)
    log_text = server.log_text()
    assert "join refused" in log_text  # the log is the right one, and it has content
    for name, token in tokens.items():
        for piece in {token, token.rsplit(".", 1)[-1]}:
            assert piece not in audit_text, name
            assert piece not in log_text, name
            assert piece.encode() not in db_bytes, name  # nor anywhere else stored

    # Someone with write access edits the mute's reason: the trigger stops a plain UPDATE,
    # so they drop it first. The chain still catches the edit, and names the entry.
    db = open_database(database)
    try:
        with pytest.raises(ERRORS, match="append-only"):
            db.execute("UPDATE audit SET reason = 'routine check' WHERE seq = ?",
                       (mute["seq"],))
        assert triggers(db, "audit", "UPDATE") == ["audit_no_update"]
        drop_trigger(db, "audit_no_update", "audit")
        db.execute("UPDATE audit SET reason = 'routine check' WHERE seq = ?", (mute["seq"],))
    finally:
        db.close()

    for extra in ((), ("--db", str(database))):
        result = audit_verify(data_dir, *extra)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "AUDIT LOG TAMPERED" in result.stderr
        assert f"Entry {mute['seq']} was altered" in result.stderr
        assert result.stdout == ""
