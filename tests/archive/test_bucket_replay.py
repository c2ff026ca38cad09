"""A real server archives a sealed recording to the bucket and serves it from there, with
the same checks as a local file; holds and retention deletions reach the bucket."""

from __future__ import annotations

import asyncio
from pathlib import Path

from api.replay import TICKET_COOKIE
from recorder.archive_plan import object_key
from tests.support.compliance import (
    VISIT,
    audit_rows,
    call,
    compliance_token,
    fabricate,
    media_cookie,
)
from tests.support.s3 import SeaweedS3, repoint, wait_archived
from tests.support.server import running_server

FAMILY = "final/family-9.webm"


async def test_replay_serves_the_sealed_version_and_refuses_bytes_the_seal_does_not_cover(
        s3: SeaweedS3, tmp_path: Path) -> None:
    recording = fabricate(tmp_path)
    sealed = recording.finals["family-9"].read_bytes()
    bucket = s3.new_bucket("replay-pinned")
    with running_server(tmp_path, **s3.server_env(bucket),
                        VISITBRIDGE_S3_ARCHIVE_INTERVAL_S="1") as server:
        await wait_archived(tmp_path, VISIT)
        assert not recording.visit_dir.exists()
        token = compliance_token(server)
        status, details, headers = await call(server, "GET", f"/api/recordings/{VISIT}", token)
        assert status == 200 and details["integrity"]["ok"] is True, details["integrity"]
        assert [f["bytes"] for f in details["finals"] if f["participant"] == "family-9"] \
            == [len(sealed)]
        media = f"/api/recordings/{VISIT}/media/family-9"
        cookie = {"Cookie": f"{TICKET_COOKIE}={media_cookie(headers, VISIT)}"}
        status, body, _ = await call(server, "GET", media, headers=cookie)
        assert status == 200 and body == sealed
        status, body, answer = await call(server, "GET", media,
                                          headers={**cookie, "Range": "bytes=100-199"})
        assert (status, body) == (206, sealed[100:200])
        assert answer["Content-Range"] == f"bytes 100-199/{len(sealed)}"

        # Object Lock lets anyone with write access add a version under the same key; the
        # index pinned the sealed version, so replay still serves the sealed bytes.
        tampered = bytearray(sealed)
        tampered[500] ^= 0x01
        put = s3.client().put_object(Bucket=bucket, Key=object_key(VISIT, FAMILY),
                                     Body=bytes(tampered))
        status, body, _ = await call(server, "GET", media, headers=cookie)
        assert status == 200 and body == sealed

        # Should the index ever name that version, the bytes read from the bucket fail the
        # check against the seal: refused, as a local file would be.
        repoint(tmp_path, VISIT, FAMILY, put["VersionId"])
        status, body, _ = await call(server, "GET", media, headers=cookie)
        assert status == 409 and body["error"] == "replay_file_altered"
        assert "final/family-9.webm was altered after the visit" in body["message"]
        status, body, _ = await call(server, "GET", f"/api/recordings/{VISIT}/export", token)
        assert status == 409 and body["error"] == "replay_file_altered"
        status, details, _ = await call(server, "GET", f"/api/recordings/{VISIT}", token)
        assert details["integrity"]["ok"] is False


async def test_a_console_hold_is_an_s3_legal_hold_and_retention_cannot_delete_early(
        s3: SeaweedS3, tmp_path: Path) -> None:
    recording = fabricate(tmp_path)
    bucket = s3.new_bucket("hold-follow")
    client = s3.client()

    def holds(record: dict[str, dict]) -> set[str]:
        return {client.get_object_legal_hold(
            Bucket=bucket, Key=object_key(VISIT, rel), VersionId=entry["version"]
        )["LegalHold"]["Status"] for rel, entry in record["objects"].items()}

    env = {**s3.server_env(bucket), "VISITBRIDGE_S3_ARCHIVE_INTERVAL_S": "1"}
    with running_server(tmp_path, **env) as server:
        record = await wait_archived(tmp_path, VISIT)
        token = compliance_token(server)
        status, body, _ = await call(server, "POST", f"/api/recordings/{VISIT}/hold", token,
                                     {"reason": "Subpoena 7"})
        assert status == 200
        assert holds(record) == {"ON"}
        hold = body["holds"][0]["id"]
        status, body, _ = await call(server, "DELETE", f"/api/recordings/{VISIT}/hold/{hold}",
                                     token, {"reason": "Case closed"})
        assert status == 200 and body["on_hold"] is False
        assert holds(record) == {"OFF"}

    # The operator shortens retention to one day: the recording (ended two weeks ago) is
    # deleted and its data keys shredded here, but the bucket keeps its objects until the
    # retention date they were locked with, and says so.
    with running_server(tmp_path, **env, VISITBRIDGE_RETENTION_DAYS="1") as server:
        for _ in range(60):
            rows = [r for r in audit_rows(recording)
                    if r["action"] == "recording_purge" and r["visit"] == VISIT]
            if rows:
                break
            await asyncio.sleep(0.5)
        assert [(r["outcome"], r["actor"]) for r in rows] == [("refused", "archive")]
        assert "the bucket refuses to delete the recording's objects before their retention " \
               "date (2027-05-19T14:30:00+00:00)" in rows[0]["reason"]
        assert "purge" in server.log_text() and "refuses" in server.log_text()
    deleted = [r["detail"] for r in audit_rows(recording)
               if r["action"] == "recording_deleted" and r["visit"] == VISIT]
    assert len(deleted) == 1 and deleted[0]["files_found"] is False  # only in the bucket
    versions = client.list_object_versions(Bucket=bucket, Prefix=f"{VISIT}/")["Versions"]
    assert len(versions) == len(record["objects"])
