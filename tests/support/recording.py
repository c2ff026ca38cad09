"""Recorded visits from outside: the server's CLI and waiting for a seal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import aiohttp

from records.dialect import open_database
from tests.support.postgres import server_database
from tests.support.server import (
    ROOT,
    Server,
)


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT,
                          env={**os.environ, **server.env}, capture_output=True, text=True)


def seal_of(server: Server, visit: str) -> str | None:
    db = open_database(server_database(server.data_dir))
    row = db.execute("SELECT seal FROM recordings WHERE visit = ?", (visit,)).fetchone()
    return row[0] if row else None


async def wait_sealed(server: Server, visit: str, timeout: float = 20) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        seal = seal_of(server, visit)
        if seal:
            return seal
        await asyncio.sleep(0.2)
    raise TimeoutError(f"recording of {visit} not sealed:\n{server.log_text()[-3000:]}")



async def cancel(server: Server, visit: str) -> None:
    """End a visit now, as the records system would."""
    records = server.token("records-1", "records", None)
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{server.url}/api/visits/{visit}/cancel",
                               headers={"Authorization": f"Bearer {records}"},
                               json={"reason": "test over"})
        assert resp.status == 200
