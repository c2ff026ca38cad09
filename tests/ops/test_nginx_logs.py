"""The shipped nginx access log cannot hold a token or a media ticket: its format logs
only fields that never carry one, and every access_log uses it."""

from __future__ import annotations

import re

from api.replay import TICKET_COOKIE
from tests.support.server import ROOT

CONF = ROOT / "deploy" / "nginx" / "visitbridge.conf"
# Fields that carry no secret: a replay's URL holds none (the ticket is a cookie), and a
# join link's token is in the fragment, which browsers never send.
SAFE = {"remote_addr", "remote_user", "time_local", "time_iso8601", "request", "status",
        "body_bytes_sent", "bytes_sent", "http_referer", "http_user_agent", "request_time",
        "upstream_response_time", "request_method", "uri", "request_uri", "server_protocol"}


def directives() -> str:
    """The configuration without its comments."""
    return re.sub(r"#[^\n]*", "", CONF.read_text())


def formats() -> dict[str, str]:
    text = directives()
    return {name: "".join(re.findall(r"'([^']*)'", body)) for name, body in
            re.findall(r"^log_format\s+(\S+)\s+(.*?);\s*$", text, re.S | re.M)}


def render(fmt: str, request: dict[str, str]) -> str:
    """A log line for ``request`` (nginx variable name -> value), as nginx writes it."""
    return re.sub(r"\$(\w+)", lambda m: request.get(m.group(1), "-"), fmt)


def test_access_logs_use_a_format_without_secrets() -> None:
    found = formats()
    assert set(found) == {"visitbridge"}
    fields = set(re.findall(r"\$(\w+)", found["visitbridge"]))
    assert fields <= SAFE, fields - SAFE
    logs = re.findall(r"^\s*access_log\s+(.*?);", directives(), re.M)
    assert logs and all(line.split()[-1] == "visitbridge" for line in logs), logs
    # Both server blocks log with it (none falls back to nginx's default format).
    assert directives().count("server {") == len(logs)


def test_a_replay_request_logs_no_ticket() -> None:
    ticket = "1767878000.Qm9vZ3VzLXRpY2tldC1zaWduYXR1cmU"
    path = "/api/recordings/V-1/media/inmate-5"
    request = {"request": f"GET {path} HTTP/1.1", "uri": path, "request_uri": path,
               "request_method": "GET", "status": "206", "http_user_agent": "Chromium",
               "http_cookie": f"{TICKET_COOKIE}={ticket}", f"cookie_{TICKET_COOKIE}": ticket,
               "remote_addr": "10.0.0.9", "time_local": "03/Dec/2026:07:00:00 +0000"}
    line = render(formats()["visitbridge"], request)
    assert path in line and ticket not in line and ticket.split(".")[1] not in line
