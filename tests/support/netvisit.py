"""A live two-party visit whose family sits behind an impairable link (``netem``).

The server listens on the link's host end; the inmate's Chromium runs on the host, the
family's whole Chromium inside the namespace, so every packet of the family's (media,
RTCP, WebSocket) crosses the link. Both pages are joined and decoding when it yields.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Page

from tests.support.browser import chromium_path, chromium_with, joined_pair, two_party_links
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
        server = Server(tmp_path / "server", host=link.host_address, env=env)
        try:
            launcher = chromium_in(link, tmp_path, chromium_path())
            async with chromium_with(
                    lambda: two_party_links(start(server), visit_id, visit_id, 900),
                    [None, launcher], server.url) as (browsers, (inmate_link, family_link)):
                inmate, family = await joined_pair(browsers[0], inmate_link, browsers[1],
                                                   family_link, 20)
                yield NetVisit(link, server, inmate, family)
        finally:
            stop(server)
