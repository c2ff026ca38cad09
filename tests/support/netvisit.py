"""A live two-party visit whose family sits behind an impairable link (``netem``).

The server listens on the link's host end; the inmate's Chromium runs on the host, the
family's whole Chromium inside the namespace, so every packet of the family's (media,
RTCP, WebSocket) crosses the link. Both pages are joined and decoding when it yields.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Page

from tests.support.browser import (
    chromium,
    chromium_path,
    cli_token,
    join,
    open_page,
    wait_decoding,
)
from tests.support.netem import Link, chromium_in, namespace_link
from tests.support.server import Server, start, stop


@dataclass
class NetVisit:
    link: Link
    server: Server
    inmate: Page
    family: Page


@contextlib.asynccontextmanager
async def visit_behind_link(tmp_path: Path, visit_id: str,
                            **env: str) -> AsyncIterator[NetVisit]:
    with namespace_link() as link:
        server = start(Server(tmp_path / "server", host=link.host_address, env=env))
        try:
            now = int(time.time())
            inmate_link, family_link = (
                f"{server.url}/join#token=" + cli_token(server, sub, role, name, visit_id,
                                                       now - 5, now + 900)
                for sub, role, name in (("inmate-" + visit_id, "inmate", "Alex Inmate"),
                                        ("family-" + visit_id, "family", "Sam Family")))
            launcher = chromium_in(link, tmp_path, chromium_path())
            async with chromium(origin=server.url) as host_browser, \
                    chromium(launcher, origin=server.url) as far_browser:
                inmate = await open_page(host_browser, inmate_link)
                family = await open_page(far_browser, family_link)
                await join(inmate)
                await join(family)
                await wait_decoding(inmate, 1, 20)
                await wait_decoding(family, 1, 20)
                yield NetVisit(link, server, inmate, family)
        finally:
            stop(server)
