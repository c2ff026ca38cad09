"""Remote ICE candidates: at most ``max_ice_candidates`` per connection, and none aimed at
loopback, link-local, multicast or (when so configured) private addresses.

Through a real server and its aiortc peer connection; every candidate the tests send is
on loopback or refused before the server's ICE agent could contact it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sfu.candidates import CandidatePolicy
from tests.support.server import Server, metric, running_server, visit_now


def candidate(host: str, port: int, mid: str) -> dict[str, Any]:
    return {"type": "candidate", "candidate": {
        "candidate": f"candidate:{port} 1 udp 2130706431 {host} {port} typ host",
        "sdpMid": mid, "sdpMLineIndex": 0}}


async def errors_for(server: Server, hosts: list[str]) -> list[dict[str, Any]]:
    """Join, trickle a candidate at each host (before answering, as a browser may), leave;
    the error replies the page got."""
    token = server.token("family-ice", "family", visit_now("ice-visit"))
    async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
        await ws.send_json({"type": "join", "token": token})
        assert (await ws.receive_json(timeout=10))["type"] == "joined"
        offer = await ws.receive_json(timeout=10)
        mid = offer["publish"]["audio"]
        for i, host in enumerate(hosts):
            await ws.send_json(candidate(host, 20_000 + i, mid))
        await ws.send_json({"type": "leave"})
        replies = [json.loads(m.data) async for m in ws if m.type == aiohttp.WSMsgType.TEXT]
    return [r for r in replies if r["type"] == "error"]


async def test_a_thousand_candidates_add_the_limit_and_tell_the_page_once(
        tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_MAX_ICE_CANDIDATES="32") as server:
        errors = await errors_for(server, ["127.0.0.1"] * 1000)
        assert len(errors) == 1, errors
        assert errors[0]["code"] == "bad_message" and "at most 32" in errors[0]["message"]
        assert await metric(server, "visitbridge_ice_candidates_refused_total",
                            'reason="too_many"') == 1000 - 32
        assert "Traceback" not in server.log_text()


async def test_loopback_link_local_and_private_candidates_are_refused_when_off(
        tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_ICE_LOOPBACK="0",
                        VISITBRIDGE_ICE_PRIVATE_CANDIDATES="0") as server:
        hosts = ["127.0.0.1", "127.0.0.2", "169.254.1.1", "10.20.30.40", "::1"]
        errors = await errors_for(server, hosts)
        told = sorted(e["message"] for e in errors)
        assert told == ["ICE candidate refused (link_local address).",
                        "ICE candidate refused (loopback address).",
                        "ICE candidate refused (private address)."], told
        for reason, count in (("loopback", 3), ("link_local", 1), ("private", 1)):
            assert await metric(server, "visitbridge_ice_candidates_refused_total",
                                f'reason="{reason}"') == count


@pytest.mark.parametrize(("host", "policy", "refusal"), [
    ("127.0.0.1", CandidatePolicy(), "loopback"),
    ("::ffff:127.0.0.1", CandidatePolicy(), "loopback"),
    ("127.0.0.1", CandidatePolicy(allow_loopback=True), None),
    ("169.254.169.254", CandidatePolicy(), "link_local"),
    ("fe80::1", CandidatePolicy(), "link_local"),
    ("224.0.0.251", CandidatePolicy(), "multicast"),
    ("0.0.0.0", CandidatePolicy(), "unspecified"),
    ("192.168.1.20", CandidatePolicy(), None),
    ("192.168.1.20", CandidatePolicy(allow_private=False), "private"),
    ("100.64.0.1", CandidatePolicy(allow_private=False), "private"),
    ("fd00::1", CandidatePolicy(allow_private=False), "private"),
    ("0a1b2c3d-1234.local", CandidatePolicy(allow_private=False), "private"),
    ("0a1b2c3d-1234.local", CandidatePolicy(), None),
    ("intranet.example", CandidatePolicy(), "not_an_address"),
    ("203.0.113.9", CandidatePolicy(allow_private=False), "private"),  # not global
    ("8.8.8.8", CandidatePolicy(allow_private=False), None),  # only parsed, never contacted
])
def test_policy(host: str, policy: CandidatePolicy, refusal: str | None) -> None:
    assert policy.refusal(host) == refusal
