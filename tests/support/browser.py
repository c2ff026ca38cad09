"""Real headless Chromium (Debian's package) driven by Playwright, with fake media."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from playwright.async_api import Browser, Page, async_playwright

from tests.support.server import AUDIENCE, ISSUER, KID, ROOT, Server, make_server, start, stop

T = TypeVar("T")

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")

FLAGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Viewer-only pages never call getUserMedia: without this their candidates are
    # mDNS names that aiortc cannot resolve. (Repeated --disable-features do not merge.)
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def chromium_path() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    raise RuntimeError("Debian chromium is not installed: run `make test`")


@contextlib.asynccontextmanager
async def chromium(executable: str | None = None,
                   origin: str | None = None) -> AsyncIterator[Browser]:
    """A browser; ``executable`` runs one elsewhere (``netem.chromium_in``), and pages of
    ``origin`` (plain HTTP on a test network) get the camera as a secure origin would."""
    async with chromiums([executable], origin) as (browser,):
        yield browser


@contextlib.asynccontextmanager
async def chromium_with(prepare: Callable[[], T], executables: Sequence[str | None] = (None,),
                        origin: str | None = None) -> AsyncIterator[tuple[list[Browser], T]]:
    """``chromiums``, launched while ``prepare`` (join links from the token CLI, say) runs
    in a thread: each takes most of a second, so they take it side by side."""
    prepared = asyncio.ensure_future(asyncio.to_thread(prepare))
    try:
        async with chromiums(executables, origin) as browsers:
            yield browsers, await prepared
    finally:
        await asyncio.gather(prepared, return_exceptions=True)  # no thread left running


@contextlib.asynccontextmanager
async def served_chromium(data_dir: Path, prepare: Callable[[Server], T],
                          **env: str) -> AsyncIterator[tuple[Server, Browser, T]]:
    """A real server (as ``running_server``) and a browser (``chromium``), the browser
    launched while the server starts and ``prepare`` runs on it (join links from the
    token CLI, say)."""
    server = make_server(data_dir, **env)
    try:
        async with chromium_with(lambda: prepare(start(server))) as ([browser], prepared):
            yield server, browser, prepared
    finally:
        stop(server)


@contextlib.asynccontextmanager
async def chromiums(executables: Sequence[str | None],
                    origin: str | None = None) -> AsyncIterator[list[Browser]]:
    """One browser per executable (None: this machine's Chromium) as in ``chromium``,
    driven by one Playwright driver: it takes half a second to start."""
    args = [*FLAGS, *([f"--unsafely-treat-insecure-origin-as-secure={origin}"] if origin else [])]
    async with async_playwright() as pw, contextlib.AsyncExitStack() as stack:
        browsers = []
        for executable in executables:
            browser = await pw.chromium.launch(executable_path=executable or chromium_path(),
                                               args=args, chromium_sandbox=False)
            stack.push_async_callback(browser.close)
            browsers.append(browser)
        yield browsers


# Keeps every camera and microphone track a page gets (window.cameraTracks), so a test
# can check that the page released them (readyState "ended").
TRACK_SPY = """(() => {
  window.cameraTracks = [];
  const devices = navigator.mediaDevices;
  if (!devices) return;
  const get = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints) => {
    const stream = await get(constraints);
    window.cameraTracks.push(...stream.getTracks());
    return stream;
  };
})();"""


async def open_page(browser: Browser, url: str, width: int = 1024, height: int = 768,
                    mobile: bool = False, locale: str | None = None) -> Page:
    """A page in its own context: like a separate home with its own browser (a phone:
    ``mobile``, with touch; ``locale``: the browser's language)."""
    context = await browser.new_context(viewport={"width": width, "height": height},
                                        is_mobile=mobile, has_touch=mobile, locale=locale)
    await context.add_init_script(TRACK_SPY)
    page = await context.new_page()
    await page.goto(url)
    return page


async def camera_tracks(page: Page) -> list[str]:
    """readyState of every track getUserMedia gave the page."""
    return await page.evaluate("window.cameraTracks.map((t) => t.readyState)")


async def inbound(page: Page) -> list[dict[str, Any]]:
    """The page's inbound-rtp stats (exposed by join.js as window.visitStats)."""
    stats = await page.evaluate("window.visitStats ? window.visitStats() : []")
    return [s for s in stats if s.get("type") == "inbound-rtp"]


async def decoded(page: Page) -> dict[str, float]:
    """Video frames decoded and audio samples received, summed over remote streams."""
    rtp = await inbound(page)
    return {
        "frames": sum(s.get("framesDecoded", 0) for s in rtp if s.get("kind") == "video"),
        "samples": sum(s.get("totalSamplesReceived", 0) for s in rtp
                       if s.get("kind") == "audio"),
        "video_streams": sum(1 for s in rtp
                             if s.get("kind") == "video" and s.get("framesDecoded", 0) > 0),
    }


async def remote_video_widths(page: Page) -> list[int]:
    return await page.evaluate(
        "[...document.querySelectorAll('li.remote:not([hidden]) video')].map(v => v.videoWidth)")


def cli_token(server: Server, sub: str, role: str, name: str, visit_id: str,
              starts_at: int, ends_at: int) -> str:
    """A token from `visitbridge token`, the reference issuer a records system copies."""
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "token",
         "--key", str(server.data_dir / "keys" / f"{KID}.private.pem"), "--kid", KID,
         "--issuer", ISSUER, "--audience", AUDIENCE, "--sub", sub, "--role", role,
         "--name", name, "--visit-id", visit_id, "--starts-at", str(starts_at),
         "--ends-at", str(ends_at)],
        cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cli_tokens(server: Server, requests: Sequence[tuple[str, str, str, str, int, int]]
               ) -> list[str]:
    """``cli_token`` for each (sub, role, name, visit id, starts at, ends at), the CLI
    processes side by side."""
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda request: cli_token(server, *request), requests))


def join_links(server: Server, requests: Sequence[tuple[str, str, str, str, int, int]]
               ) -> list[str]:
    """Join links with tokens from ``cli_tokens``."""
    return [f"{server.url}/join#token={token}" for token in cli_tokens(server, requests)]


async def officer_call(server: Server, path: str, body: dict[str, object]) -> None:
    """An officer's call to the visits API (mute, end) that must succeed."""
    officer = server.token("officer-lay", "officer", None)
    async with aiohttp.ClientSession() as http, http.post(
            f"{server.url}/api/visits/{path}", json=body,
            headers={"Authorization": f"Bearer {officer}"}) as resp:
        assert resp.status == 200, await resp.text()


async def end_visit(server: Server, visit: str) -> None:
    await officer_call(server, f"{visit}/end", {"reason": "test"})


async def join(page: Page) -> None:
    await page.get_by_role("button", name="Join the visit").click()


def two_party_links(server: Server, visit_id: str, tag: str,
                    seconds: int = 600) -> tuple[str, str]:
    """Join links of an inmate (Alex) and a family member (Sam) of a visit live now."""
    now = int(time.time())
    inmate, family = join_links(server, [
        (f"{role}-{tag}", role, name, visit_id, now - 5, now + seconds)
        for role, name in (("inmate", "Alex Inmate"), ("family", "Sam Family"))])
    return inmate, family


async def joined_pair(inmate_browser: Browser, inmate_link: str, family_browser: Browser,
                      family_link: str, timeout: float = 15) -> tuple[Page, Page]:
    """Both pages joined, each decoding the other's video."""
    inmate = await open_page(inmate_browser, inmate_link)
    family = await open_page(family_browser, family_link)
    await join(inmate)
    await join(family)
    await wait_decoding(inmate, 1, timeout)
    await wait_decoding(family, 1, timeout)
    return inmate, family


async def wait_decoding(page: Page, streams: int, timeout: float) -> float:
    """Wait until video from ``streams`` others is being decoded; return seconds waited."""
    start = time.monotonic()
    while True:
        got = await decoded(page)
        if got["video_streams"] >= streams:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"only {got} decoded after {timeout} s")
        await asyncio.sleep(0.1)


async def until(page: Page, expression: str, timeout: float = 10.0) -> None:
    """Poll a page expression (wait_for_function evaluates strings, which the pages' CSP
    forbids)."""
    deadline = time.time() + timeout
    while not await page.evaluate(expression):
        if time.time() > deadline:
            raise TimeoutError(f"not true after {timeout} s: {expression}")
        await asyncio.sleep(0.05)


async def open_recording(browser: Browser, server: Server, token: str, visit: str) -> Page:
    """The compliance console, searched by visit id, with that visit's recording open."""
    page = await open_page(browser, f"{server.url}/compliance#token={token}")
    await page.get_by_label("Visit ID").fill(visit)
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("button", name=f"Open recording of visit {visit}").click()
    await page.get_by_role("heading", name=f"Recording of visit {visit}").wait_for()
    return page


# In the page: resolves to milliseconds from Open to the first frame decoded one full-rate
# frame (3000 RTP ticks) after the previous one.
FIRST_FULL_RATE = """async (visit) => {
  const video = document.querySelector(`section.watch[data-visit="${visit}"] video`);
  const opened = performance.now();
  let last = null;
  const done = new Promise((resolve) => {
    const step = (now, meta) => {
      if (last !== null && meta.rtpTimestamp - last > 0 && meta.rtpTimestamp - last <= 4500) {
        resolve(now - opened); return;
      }
      last = meta.rtpTimestamp;
      video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
  });
  document.querySelector(`section.watch[data-visit="${visit}"] .panel-actions button`).click();
  return await done;
}"""


async def open_to_full_rate_ms(page: Page, visit: str) -> float:
    """Click Open on a watched visit of the officer wall; milliseconds until its first
    frame at the full frame rate is decoded."""
    return float(await page.evaluate(FIRST_FULL_RATE, visit))


async def plays_all_parties(page: Page, parties: int = 2) -> None:
    """The open recording's replay files are all fully playable (HAVE_ENOUGH_DATA), play
    together when asked, and the integrity line says the recording is intact."""
    await until(page, f"document.querySelectorAll('#players video').length === {parties}",
                timeout=15)
    await until(page, "[...document.querySelectorAll('#players video')]"
                      ".every(v => v.readyState === 4)", timeout=20)
    await page.get_by_role("button", name="Play all parties").click()
    start = await page.evaluate("window.replayState().times")
    await asyncio.sleep(1.5)
    later = await page.evaluate("window.replayState().times")
    assert all(b > a + 0.5 for a, b in zip(start, later, strict=True)), (start, later)
    assert (await page.locator("#integrity").text_content() or "").startswith("Intact")
