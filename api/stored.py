"""Where the compliance console reads a recording: its local folder, or the write-once
bucket once it was archived there (``recorder.archiver``).

Either way the same checks apply to the bytes served. A replay file streamed from the
bucket is read by the version id the index pinned when it was archived (a newer version
someone wrote under the same key is never served), and that version is hashed in full
and compared with the seal before its first byte is played, as a local file is; the
seal line comes from the pinned version of the manifest and is checked against the
seal the database kept. A version that passed is not hashed again for each range a
player asks (versions do not change; a storage-level change is caught at the next
process start, export or integrity check). Verify and export read the pinned versions
into a scratch folder and run exactly the checks they run on a local folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from api.errors import error
from api.replay import (
    MEDIA_TYPES,
    READ_BYTES,
    ReplayChecks,
    final_files,
    final_refs,
    plaintext_response,
)
from recorder.archive_plan import object_key, stored_object
from recorder.archiver import download, set_holds
from recorder.bucket import Bucket, BucketError, ObjectReader
from recorder.envelope import EnvelopeError
from recorder.manifest import MANIFEST_NAME
from recorder.replay_files import digest_problem, manifest_entries
from recorder.retention import visit_folder
from recorder.vault import KeyUnavailable, Vault, encrypted_file


class BucketChecks:
    """Checks replay objects against the seal, once per pinned version. Blocking."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket
        self._good: set[tuple[str, str, str, str]] = set()

    def problem(self, visit: str, record: Mapping[str, Any] | None, rel: str,
                public_pem: bytes, seal: str | None) -> str | None:
        """Why the object must not be played, as a sentence; None if it is the sealed file."""
        found, manifest = stored_object(record, rel), stored_object(record, MANIFEST_NAME)
        if found is None or manifest is None:
            return f"{rel} is not among the recording's objects in the archive bucket."
        stamp = (visit, rel, str(found["version"]), str(manifest["version"]))
        if stamp in self._good:
            return None
        try:
            data = b"".join(self._bucket.chunks(object_key(visit, MANIFEST_NAME),
                                                str(manifest["version"])))
            entries = manifest_entries(data, public_pem, seal)
            sha256, size = self._bucket.digest(object_key(visit, rel), str(found["version"]))
        except (BucketError, ValueError) as exc:
            return f"{rel} cannot be checked: {exc}."
        problem = digest_problem(rel, entries.get(Path(rel).name), sha256, size)
        if problem is None:
            self._good.add(stamp)
        return problem


class Stored:
    """The files of one recording for replay, verify and export, wherever they are."""

    def __init__(self, recordings_dir: Path, public_pem: bytes, vault: Vault,
                 bucket: Bucket | None) -> None:
        self._recordings_dir = recordings_dir
        self._public_pem = public_pem
        self._vault = vault
        self._bucket = bucket
        self._local = ReplayChecks()
        self._remote = BucketChecks(bucket) if bucket is not None else None

    def _folder(self, visit: str) -> Path:
        folder = visit_folder(self._recordings_dir, visit)
        assert folder is not None  # the caller checked the visit id
        return folder

    def finals(self, visit: str, row: dict[str, Any]) -> dict[str, tuple[str, float, int]]:
        """Participant id -> (final file inside the visit folder, offset, bytes): the
        archived objects, or the local files (``api.replay.final_files``)."""
        record = row.get("bucket")
        if record:
            return {participant: (rel, offset, int(entry["bytes"]))
                    for participant, (rel, offset) in final_refs(row).items()
                    if Path(rel).suffix in MEDIA_TYPES
                    and (entry := stored_object(record, rel)) is not None}
        base = self._folder(visit).resolve()
        return {participant: (path.relative_to(base).as_posix(), offset, path.stat().st_size)
                for participant, (path, offset) in final_files(base, row).items()}

    async def problem(self, visit: str, row: Mapping[str, Any], rel: str) -> str | None:
        """Why a final file must not be played; None if it is the sealed one."""
        if row.get("bucket"):
            if self._remote is None:
                return "the recording is archived in a bucket this server is not configured for."
            return await asyncio.to_thread(self._remote.problem, visit, row["bucket"], rel,
                                           self._public_pem, row.get("seal"))
        return await asyncio.to_thread(self._local.problem, self._folder(visit),
                                       self._folder(visit) / rel, self._public_pem,
                                       row.get("seal"))

    async def serve(self, request: web.Request, visit: str, row: Mapping[str, Any],
                    rel: str) -> web.StreamResponse:
        """The final file's plaintext, with byte ranges; decrypted on the fly."""
        headers = {"Content-Type": MEDIA_TYPES[Path(rel).suffix], "Cache-Control": "no-store"}
        record = row.get("bucket")
        path = self._folder(visit) / rel
        if not record and not await asyncio.to_thread(encrypted_file, path):
            return web.FileResponse(path, headers=headers)
        try:
            return await plaintext_response(request, lambda: self._open(visit, record, rel),
                                            headers)
        except KeyUnavailable as exc:
            return error(503, "key_unavailable", f"this recording cannot be decrypted: {exc}")
        except EnvelopeError as exc:
            return error(500, "media_damaged", f"this replay file fails its check: {exc}")
        except BucketError as exc:
            return error(502, "bucket_unavailable", f"the archive bucket failed: {exc}")

    def _open(self, visit: str, record: Mapping[str, Any] | None, rel: str) -> BinaryIO:
        entry = stored_object(record, rel)
        if entry is None or self._bucket is None:
            return self._vault.open(visit, self._folder(visit) / rel)
        raw = ObjectReader(self._bucket, object_key(visit, rel), str(entry["version"]),
                           int(entry["bytes"]))
        return self._vault.open_reader(visit, io.BufferedReader(raw, READ_BYTES))

    async def follow_hold(self, visit: str, row: Mapping[str, Any]) -> None:
        """Make an archived recording's S3 legal hold follow the index: ON while any hold
        is active, OFF once the last is released. Raises BucketError."""
        if row.get("bucket") and self._bucket is not None:
            await asyncio.to_thread(set_holds, self._bucket, visit, row["bucket"],
                                    bool(row.get("on_hold")))

    @contextlib.asynccontextmanager
    async def folder(self, visit: str, row: Mapping[str, Any]) -> AsyncIterator[Path]:
        """The visit's folder to verify or export: the local one, or the pinned versions
        read from the bucket into a scratch folder removed afterwards."""
        record = row.get("bucket")
        if not record:
            yield self._folder(visit)
            return
        if self._bucket is None:
            raise BucketError("the recording is archived in a bucket this server is not "
                              "configured for")
        with tempfile.TemporaryDirectory(prefix="visitbridge-bucket-") as scratch:
            yield await asyncio.to_thread(download, self._bucket, visit,
                                          record.get("objects") or {}, Path(scratch))
