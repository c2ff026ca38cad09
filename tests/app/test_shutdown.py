"""SIGTERM during recorded visits: every recording sealed, every webhook delivered.

Ops restart a server for an upgrade in the middle of the day. The visits then live end
with cause ``server_shutdown``; before the process exits each recording is sealed (and
verifies) and the records system has received every event, the visits' ends included.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.process import free_port
from tests.support.recording import cli, seal_of
from tests.support.server import in_visit, inmate_and_family, make_server, start, stop, visit_now
from tests.support.webhooks import Receiver, outbox_rows, until, webhook_env

VISITS = ("term-1", "term-2")


async def test_sigterm_seals_every_recording_and_delivers_every_webhook(tmp_path: Path) -> None:
    receiver = Receiver(delay_s=0.25)  # slow: the events are still queued at SIGTERM
    port = free_port()
    await receiver.start(port)
    server = start(make_server(tmp_path / "server", **webhook_env(port)))
    try:
        first, second = (inmate_and_family(server, visit_now(v), f"t{i}")
                         for i, v in enumerate(VISITS))
        async with in_visit(*first, *second):
            for inmate in (first[0], second[0]):
                await inmate.wait_for(lambda p=inmate: sum(
                    e["type"] == "recording" for e in p.events) >= 4, 20)
            await asyncio.sleep(1.5)
            await asyncio.to_thread(stop, server)  # SIGTERM, as systemd sends it
        assert server.process is not None and server.process.returncode == 0, \
            server.log_text()[-3000:]

        for visit in VISITS:
            assert seal_of(server, visit), f"{visit} not sealed"
            check = cli(server, "recordings", "verify", visit)
            assert check.returncode == 0, check.stdout + check.stderr
        rows = outbox_rows(server.data_dir)
        assert rows and all(r["delivered_at"] is not None for r in rows), rows
        await until(lambda: len(receiver.events) >= len(rows), 5, "every event")
        ended = {e["data"]["visit"]: e["data"]["cause"] for e in receiver.of_type("visit.ended")}
        assert ended == {v: "server_shutdown" for v in VISITS}
    finally:
        await asyncio.to_thread(stop, server)
        if receiver.runner is not None:
            await receiver.runner.cleanup()
