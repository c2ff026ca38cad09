"""The compliance console refuses a replay file that is not the sealed one, and says so."""

from __future__ import annotations

from pathlib import Path

from tests.support.browser import chromium, open_recording
from tests.support.compliance import VISIT, audit_rows, compliance_token, fabricate, flip_byte
from tests.support.server import running_server


async def test_console_shows_why_an_altered_replay_file_is_not_played(tmp_path: Path) -> None:
    recording = fabricate(tmp_path)
    flip_byte(recording.finals["family-9"])
    with running_server(tmp_path) as server:
        token = compliance_token(server, "compliance-ui")
        async with chromium() as browser:
            page = await open_recording(browser, server, token, VISIT)
            alert = page.get_by_role("alert")
            await alert.get_by_text("The replay file of Casey Reyes failed its integrity "
                                    "check and is not played").wait_for()
            assert "final/family-9.webm was altered after the visit" in \
                await alert.text_content()
            assert await page.locator("#players video").count() == 1  # the inmate's only
            assert await page.get_by_label("Recording of Jordan Reyes (inmate)").count() == 1
            assert await page.locator("#players .refused").count() == 1
            assert await page.locator("#integrity").get_attribute("data-ok") == "false"

            await page.get_by_role("button", name="Export with chain of custody").click()
            await alert.get_by_text("Export failed: The export was refused").wait_for()
            assert await page.get_by_role("link", name=f"Download visit-{VISIT}.zip").count() \
                == 0
    refused = [(r["action"], r["subject"]) for r in audit_rows(recording)
               if r["actor"] == "compliance-ui" and r["outcome"] == "refused"]
    assert refused == [("recording_replay", "family-9"), ("recording_export", "family-9")]
