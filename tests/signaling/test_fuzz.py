"""Hypothesis throws malformed input at one real server: every WebSocket message type,
before and after the join, and the bodies and headers of every HTTP endpoint it reads.

Whatever arrives, the server answers with a stable error (or ignores it), keeps
running, logs no unhandled exception, and a visit held afterwards still carries media.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.server import Server, in_visit, inmate_and_family, running_server, visit_now

TYPES = ["join", "monitor", "answer", "candidate", "media_state", "leave", "offer", "error",
         "", "JOIN", "x" * 300]
FIELDS = ["type", "token", "visit", "sdp", "candidate", "audio", "video", "sdpMid",
          "sdpMLineIndex"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=50))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)),
    max_leaves=12)
candidates = st.fixed_dictionaries({}, optional={
    "candidate": st.one_of(st.text(max_size=120), st.just(
        "candidate:1 1 udp 2122260223 10.0.0.1 9 typ host"), values),
    "sdpMid": values, "sdpMLineIndex": values})
messages = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(TYPES)},
                          optional={f: values for f in FIELDS if f != "type"}),
    st.fixed_dictionaries({"type": st.just("candidate"), "candidate": candidates}),
    st.fixed_dictionaries({"type": st.just("answer"), "sdp": st.one_of(
        st.text(max_size=200), st.just("v=0\r\n"), values)}),
    values,
)
frames = st.one_of(messages.map(json.dumps), st.text(max_size=200), st.binary(max_size=200))

FUZZ_VISIT = visit_now("fuzz-1", minutes=60)  # one booking: every token must agree on it
EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(Path(tmp_path_factory.mktemp("fuzz"))) as s:
        yield s
        assert "Traceback" not in s.log_text()


async def send_frames(ws: aiohttp.ClientWebSocketResponse, data: list[str | bytes]) -> None:
    for frame in data:
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)


async def replies(ws: aiohttp.ClientWebSocketResponse, wait_s: float = 0.1) -> list[Any]:
    """Every text message until the socket is quiet for ``wait_s`` (or closes)."""
    got = []
    while True:
        try:
            msg = await ws.receive(wait_s)
        except TimeoutError:
            return got
        if msg.type != aiohttp.WSMsgType.TEXT:
            return got
        got.append(json.loads(msg.data))


@given(first=frames)
@EXAMPLES
def test_any_first_message_is_refused_with_a_code(server: Server, first: str | bytes) -> None:
    async def run() -> list[Any]:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
            await send_frames(ws, [first])
            return await replies(ws, 2.0)

    got = asyncio.run(run())
    assert got and got[0]["type"] == "error" and isinstance(got[0]["code"], str), got


@given(later=st.lists(frames, min_size=1, max_size=12))
@EXAMPLES
def test_any_message_after_the_join_gets_an_answer_not_a_crash(
        server: Server, later: list[str | bytes]) -> None:
    token = server.token("family-fuzz", "family", FUZZ_VISIT)

    async def run() -> list[Any]:
        async with aiohttp.ClientSession() as http, http.ws_connect(server.ws_url) as ws:
            await ws.send_json({"type": "join", "token": token})
            welcome = [json.loads((await ws.receive(10)).data) for _ in range(2)]
            assert [m["type"] for m in welcome] == ["joined", "offer"], welcome
            await send_frames(ws, later)
            return await replies(ws)

    for reply in asyncio.run(run()):
        assert reply["type"] in ("error", "participant_updated", "participant_joined",
                                 "participant_left", "visit_started", "recording"), reply


PATHS = [("GET", "/api/visits"), ("GET", "/api/visits/fuzz-1"),
         ("POST", "/api/visits/fuzz-1/cancel"), ("POST", "/api/visits/fuzz-1/end"),
         ("POST", "/api/visits/fuzz-1/participants/family-fuzz/revoke"),
         ("POST", "/api/visits/fuzz-1/participants/family-fuzz/mute"),
         ("GET", "/api/recordings"), ("GET", "/api/recordings/fuzz-1"),
         ("POST", "/api/recordings/fuzz-1/tickets"),
         ("GET", "/api/recordings/fuzz-1/media/family-fuzz"),
         ("POST", "/api/recordings/fuzz-1/verify"), ("GET", "/api/recordings/fuzz-1/export"),
         ("POST", "/api/recordings/fuzz-1/hold"), ("DELETE", "/api/recordings/fuzz-1/hold")]
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                      max_size=80)


@given(route=st.sampled_from(PATHS), role=st.sampled_from(["none", "records", "officer",
                                                           "compliance", "family"]),
       authorization=st.one_of(st.none(), header_text.map(lambda t: "Bearer " + t),
                               header_text),
       body=st.one_of(st.none(), values.map(json.dumps), st.binary(max_size=100)),
       query=st.dictionaries(st.sampled_from(["inmate", "visitor", "from", "to", "ticket",
                                              "visit", "limit"]), header_text, max_size=3))
@EXAMPLES
def test_http_endpoints_answer_bad_bodies_and_headers_with_4xx(
        server: Server, route: tuple[str, str], role: str, authorization: str | None,
        body: str | bytes | None, query: dict[str, str]) -> None:
    method, path = route
    headers = {}
    if role != "none":
        visit = FUZZ_VISIT if role == "family" else None
        headers["Authorization"] = f"Bearer {server.token(f'{role}-fz', role, visit)}"
    elif authorization is not None:
        headers["Authorization"] = authorization

    async def run() -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.request(
                method, server.url + path, headers=headers, data=body, params=query) as resp:
            return resp.status, resp.headers.get("Content-Type", "")

    status, kind = asyncio.run(run())
    assert status < 500, (method, path, status)
    if status >= 400:
        assert kind.startswith("application/json"), (method, path, status, kind)


async def test_a_visit_after_the_fuzzing_still_carries_media(server: Server) -> None:
    async with in_visit(*inmate_and_family(server, visit_now("fuzz-after"), "fz")) as (
            inmate, family):
        await inmate.wait_for(lambda: inmate.video_from(1).frames >= 10, 20)
        await family.wait_for(lambda: family.video_from(0).frames >= 10, 20)
