"""The compliance API of a real server process holding a fabricated finished recording:
search, replay, verify, export and legal holds, each audited."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile

import pytest

from api.replay import TICKET_COOKIE
from auth.tokens import VisitClaim
from records.audit import verify as verify_audit
from records.dialect import open_database
from tests.support.compliance import (
    VISIT,
    Recording,
    audit_rows,
    call,
    compliance_token,
    last_seq,
    media_cookie,
)
from tests.support.postgres import server_database
from tests.support.server import Server

Session = tuple[Server, Recording, str, int]


@pytest.fixture
def session(recorded: tuple[Server, Recording]) -> Session:
    """The recorded server, a compliance officer's token, and the last audit seq before
    the test's own requests (``audit_rows(recording, since)`` is what the test caused)."""
    server, recording = recorded
    return server, recording, compliance_token(server), last_seq(recording)


async def test_search_finds_the_recording_and_is_audited(session: Session) -> None:
    server, recording, token, since = session
    for query, expected in (
            ("", ["rec-api-2", VISIT]),
            (f"?visit={VISIT}", [VISIT]),
            ("?inmate=reyes", [VISIT]),
            ("?inmate=INMATE-77", ["rec-api-2"]),
            ("?visitor=casey", [VISIT]),
            ("?visitor=family-9&inmate=jordan", [VISIT]),
            ("?from=2026-11-20&to=2026-11-20", [VISIT]),
            ("?from=2026-11-21", ["rec-api-2"]),
            ("?to=2026-11-19", []),
            ("?from=2026-11-20T13:00:00Z&to=2026-11-20T15:00:00Z", [VISIT])):
        status, body, _ = await call(server, "GET", f"/api/recordings{query}", token)
        assert status == 200, (query, body)
        assert [r["visit"] for r in body["recordings"]] == expected, query
    status, body, _ = await call(server, "GET", "/api/recordings?visitor=casey", token)
    found = body["recordings"][0]
    assert (found["inmate"], found["inmate_name"], found["state"], found["on_hold"],
            found["seal"]) == ("inmate-41", "Jordan Reyes", "sealed", False, recording.seal)
    assert found["visitors"] == [{"sub": "family-9", "name": "Casey Reyes"}]

    status, body, _ = await call(server, "GET", "/api/recordings?from=last+tuesday", token)
    assert (status, body["error"]) == (400, "bad_date")

    searches = [r for r in audit_rows(recording, since) if r["action"] == "recording_search"]
    assert len(searches) == 11
    assert all((r["actor"], r["role"], r["outcome"]) == ("compliance-1", "compliance", "ok")
               for r in searches)
    assert searches[4]["detail"] == {"filters": {"visitor": "casey"}, "results": 1,
                                     "visits": [VISIT]}
    assert searches[1]["visit"] == VISIT  # a search by visit id is filed under that visit


async def test_staff_of_other_roles_and_anonymous_callers_are_refused_and_audited(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    since = last_seq(recording)
    visit = VisitClaim(id=VISIT, starts_at=int(time.time()) - 5, ends_at=int(time.time()) + 600)
    family = server.token("family-9", "family", visit)
    officer = server.token("officer-7", "officer", None)
    paths = [("GET", "/api/recordings"), ("GET", f"/api/recordings/{VISIT}"),
             ("GET", f"/api/recordings/{VISIT}/media/inmate-41"),
             ("POST", f"/api/recordings/{VISIT}/verify"),
             ("GET", f"/api/recordings/{VISIT}/export"),
             ("POST", f"/api/recordings/{VISIT}/hold"),
             ("DELETE", f"/api/recordings/{VISIT}/hold")]
    for method, path in paths:
        for token in (family, officer):
            status, body, _ = await call(server, method, path, token, {"reason": "x"})
            assert (status, body["error"]) == (403, "wrong_role"), (method, path)
        status, body, _ = await call(server, method, path)
        assert (status, body["error"]) == (401, "missing_token"), (method, path)
    status, body, _ = await call(server, "GET", "/api/recordings", "not-a-jwt")
    assert status == 401
    refused = [r for r in audit_rows(recording, since) if r["outcome"] == "refused"]
    assert all(r["action"] == "api" for r in refused)
    # A verified token is audited by name, once per call.
    named = [r for r in refused if r["reason"] == "wrong_role"]
    assert [r["actor"] for r in named] == ["family-9", "officer-7"] * len(paths)
    assert named[1]["detail"] == {"request": "GET /api/recordings"}
    # Anonymous callers: the first refusal of each kind now, the rest counted for later.
    anonymous = [r for r in refused if r["reason"] != "wrong_role"]
    assert [(r["actor"], r["reason"], r["detail"]["count"]) for r in anonymous] == [
        ("unknown", "missing_token", 1), ("unknown", "malformed", 1)]
    assert not [r for r in audit_rows(recording, since) if r["outcome"] != "refused"]


async def test_details_issue_a_media_ticket_that_serves_ranges_without_the_bearer(
        session: Session) -> None:
    server, recording, token, since = session
    status, body, headers = await call(server, "GET", f"/api/recordings/{VISIT}", token)
    assert status == 200, body
    assert [p["id"] for p in body["participants"]] == ["inmate-41", "family-9"]
    assert [(f["participant"], f["name"], f["role"]) for f in body["finals"]] == [
        ("inmate-41", "Jordan Reyes", "inmate"), ("family-9", "Casey Reyes", "visitor")]
    now = time.time()
    for final in body["finals"]:
        # The URL holds no secret: the ticket travels in a cookie.
        assert final["url"] == f"/api/recordings/{VISIT}/media/{final['participant']}"
        assert now + 500 < final["expires_at"] <= now + 601
        assert final["bytes"] == recording.finals[final["participant"]].stat().st_size
        assert final["offset_s"] == {"inmate-41": 0, "family-9": 0.5}[final["participant"]]
    assert body["export_url"] == f"/api/recordings/{VISIT}/export"
    assert body["ticket_ttl_s"] == 600
    assert body["integrity"]["ok"] is True, body["integrity"]
    assert body["integrity"]["sealed"] is True
    entries = audit_rows(recording, since)
    replays = [e for e in entries if e["action"] == "recording_replay"]
    assert [(e["actor"], e["visit"], e["subject"]) for e in replays] == [
        ("compliance-1", VISIT, "inmate-41"), ("compliance-1", VISIT, "family-9")]
    assert replays[0]["detail"]["ticket_expires_at"] == body["finals"][0]["expires_at"]
    ticket = media_cookie(headers, VISIT)

    # The URL and the ticket cookie (no Authorization header) play the file, with ranges.
    url = body["finals"][0]["url"]
    with_ticket = {"Cookie": f"{TICKET_COOKIE}={ticket}"}
    expected = recording.finals["inmate-41"].read_bytes()
    since = last_seq(recording)
    status, data, headers = await call(server, "GET", url, headers=with_ticket)
    assert status == 200
    assert data == expected
    assert headers["Content-Type"] == "video/webm"
    assert headers["Accept-Ranges"] == "bytes"
    status, data, headers = await call(server, "GET", url,
                                       headers={**with_ticket, "Range": "bytes=0-99"})
    assert status == 206
    assert data == expected[:100]
    assert headers["Content-Range"] == f"bytes 0-99/{len(expected)}"
    status, data, _ = await call(server, "GET", url,
                                 headers={**with_ticket, "Range": "bytes=1000-"})
    assert (status, data) == (206, expected[1000:])
    assert audit_rows(recording, since) == []  # range requests are not audited again

    # A ticket opens only its own visit's files, unaltered; in the query it is ignored.
    expiry, _, sig = ticket.partition(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    other = "/api/recordings/rec-api-2/media/inmate-77"
    for path, bad in ((other, ticket), (url, f"{expiry}.{flipped}"),
                      (url, f"{int(expiry) + 3600}.{sig}"), (url, ""), (url, f"1.{sig}")):
        status, data, _ = await call(server, "GET", path, headers={
            "Cookie": f"{TICKET_COOKIE}={bad}", "Range": "bytes=0-99"})
        assert (status, data["error"]) == (403, "bad_ticket"), bad
    status, data, _ = await call(server, "GET", f"{url}?ticket={ticket}")
    assert (status, data["error"]) == (401, "missing_token")
    refused = audit_rows(recording, since)
    # The first bad ticket is written at once, the other four are counted into one later
    # row (the ignored query ticket's missing_token joins this source's open window of
    # earlier ones); none is attached to the visit.
    rows = [(r["action"], r["outcome"], r["reason"], r["visit"], r["detail"]["count"])
            for r in refused]
    assert rows[0] == ("api", "refused", "bad_ticket", None, 1), rows
    assert all(row[3] is None and row[2] in ("bad_ticket", "missing_token") for row in rows)

    # A fresh ticket (what the console fetches before this one expires).
    status, renewed, headers = await call(server, "POST", f"/api/recordings/{VISIT}/tickets",
                                          token)
    assert status == 200
    assert [f["participant"] for f in renewed["finals"]] == ["inmate-41", "family-9"]
    status, data, _ = await call(server, "GET", renewed["finals"][1]["url"], headers={
        "Cookie": f"{TICKET_COOKIE}={media_cookie(headers, VISIT)}", "Range": "bytes=0-99"})
    assert (status, data) == (206, recording.finals["family-9"].read_bytes()[:100])


async def test_media_with_the_bearer_header_serves_ranges_and_audits_plays(
        session: Session) -> None:
    server, recording, token, since = session
    path = f"/api/recordings/{VISIT}/media/family-9"
    expected = recording.finals["family-9"].read_bytes()
    status, data, headers = await call(server, "GET", path, token, headers={"Range": "bytes=0-99"})
    assert (status, data) == (206, expected[:100])
    assert headers["Cache-Control"] == "no-store"
    status, data, _ = await call(server, "GET", path, token, headers={"Range": "bytes=100-199"})
    assert (status, data) == (206, expected[100:200])
    replays = [r for r in audit_rows(recording, since) if r["action"] == "recording_replay"]
    assert [(r["actor"], r["subject"], r["detail"]) for r in replays] == [
        ("compliance-1", "family-9", {"via": "bearer"})]  # once per play, not per range
    status, body, _ = await call(server, "GET", f"/api/recordings/{VISIT}/media/nobody", token)
    assert (status, body["error"]) == (404, "no_media")
    status, body, _ = await call(server, "GET", "/api/recordings/nope/media/x", token)
    assert (status, body["error"]) == (404, "unknown_recording")
    status, body, _ = await call(server, "GET", "/api/recordings/nope", token)
    assert (status, body["error"]) == (404, "unknown_recording")
    status, body, _ = await call(
        server, "GET", f"/api/recordings/{VISIT}/media/..%2Fmanifest.jsonl", token)
    assert status == 404


async def test_verify_is_audited_and_reports_the_result(session: Session) -> None:
    server, recording, token, since = session
    status, body, _ = await call(server, "POST", f"/api/recordings/{VISIT}/verify", token)
    assert status == 200, body
    assert body["visit"] == VISIT
    assert (body["ok"], body["problems"], body["sealed"], body["segments"]) == (
        True, [], True, 2)
    assert body["tracks"] == ["family-9-video", "inmate-41-video"]
    entries = audit_rows(recording, since)
    assert [(e["action"], e["actor"], e["visit"], e["detail"]["intact"]) for e in entries] == [
        ("recording_verify", "compliance-1", VISIT, body["ok"])]


async def test_export_streams_a_zip_whose_custody_includes_this_export(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    token = compliance_token(server, "compliance-2")
    status, _, _ = await call(server, "GET", f"/api/recordings/{VISIT}/media/inmate-41", token)
    assert status == 200  # a replay before the export: custody must carry both
    since = last_seq(recording)
    status, data, headers = await call(server, "GET", f"/api/recordings/{VISIT}/export", token)
    assert status == 200, data
    assert headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == f'attachment; filename="visit-{VISIT}.zip"'
    assert headers["X-Export-SHA256"] == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        custody = json.loads(archive.read("custody.json"))
        assert archive.read("media/inmate-41.webm") == recording.finals["inmate-41"].read_bytes()
    assert "segments/inmate-41-video/segment-00001.webm" in names
    assert custody[-1]["action"] == "recording_export"
    assert (custody[-1]["actor"], custody[-1]["visit"]) == ("compliance-2", VISIT)
    assert all(entry["visit"] == VISIT for entry in custody)
    assert {"recording_replay", "recording_export"} <= {e["action"] for e in custody}
    entries = audit_rows(recording, since)
    assert [(e["action"], e["actor"]) for e in entries] == [
        ("recording_export", "compliance-2"), ("recording_export_digest", "compliance-2")]
    assert entries[1]["detail"] == {"file": f"visit-{VISIT}.zip",
                                    "sha256": hashlib.sha256(data).hexdigest(),
                                    "bytes": len(data)}


async def test_legal_holds_are_placed_and_released_one_at_a_time_for_a_reason(
        session: Session) -> None:
    server, recording, token, since = session
    base = f"/api/recordings/{VISIT}/hold"
    status, body, _ = await call(server, "POST", base, token, {})
    assert (status, body["error"]) == (400, "reason_required")
    status, body, _ = await call(server, "POST", base, token, {"reason": "case 2026-114"})
    assert status == 200
    assert body["on_hold"] is True
    assert [(h["placed_by"], h["reason"], h["released_at"]) for h in body["holds"]] == [
        ("compliance-1", "case 2026-114", None)]
    first = body["holds"][0]["id"]
    status, body, _ = await call(server, "POST", base, token, {"reason": "subpoena 88"})
    second = body["holds"][1]["id"]
    status, body, _ = await call(server, "GET", f"/api/recordings?visit={VISIT}", token)
    assert body["recordings"][0]["on_hold"] is True

    # No reason, a blank one, or no hold named: refused, and nothing is released.
    for method, path, sent, code in (
            ("DELETE", f"{base}/{first}", None, "reason_required"),
            ("DELETE", f"{base}/{first}", {"reason": "   "}, "reason_required"),
            ("POST", f"{base}/{first}/release", {}, "reason_required"),
            ("DELETE", base, {"reason": "all of them"}, "hold_required"),
            ("POST", f"{base}/release", {"reason": "all of them"}, "hold_required")):
        status, body, _ = await call(server, method, path, token, sent)
        assert (status, body["error"]) == (400, code), (method, path, sent)
    status, body, _ = await call(server, "GET", f"/api/recordings/{VISIT}", token)
    assert [h["released_at"] for h in body["holds"]] == [None, None]

    status, body, _ = await call(server, "DELETE", f"{base}/{first}", token,
                                 {"reason": "case closed"})
    assert (status, body["on_hold"]) == (200, True)  # the other hold still holds it
    assert [(h["id"], h["released_by"], h["release_reason"]) for h in body["holds"]] == [
        (first, "compliance-1", "case closed"), (second, None, None)]
    status, body, _ = await call(server, "DELETE", f"{base}/{first}", token, {"reason": "x"})
    assert (status, body["error"]) == (409, "hold_released")
    for missing in (f"{base}/999999", f"{base}/abc"):
        status, body, _ = await call(server, "DELETE", missing, token, {"reason": "x"})
        assert (status, body["error"]) == (404, "unknown_hold"), missing
    # The POST form, for clients that cannot send a body with DELETE.
    status, body, _ = await call(server, "POST", f"{base}/{second}/release", token,
                                 {"reason": "subpoena withdrawn"})
    assert (status, body["on_hold"]) == (200, False)
    status, body, _ = await call(server, "POST", "/api/recordings/nope/hold", token,
                                 {"reason": "x"})
    assert (status, body["error"]) == (404, "unknown_recording")

    entries = [e for e in audit_rows(recording, since) if e["action"] != "recording_search"]
    assert [(e["action"], e["actor"], e["visit"], e["reason"], e["detail"].get("hold"))
            for e in entries] == [
        ("recording_hold", "compliance-1", VISIT, "case 2026-114", first),
        ("recording_hold", "compliance-1", VISIT, "subpoena 88", second),
        ("recording_replay", "compliance-1", VISIT, "", None),
        ("recording_replay", "compliance-1", VISIT, "", None),
        ("recording_verify", "compliance-1", VISIT, "", None),
        ("recording_release", "compliance-1", VISIT, "case closed", first),
        ("recording_release", "compliance-1", VISIT, "subpoena withdrawn", second)]


async def test_every_compliance_action_is_in_a_valid_audit_chain(
        recorded: tuple[Server, Recording]) -> None:
    server, recording = recorded
    token = compliance_token(server, "compliance-9")
    since = last_seq(recording)
    await call(server, "GET", "/api/recordings?inmate=reyes", token)
    await call(server, "GET", f"/api/recordings/{VISIT}", token)
    await call(server, "POST", f"/api/recordings/{VISIT}/verify", token)
    await call(server, "GET", f"/api/recordings/{VISIT}/export", token)
    _, held, _ = await call(server, "POST", f"/api/recordings/{VISIT}/hold", token,
                            {"reason": "r"})
    hold = held["holds"][-1]["id"]
    await call(server, "DELETE", f"/api/recordings/{VISIT}/hold/{hold}", token, {"reason": "q"})
    actions = {e["action"] for e in audit_rows(recording, since) if e["actor"] == "compliance-9"}
    expected = {"recording_search", "recording_replay", "recording_hold", "recording_release",
                "recording_verify", "recording_export"}
    assert expected <= actions
    db = open_database(server_database(recording.data_dir))
    try:
        assert verify_audit(db).ok
    finally:
        db.close()


async def test_the_console_page_is_served_with_the_strict_policy(
        recorded: tuple[Server, Recording]) -> None:
    server, _ = recorded
    status, data, headers = await call(server, "GET", "/compliance")
    assert status == 200
    html = data.decode()
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert '<script src="/static/compliance.js" defer></script>' in html
    # Only external scripts: no inline script could run under the policy anyway.
    assert html.count("<script") == html.count('<script src="/static/')
    status, _, _ = await call(server, "GET", "/static/compliance.js")
    assert status == 200
