"""Two servers sharing one PostgreSQL outbox: one delivers at a time, so every event
reaches the records system once and in order, and the other takes over when it dies.
First as two bare deliverer processes, then as two real nodes placing visits through
Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from records.dialect import DELIVERY_LOCK
from records.store import connect
from records.webhooks import Outbox
from tests.support.nodes import forget, lease, node_id, running_nodes
from tests.support.postgres import cluster
from tests.support.process import ROOT, free_port, stop_process
from tests.support.redis import RedisServer, running_redis
from tests.support.server import Participant, Server, participants, visit_now
from tests.support.webhooks import SECRET, Receiver, until

NODE_TTL_S = 2  # how long a node's registration outlives its last refresh
LEASE_TTL_S = 3


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start(free_port(0))
    yield receiver
    assert receiver.runner is not None
    await receiver.runner.cleanup()


@pytest.fixture
def database() -> str:
    return cluster().new_database()


@pytest.fixture
def outbox(database: str) -> Outbox:
    return Outbox(connect(database))


@pytest.fixture
def deliverers(database: str, receiver: Receiver) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Two deliverer processes on the one database, told apart by application name."""
    connect(database).close()  # migrated before either starts
    processes = {}
    for name in ("deliverer-a", "deliverer-b"):
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.deliverer", database, receiver.url],
            cwd=ROOT, env={**os.environ, "PGAPPNAME": name}, stdout=subprocess.PIPE)
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        processes[name] = process
    yield processes
    for process in processes.values():
        stop_process(process)


def holder(database: str) -> str | None:
    """The application holding the delivery lease, as PostgreSQL sees it."""
    row = connect(database).execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND l.objid = ? AND l.granted",
        (DELIVERY_LOCK,)).fetchone()
    return None if row is None else row[0]


async def add_events(outbox: Outbox, numbers: range) -> None:
    for n in numbers:
        outbox.add("visit.started", {"n": n}, time.time())
        await asyncio.sleep(0.005)


def numbers(receiver: Receiver) -> list[int]:
    return [event["data"]["n"] for event in receiver.events]


async def test_two_deliverers_send_every_event_once_in_order(
        database: str, receiver: Receiver, outbox: Outbox,
        deliverers: dict[str, subprocess.Popen[bytes]]) -> None:
    await add_events(outbox, range(1, 201))
    await until(lambda: len(receiver.events) >= 200 and outbox.depth() == 0, 20,
                "every event delivered")
    await asyncio.sleep(0.3)  # a second deliverer would send repeats by now
    assert numbers(receiver) == list(range(1, 201))
    assert holder(database) in deliverers


async def test_when_the_deliverer_dies_the_other_takes_over_in_order(
        database: str, receiver: Receiver, outbox: Outbox,
        deliverers: dict[str, subprocess.Popen[bytes]]) -> None:
    await add_events(outbox, range(1, 51))
    await until(lambda: len(receiver.events) >= 50, 20, "the first events")
    first = holder(database)
    assert first in deliverers
    deliverers[first].kill()  # no goodbye: its session ends with the process
    deliverers[first].wait()
    await add_events(outbox, range(51, 101))
    await until(lambda: outbox.depth() == 0, 20, "the rest, from the other deliverer")
    assert holder(database) not in (first, None)
    # Delivery is at least once: an event in flight when the holder died may come again,
    # under its own id, but nothing is lost and nothing overtakes.
    once = list(dict.fromkeys(numbers(receiver)))
    assert once == list(range(1, 101))
    assert len(receiver.events) - len(once) <= 1


async def inmates_join_and_leave(nodes: list[Server], issuer: Server, redis: RedisServer,
                                 visits: list[str]) -> set[str]:
    """Each visit's inmate joins at the next node in turn and, once all are in, leaves:
    three events per visit (started, joined, left), queued by the node that holds it.
    Returns those nodes' ids."""
    people = [Participant(nodes[i % len(nodes)],
                          issuer.token(f"inmate-{v}", "inmate", visit_now(v)), publish=False)
              for i, v in enumerate(visits)]
    holders: set[str] = set()
    async with participants(*people):
        for p, v in zip(people, visits, strict=True):
            answer = await p.join()
            assert answer["type"] == "joined", answer
            holders.add((await lease(redis, v) or "").partition(":")[0])
        for p in people:
            await p.send({"type": "leave"})
    return holders


def outbox_ids(database: str) -> list[str]:
    db = connect(database)
    try:
        return [row[0] for row in db.execute("SELECT id FROM outbox ORDER BY seq")]
    finally:
        db.close()


async def test_two_nodes_queue_events_and_one_delivers_them_once_in_order(
        tmp_path: Path, receiver: Receiver) -> None:
    hooks = {"VISITBRIDGE_WEBHOOK_URL": receiver.url, "VISITBRIDGE_WEBHOOK_SECRET": SECRET}
    with running_redis(tmp_path / "redis") as redis, running_nodes(
            tmp_path, redis, ("a", "b"), NODE_TTL_S, LEASE_TTL_S, **hooks) as nodes:
        database = nodes[0].env["VISITBRIDGE_DATABASE_URL"]
        outbox = Outbox(connect(database))
        visits = ["two-nodes-0", "two-nodes-1"]
        assert await inmates_join_and_leave(nodes, nodes[0], redis, visits) == {"a", "b"}
        await until(lambda: len(receiver.events) >= 6 and outbox.depth() == 0, 15,
                    "the events of both nodes")
        first = holder(database)
        assert first in ("node-a", "node-b"), "no node holds the delivery lease"
        victim = next(n for n in nodes if f"node-{node_id(n)}" == first)
        survivor = next(n for n in nodes if n is not victim)

        assert victim.process is not None
        os.kill(victim.process.pid, signal.SIGKILL)  # its session, and lock, end with it
        victim.process.wait()
        await forget(redis, node_id(victim))
        later = ["after-the-kill"]
        assert await inmates_join_and_leave([survivor], nodes[0], redis, later) == {
            node_id(survivor)}
        await until(lambda: len(receiver.events) >= 9 and outbox.depth() == 0, 15,
                    "the survivor's events")
        assert holder(database) == f"node-{node_id(survivor)}"
        await asyncio.sleep(0.5)  # a second deliverer would send repeats by now
        assert receiver.bad_signatures == 0
        assert receiver.header_ids == outbox_ids(database)  # each once, in the queue's order
        for v in visits + later:
            assert [e["type"] for e in receiver.events if e["data"]["visit"] == v] == [
                "visit.started", "participant.joined", "participant.left"], v
