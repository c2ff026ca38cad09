"""The server's logs of a whole visit are JSON lines with ids, and never contain a token."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp

from auth.tokens import VisitClaim
from tests.support.server import Participant, participants, running_server, visit_now


async def test_logs_are_json_with_ids_and_hold_no_token(tmp_path: Path) -> None:
    tokens: list[str] = []
    with running_server(tmp_path) as server:
        visit = visit_now("logs-1")
        good = [server.token(f"{r}-log", r, visit) for r in ("inmate", "family")]
        other = make_foreign_token(server, visit)
        expired = server.token("family-old", "family", VisitClaim(
            "logs-1", int(time.time()) - 7200, int(time.time()) - 3600),
            now=time.time() - 7300)
        officer = server.token("officer-log", "officer", None)
        tokens += [*good, other, expired, officer]
        people = [Participant(server, t) for t in good]
        async with participants(*people):
            for p in people:
                await p.join()
            await people[1].wait_for(lambda: people[1].video_from(0).frames >= 5, 15)
            for bad in (other, expired, "garbage.token.value"):
                refused = Participant(server, bad, publish=False)
                async with participants(refused):
                    assert (await refused.join())["type"] == "error"
            async with aiohttp.ClientSession() as http:
                for bearer in (officer, expired):
                    async with http.get(f"{server.url}/api/visits",
                                        headers={"Authorization": f"Bearer {bearer}"}):
                        pass
                async with http.get(f"{server.url}/join#token={good[0]}"):
                    pass  # a fragment never reaches the server, even if a client sends it
    text = server.log_text()
    records = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("Serving on "):
            continue
        records.append(json.loads(line))  # every log line is one JSON object
    assert records
    joined = [r for r in records if r["msg"] == "joined"]
    assert {(r["visit"], r["participant"]) for r in joined} == {
        ("logs-1", "inmate-log"), ("logs-1", "family-log")}
    assert any(r["msg"] == "join refused" and r.get("code") == "expired" for r in records)
    for token in tokens:
        for part in token.split("."):
            assert part not in text, "a token (or part of one) reached the logs"


def make_foreign_token(server, visit: VisitClaim) -> str:  # type: ignore[no-untyped-def]
    """A well-formed token signed by a key the server does not know."""
    from auth.issuer import issue_token
    from auth.keys import generate_keypair, load_private_key

    private_pem, _ = generate_keypair()
    path = server.data_dir / "foreign.pem"
    path.write_bytes(private_pem)
    return issue_token(load_private_key(path), kid="records-1", issuer="test-records",
                       audience="visitbridge-test", sub="family-x", role="family",
                       name="X", visit=visit, now=time.time())
