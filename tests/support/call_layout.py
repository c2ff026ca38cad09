"""What a person sees of the join page's call layout, measured in a real browser, and
axe-core's verdict on a page state."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Page

# Rectangles of what matters, the remote videos' rendered size, and whether anything
# scrolls. "largest": no visible element other than the remote videos' own containers
# is bigger than the biggest remote video.
MEASURE = """(() => {
  const box = (el) => { const r = el.getBoundingClientRect();
    return { left: r.left, top: r.top, right: r.right, bottom: r.bottom,
             area: r.width * r.height }; };
  const shown = (el) => el.checkVisibility() && el.getBoundingClientRect().width > 0;
  const remotes = [...document.querySelectorAll("li.remote:not([hidden]) video")];
  const biggest = Math.max(0, ...remotes.map((v) => box(v).area));
  const others = [...document.body.querySelectorAll("*")]
    .filter((el) => shown(el) && !remotes.some((v) => el === v || el.contains(v)));
  const larger = others.filter((el) => box(el).area > biggest)
    .map((el) => `${el.tagName}#${el.id}.${el.className}`);
  const control = (id) => {
    const el = document.getElementById(id);
    return shown(el) ? box(el) : null;
  };
  return {
    viewport: { width: innerWidth, height: innerHeight },
    scrolls: document.scrollingElement.scrollHeight > innerHeight
      || document.scrollingElement.scrollWidth > innerWidth,
    remotes: remotes.map((v) => ({ ...box(v), fit: getComputedStyle(v).objectFit,
                                   frame: [v.videoWidth, v.videoHeight] })),
    larger,
    controls: { mic: control("mic"), cam: control("cam"), leave: control("leave"),
                clock: control("clock") },
  };
})()"""


def inside(rect: dict[str, float] | None, viewport: dict[str, int]) -> bool:
    return (rect is not None and rect["area"] > 0 and rect["left"] >= -0.5
            and rect["top"] >= -0.5 and rect["right"] <= viewport["width"] + 0.5
            and rect["bottom"] <= viewport["height"] + 0.5)


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (min(a["right"], b["right"]) - max(a["left"], b["left"]) > 1
            and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > 1)


async def check_call_layout(page: Page, remotes: int) -> dict[str, Any]:
    """Assert what a person in the call must see at the page's current size: ``remotes``
    remote videos, uncropped, none overlapping another, each wholly on screen and larger
    than anything else, and the controls and time left on screen with nothing to scroll."""
    got = await page.evaluate(MEASURE)
    viewport = got["viewport"]
    assert not got["scrolls"], got
    assert len(got["remotes"]) == remotes, got
    for video in got["remotes"]:
        assert inside(video, viewport), (viewport, video)
        assert video["fit"] == "contain", video
    for i, a in enumerate(got["remotes"]):
        assert not any(overlap(a, b) for b in got["remotes"][i + 1:]), got["remotes"]
    assert not got["larger"], got["larger"]
    for name, rect in got["controls"].items():
        assert inside(rect, viewport), (viewport, name, rect)
    return got


async def assert_accessible(page: Page, state: str) -> None:
    """axe-core (bundled by axe-playwright-python) finds nothing on this page state."""
    results = await Axe().run(page)
    assert results.violations_count == 0, (state, results.generate_report())
