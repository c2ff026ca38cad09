"""Webhooks from a real server process to a real receiver: signed, in order, never lost.

The receiver here is what a records system runs: an aiohttp endpoint that checks every
signature with ``records.webhooks.verify_signature`` before it believes a body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.server import (
    Participant,
    free_port,
    in_visit,
    inmate_and_family,
    make_server,
    running_server,
    start,
    stop,
    visit_now,
)
from tests.support.webhooks import Receiver, outbox_rows, until, webhook_env


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    yield r
    if r.runner is not None:
        await r.runner.cleanup()


def connected(p: Participant) -> bool:
    return p.pc is not None and p.pc.connectionState == "connected"


async def family_leaves_after(inmate: Participant, family: Participant, seconds: float) -> None:
    """Both connected for ``seconds``, then the family member leaves; returns once the
    inmate has been told, and the server has had a moment to queue the event."""
    await until(lambda: connected(inmate) and connected(family), 15, "ICE/DTLS")
    await asyncio.sleep(seconds)
    await family.send({"type": "leave"})
    await inmate.wait_for(lambda: any(e["type"] == "participant_left"
                                      for e in inmate.events), 10)
    await asyncio.sleep(0.5)


async def test_a_cancelled_visit_reaches_the_records_system_signed_and_in_order(
        tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()
    await receiver.start(port)
    with running_server(tmp_path / "server", **webhook_env(port)) as server:
        visit = visit_now("wh-live-1")
        inmate, family = inmate_and_family(server, visit, "w1", publish=False)
        began = time.time()
        async with in_visit(inmate, family):
            await family_leaves_after(inmate, family, 2.0)
            records = server.token("records-sys", "records", None)
            async with aiohttp.ClientSession() as http, http.post(
                    f"{server.url}/api/visits/wh-live-1/cancel",
                    headers={"Authorization": f"Bearer {records}"},
                    json={"reason": "facility lockdown"}) as resp:
                assert resp.status == 200, await resp.text()
            wall = time.time() - began
            await inmate.wait_for(lambda: inmate.close_code is not None, 10)

        await until(lambda: "visit.ended" in receiver.types, 10, "visit.ended")
        await asyncio.sleep(0.5)  # room for a duplicate or a late straggler

    assert receiver.bad_signatures == 0
    assert receiver.types == ["visit.started", "participant.joined", "participant.joined",
                              "participant.left", "participant.left", "visit.ended"]
    # Headers agree with the signed body; every event is delivered once.
    assert receiver.header_ids == [e["id"] for e in receiver.events]
    assert receiver.header_types == receiver.types
    assert len(set(receiver.header_ids)) == len(receiver.header_ids)
    assert all(e["data"]["visit"] == "wh-live-1" for e in receiver.events)
    # Delivery follows the outbox (seq) order. ``created_at`` is each event's own time:
    # the first participant.joined carries the moment its join began, a few ms before the
    # room's clock started the visit, so it is not monotonic in delivery order.
    assert all(began <= e["created_at"] <= began + wall for e in receiver.events)

    joined = receiver.of_type("participant.joined")
    assert [e["data"]["participant"] for e in joined] == ["inmate-w1", "family-w1"]
    assert [e["data"]["role"] for e in joined] == ["inmate", "family"]

    left = receiver.of_type("participant.left")
    assert [(e["data"]["participant"], e["data"]["cause"]) for e in left] == [
        ("family-w1", "left"), ("inmate-w1", "cancelled")]
    assert 0 < left[0]["data"]["seconds_connected"] <= wall

    ended = receiver.of_type("visit.ended")[0]["data"]
    assert ended["cause"] == "cancelled"
    assert ended["reason"] == "facility lockdown"
    seconds = {p["participant"]: p["seconds_connected"] for p in ended["participants"]}
    assert set(seconds) == {"inmate-w1", "family-w1"}
    for sub, value in seconds.items():
        assert 0 < value <= wall, (sub, value, wall)
    # The family member left about half a second before the cancel; the inmate stayed.
    assert seconds["inmate-w1"] > seconds["family-w1"]
    assert seconds["family-w1"] == pytest.approx(left[0]["data"]["seconds_connected"],
                                                 abs=0.01)


async def test_events_from_before_a_restart_arrive_once_in_order_after_it(
        tmp_path: Path, receiver: Receiver) -> None:
    port = free_port()  # nothing listens here until after the restart
    data_dir = tmp_path / "server"
    env = webhook_env(port)
    first = start(make_server(data_dir, **env))
    try:
        visit = visit_now("wh-restart-1")
        inmate, family = inmate_and_family(first, visit, "r1", publish=False)
        async with in_visit(inmate, family):
            await family_leaves_after(inmate, family, 1.0)
            # The inmate is still in the visit when the server is stopped: the shutdown
            # itself produces events too. Stop from a thread so the inmate's side can
            # answer the server's close handshake meanwhile.
            await asyncio.to_thread(stop, first)
            await inmate.wait_for(lambda: inmate.close_code is not None, 10)
    finally:
        await asyncio.to_thread(stop, first)
    assert first.process is not None and first.process.returncode == 0, first.log_text()

    pending = outbox_rows(data_dir)
    assert [r["type"] for r in pending] == [
        "visit.started", "participant.joined", "participant.joined", "participant.left",
        "participant.left", "visit.ended"]
    assert all(r["delivered_at"] is None for r in pending)
    assert pending[0]["attempts"] >= 1  # the sender did try while the receiver was down
    assert all(r["attempts"] == 0 for r in pending[1:])  # nothing overtook the head

    second = start(make_server(data_dir, **env))
    try:
        restarted = time.monotonic()
        await receiver.start(port)
        await until(lambda: len(receiver.events) >= len(pending), 25,
                    "the events from before the restart")
        took = time.monotonic() - restarted
        await asyncio.sleep(1.0)  # room for any duplicate
        after = outbox_rows(data_dir)
    finally:
        await asyncio.to_thread(stop, second)

    assert receiver.bad_signatures == 0
    assert receiver.header_ids == [r["id"] for r in pending], f"took {took:.1f}s"
    assert [e["id"] for e in receiver.events] == receiver.header_ids
    assert receiver.types == [r["type"] for r in pending]
    assert [e["data"]["cause"] for e in receiver.of_type("participant.left")] == [
        "left", "server_shutdown"]
    ended = receiver.of_type("visit.ended")[0]["data"]
    assert ended["cause"] == "server_shutdown"
    assert all(p["seconds_connected"] > 0 for p in ended["participants"])
    assert all(r["delivered_at"] is not None for r in after)
    assert len(after) == len(pending)  # the new process made no events of its own
