"""Replay through a real server (and through the front): the media ticket travels in a
cookie, never in a URL, so no log the product writes can hold it."""

from __future__ import annotations

from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from api.replay import TICKET_COOKIE
from tests.support.compliance import VISIT, call, compliance_token, fabricate, media_cookie
from tests.support.server import running_server


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_replay_plays_with_the_cookie_and_no_log_holds_the_ticket(
        tmp_path: Path, workers: str) -> None:
    recording = fabricate(tmp_path)
    with running_server(tmp_path, VISITBRIDGE_LOG_LEVEL="debug",
                        VISITBRIDGE_WORKERS=workers) as server:
        token = compliance_token(server)
        status, body, headers = await call(server, "GET", f"/api/recordings/{VISIT}", token)
        assert status == 200, body
        ticket = media_cookie(headers, VISIT)
        # Behind nginx (https), the cookie is also Secure.
        _, _, headers = await call(server, "POST", f"/api/recordings/{VISIT}/tickets", token,
                                   headers={"X-Forwarded-Proto": "https"})
        assert SimpleCookie(headers["Set-Cookie"])[TICKET_COOKIE]["secure"]
        for final in body["finals"]:
            assert ticket not in final["url"] and "?" not in final["url"]
            status, data, _ = await call(server, "GET", final["url"],
                                         headers={"Cookie": f"{TICKET_COOKIE}={ticket}"})
            assert (status, data) == (200,
                                      recording.finals[final["participant"]].read_bytes())
            status, data, _ = await call(server, "GET", final["url"])
            assert (status, data["error"]) == (401, "missing_token")
        log = server.log_text()
    assert log.strip(), "the server logged nothing at debug level"
    assert ticket.split(".")[1] not in log
    assert token not in log
