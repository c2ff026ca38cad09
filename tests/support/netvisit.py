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

from tests.support.browser import chromium, chromium_path, joined_pair, two_party_links
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
            inmate_link, family_link = two_party_links(server, visit_id, visit_id, 900)
            launcher = chromium_in(link, tmp_path, chromium_path())
            async with chromium(origin=server.url) as host_browser, \
                    chromium(launcher, origin=server.url) as far_browser:
                inmate, family = await joined_pair(host_browser, inmate_link, far_browser,
                                                   family_link, 20)
                yield NetVisit(link, server, inmate, family)
        finally:
            stop(server)
