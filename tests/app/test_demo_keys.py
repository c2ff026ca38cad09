"""The development key of ``serve --demo``: kept apart from the production keys folder,
trusted only with --demo, and loudly reported whenever it is trusted, with real servers."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import aiohttp

from auth.issuer import issue_token
from auth.keys import load_private_key
from tests.support.server import (
    AUDIENCE,
    ISSUER,
    Participant,
    Server,
    make_server,
    metric,
    participants,
    running_server,
    start,
    stop,
    visit_now,
)

WARNING = "DEVELOPMENT TOKEN KEY TRUSTED"


def folder(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def dev_token(server: Server) -> str:
    key = load_private_key(server.data_dir / "demo-keys" / "dev.private.pem")
    return issue_token(key, kid="dev", issuer=ISSUER, audience=AUDIENCE, sub="family-dev",
                       role="family", name="Dev", visit=visit_now("demo-key"), now=time.time())


async def readyz(server: Server) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as resp:
        return await resp.json()


async def join(server: Server, token: str) -> dict[str, object]:
    page = Participant(server, token, publish=False)
    async with participants(page):
        return await page.join()


async def test_demo_keeps_its_key_apart_and_says_it_trusts_it(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    production = folder(tmp_path / "keys" / "public")
    server.command = ("app.cli", "serve", "--demo")
    start(server)
    try:
        assert folder(tmp_path / "keys" / "public") == production
        assert (tmp_path / "demo-keys" / "public" / "dev.pem").exists()
        assert (await join(server, dev_token(server)))["type"] == "joined"
        assert WARNING in server.log_text()
        assert await metric(server, "visitbridge_development_key_trusted") == 1
    finally:
        stop(server)
    # Without --demo the development key is not trusted, and nothing warns.
    with running_server(tmp_path) as plain:
        reply = await join(plain, dev_token(plain))
        assert reply["type"] == "error" and reply["code"] == "unknown_key", reply
        assert WARNING not in plain.log_text()
        assert await metric(plain, "visitbridge_development_key_trusted") == 0
        assert (await readyz(plain))["warnings"] == []


async def test_a_development_key_in_the_production_folder_is_warned_about(
        tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.command = ("app.cli", "serve", "--demo")
    start(server)
    stop(server)
    # An operator copied the demo key into the production folder (or an older release's
    # --demo wrote it there).
    shutil.copy(tmp_path / "demo-keys" / "public" / "dev.pem",
                tmp_path / "keys" / "public" / "dev.pem")
    server.command = ("app.cli", "serve")
    start(server)
    try:
        assert WARNING in server.log_text().split("Serving on")[-2]  # the second start-up
        assert await metric(server, "visitbridge_development_key_trusted") == 1
        warnings = (await readyz(server))["warnings"]
        assert warnings == [f"development token key trusted: {tmp_path}/keys/public/dev.pem"]
    finally:
        stop(server)
