"""Each page is served whole, alike by a server and by the front: the head every page
shares, then the page's own title and scripts in the order they run, then its content."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from tests.support.server import running_server

SHARED_HEAD = {"charset": "utf-8", "viewport": "width=device-width, initial-scale=1",
               "referrer": "no-referrer", "stylesheet": "/static/style.css"}
PAGES = {
    "/join": ("Video visit", ["token", "i18n", "rtc", "lobby", "stage", "quality", "join"]),
    "/officer": ("Officer console", ["token", "rtc", "console", "wall", "officer"]),
    "/compliance": ("Compliance console", ["token", "console", "compliance"]),
}


class Outline(HTMLParser):
    """What a browser takes from a page: doctype, language, head, and whether it has a
    main part."""

    def __init__(self) -> None:
        super().__init__()
        self.doctype = ""
        self.lang = ""
        self.head: dict[str, str] = {}
        self.title = ""
        self.scripts: list[str] = []
        self.has_main = False
        self._in_title = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = a.get("lang", "")
        elif tag == "meta":
            self.head.update({"charset": a["charset"]} if "charset" in a
                             else {a["name"]: a["content"]})
        elif tag == "link" and a.get("rel") == "stylesheet":
            self.head["stylesheet"] = a["href"]
        elif tag == "script":
            assert "defer" in a, a  # every script runs once the page is parsed
            self.scripts.append(a["src"])
        self._in_title = tag == "title"
        self.has_main = self.has_main or tag == "main"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


@pytest.mark.parametrize("env", [{}, {"VISITBRIDGE_WORKERS": "2"}], ids=["server", "front"])
async def test_every_page_has_the_shared_head_and_its_own_title_and_scripts(
        tmp_path: Path, env: dict[str, str]) -> None:
    with running_server(tmp_path, **env) as server:
        async with aiohttp.ClientSession() as http:
            for path, (title, scripts) in PAGES.items():
                async with http.get(server.url + path) as resp:
                    assert resp.status == 200, path
                    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
                    html = await resp.text()
                outline = Outline()
                outline.feed(html)
                assert html.startswith("<!doctype html>\n"), path
                assert (outline.doctype, outline.lang) == ("doctype html", "en"), path
                assert outline.head == SHARED_HEAD, path
                assert outline.title == title
                assert outline.scripts == [f"/static/{s}.js" for s in scripts], path
                assert outline.has_main, path
                for src in outline.scripts:
                    async with http.get(server.url + src) as resp:
                        assert resp.status == 200, src
            for code in ("en", "zh-CN", "es"):  # the join page's catalogues
                async with http.get(f"{server.url}/static/i18n/{code}.json") as resp:
                    assert resp.status == 200, code
                    assert "page.title" in await resp.json(content_type=None), code
