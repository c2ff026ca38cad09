"""Recorded visits from outside: recording one, the server's CLI, waiting for a seal, and
downloading an export."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import aiohttp

from records.dialect import open_database
from tests.support.postgres import server_database
from tests.support.server import ROOT, Participant, Server, in_visit, visit_now


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


async def record_visit(server: Server, visit_id: str, tag: str, seconds: float) -> None:
    """Jo Inmate and Casey Kin (``inmate-<tag>``, ``family-<tag>``) in a visit recorded for
    ``seconds`` after the family first sees the inmate; then cancelled, and sealed."""
    visit = visit_now(visit_id)
    inmate = Participant(server, server.token(f"inmate-{tag}", "inmate", visit, name="Jo Inmate"))
    family = Participant(server, server.token(f"family-{tag}", "family", visit, name="Casey Kin"))
    async with in_visit(inmate, family):
        await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
        await asyncio.sleep(seconds)
        await cancel(server, visit_id)
    await wait_sealed(server, visit_id)


async def export_to(server: Server, token: str, visit: str, out: Path) -> None:
    """Download the visit's export with ``token``, as compliance does, unzipped into ``out``."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/recordings/{visit}/export",
                            headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, await resp.text()
            data = await resp.read()
    zipfile.ZipFile(io.BytesIO(data)).extractall(out)
