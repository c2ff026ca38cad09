"""The append-only, hash-chained, signed manifest of one visit's recording.

Chain of custody: a prison must be able to prove that a recording is complete and
unaltered. Every closed segment gets one line in ``<visit dir>/manifest.jsonl`` with its
SHA-256 and size; each line carries the hash of the line before it (``prev``) and is
signed with the server's recording key, so editing, removing, reordering or inserting a
line, or changing a segment file, shows up in ``recorder.verify``. The last line, the
``seal``, states how many segments and which tracks the recording has; its hash is also
stored in the database, so that cutting the chain short and re-sealing it is caught even
by someone holding the key as long as the database copy is intact.

A line is the canonical JSON (sorted keys, no spaces, UTF-8) of::

    {"seq": n, "type": "segment"|"recovered"|"policy"|"seal", "at": unix seconds (int),
     "prev": hash of line n-1 or 64 zeros, "key_id": ..., "hash": ..., "sig": ...}

plus, for segment and recovered lines, ``track``, ``file`` (posix path relative to the
visit folder, ``<track>/segment-NNNNN.webm|mkv``), ``sha256``, ``bytes``, ``first_pts``,
``last_pts``, ``time_base`` ("1/90000") and ``note`` when one is given; for policy lines
``detail``; for the seal ``segments``, ``tracks``, ``last`` and ``extra``. ``hash`` is
the SHA-256 hex of the canonical JSON of every field except ``hash`` and ``sig``, and
``sig`` is the base64 Ed25519 signature of the 64 ASCII characters of ``hash``. The
canonical form is chosen so that ``jq -cS 'del(.hash, .sig)'`` reproduces the hashed
text byte for byte (hand checks, see recorder/export.py); ``at`` is whole seconds.

Each line is written with one ``write`` to a file opened in append mode and then
``flush`` + ``fsync``: after a crash the manifest holds every segment that was reported
closed. Appends do blocking file I/O (hash a ~1.5 MB segment, fsync): call them from a
worker thread (``asyncio.to_thread``) when on an event loop; a lock keeps concurrent
appends from forking the chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from recorder.signing import RecordingKey, fsync_dir, verify_signature
from records.chain import GENESIS, Chain

MANIFEST_NAME = "manifest.jsonl"
CHUNK_BYTES = 1 << 20
ENTRY_TYPES = ("segment", "recovered", "policy", "seal")
SEGMENT_TYPES = ("segment", "recovered")
SEGMENT_NAME = re.compile(r"segment-(\d+)\.(webm|mkv)")
# Lines are written in the canonical form their hash is computed over, the one
# ``jq -cS`` prints (see records.chain), so hand checks need nothing but jq.
CHAIN = Chain(prev="prev", unhashed=("hash", "sig"), jq=True)
canonical = CHAIN.canonical
entry_hash = CHAIN.entry_hash


class ManifestError(Exception):
    """The manifest cannot be continued (sealed, damaged, other key, earlier write failed)."""


class Fenced(ManifestError):
    """Another writer holds the recording under a newer lease epoch: this one lost the
    visit (not a failure of the recording, which goes on under its new holder)."""


def signed_bytes(hash_hex: str) -> bytes:
    """What the signature covers: the hash's hex text, so hand checks need no hex decoding."""
    return hash_hex.encode("ascii")


class Hasher(Protocol):
    """What ``hashlib.sha256()`` returns (its class has no public name)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def file_digest(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file read in 1 MiB chunks; the size is what was hashed,
    not a separate stat that could disagree with it."""
    with open(path, "rb") as file:
        return stream_digest(file)


def stream_digest(stream: BinaryIO) -> tuple[str, int]:
    """(SHA-256 hex, size) of what a stream gives until its end."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def segment_number(name: str) -> int | None:
    """The N of ``segment-N.webm``/``.mkv``; None for any other file name."""
    match = SEGMENT_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


class Manifest:
    """Writes one visit's manifest; use :meth:`open`, then append, then :meth:`seal`."""

    def __init__(self, visit_dir: Path, key: RecordingKey, clock: Callable[[], float],
                 file: BinaryIO, entries: list[dict[str, Any]]) -> None:
        self.visit_dir = visit_dir
        self.path = visit_dir / MANIFEST_NAME
        self._key = key
        self._clock = clock
        self._file: BinaryIO | None = file
        self._lock = threading.Lock()
        self._failed: BaseException | None = None
        self.seq = 0
        self.last_hash = GENESIS
        self.segments = 0
        self.sealed = False
        self.media_end_s = 0.0  # latest end of recorded media, in seconds of the timeline
        self.epoch: int | None = None  # the lease epoch this writer holds, when fenced
        self.placed_epoch = 0  # the newest lease epoch any writer signed into the chain
        # where this writer's last line ended: anything after it is another writer's
        self._end = os.fstat(file.fileno()).st_size
        self._last_number: dict[str, int] = {}
        self._files: set[str] = set()
        for entry in entries:
            self._account(entry)

    @classmethod
    def open(cls, visit_dir: Path, key: RecordingKey, clock: Callable[[], float],
             served_by: Mapping[str, Any] | None = None) -> Manifest:
        """Open (creating if needed) ``<visit_dir>/manifest.jsonl`` for appending.

        An existing manifest is read and checked first (each line parses, seq, prev, hash,
        signature by this key) so that a restarted recorder continues the chain instead of
        forking it. Refuses (ManifestError) a sealed manifest, one signed by another key
        and one with a damaged or incomplete line: appending to those would produce a
        manifest that can never verify, and repairing one would destroy evidence.

        ``served_by`` (the node and lease epoch this recorder holds the visit under, when
        nodes share the recordings volume) is appended at once as a policy line, and fences
        the manifest: opening under an epoch older than one already in it is refused, and
        so is every later append of this writer once a writer with a newer epoch appended
        (appends take an exclusive ``flock`` and check that nobody wrote in between).
        """
        visit_dir = Path(visit_dir)
        visit_dir.mkdir(parents=True, exist_ok=True)
        path = visit_dir / MANIFEST_NAME
        created = not path.exists()
        file = open(path, "ab")  # held open for the visit; close() or seal() closes it
        try:
            with _exclusive(file):
                entries = _read_for_append(path, key)
                if entries and entries[-1]["type"] == "seal":
                    raise ManifestError(f"{path} is already sealed (seq {entries[-1]['seq']}); "
                                        "a sealed recording cannot be continued")
                if created:
                    fsync_dir(visit_dir)
                manifest = cls(visit_dir, key, clock, file, entries)
                if served_by is not None:
                    manifest.claim(served_by)
        except BaseException:
            file.close()
            raise
        return manifest

    def claim(self, served_by: Mapping[str, Any]) -> None:
        """Sign the node and lease epoch this writer holds the visit under into the chain,
        under the caller's ``flock``; refused if a newer epoch is already in it."""
        self.epoch = int(served_by["epoch"])
        if self.placed_epoch > self.epoch:
            raise Fenced(self._fenced(self.placed_epoch))
        self._append({"type": "policy", "detail": {"served_by": dict(served_by)}}, locked=True)

    @property
    def tracks(self) -> list[str]:
        """Tracks with at least one segment so far, sorted."""
        return sorted(self._last_number)

    def append_segment(self, info: Mapping[str, Any], recovered: bool = False,
                       note: str = "") -> dict[str, Any]:
        """Hash a closed segment file and append its line; returns the entry written.

        ``info`` holds ``track``, ``path``, ``time_base``, ``first_pts`` and ``last_pts``
        (ints or None), and optionally ``sha256`` and ``bytes``.
        ``sha256`` with ``bytes``, when the writer hashed the file as it wrote it, spare
        reading it again (its size is checked). ``recovered=True`` marks a segment
        salvaged after a crash (type ``recovered``), with
        ``note`` saying how. ``path`` is absolute or relative to the visit folder and must
        be ``<visit dir>/<track>/segment-NNNNN.webm|mkv``. A number not above the track's
        last one raises ValueError: it would mean a segment file was overwritten or
        reported twice. A gap is written as is (the manifest records what happened) and
        reported by verification.
        """
        track = str(info["track"])
        relative = self._relative(Path(info["path"]))
        parts = relative.split("/")
        number = segment_number(parts[-1])
        if len(parts) != 2 or parts[0] != track or number is None:
            raise ValueError(f"segment {relative!r} is not <track>/segment-NNNNN.webm|mkv "
                             f"for track {track!r}")
        first_pts, last_pts = info.get("first_pts"), info.get("last_pts")
        for name, value in (("first_pts", first_pts), ("last_pts", last_pts)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{name} must be an int or None, not {value!r}")
        sha256, size = info.get("sha256"), info.get("bytes")
        if sha256 is None:
            sha256, size = file_digest(self.visit_dir / relative)  # outside the lock: slow
        elif (self.visit_dir / relative).stat().st_size != size:
            raise ValueError(f"{relative} is not the {size} bytes that were hashed")
        fields: dict[str, Any] = {
            "type": "recovered" if recovered else "segment",
            "track": track,
            "file": relative,
            "sha256": sha256,
            "bytes": size,
            "first_pts": first_pts,
            "last_pts": last_pts,
            "time_base": str(info["time_base"]),
        }
        if note:
            fields["note"] = str(note)
        with self._lock:
            if relative in self._files:
                raise ValueError(f"{relative} is already in the manifest")
            last = self._last_number.get(track, 0)
            if number <= last:
                raise ValueError(f"{relative}: segment {number} of track {track!r} comes after "
                                 f"segment {last}; segments must be appended in order")
            return self._append(fields)

    def append_policy(self, detail: Mapping[str, Any]) -> dict[str, Any]:
        """Record a fact about the recording itself (for example that media was held until
        every recorder confirmed, or a retention rule), chained and signed like a segment."""
        with self._lock:
            return self._append({"type": "policy", "detail": dict(detail)})

    def seal(self, extra: Mapping[str, Any] | None = None) -> str:
        """Append the final ``seal`` line and close the file; returns the seal hash, which
        the caller stores in the database (the copy a key holder cannot quietly redo)."""
        with self._lock:
            entry = self._append({
                "type": "seal",
                "segments": self.segments,
                "tracks": self.tracks,
                "last": self.last_hash,
                "extra": dict(extra or {}),
            })
            self._close()
            return str(entry["hash"])

    def close(self) -> None:
        """Close without sealing (recorder stopping; a restart may continue the chain)."""
        with self._lock:
            self._close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _append(self, fields: dict[str, Any], locked: bool = False) -> dict[str, Any]:
        if isinstance(self._failed, Fenced):
            raise self._failed
        if self._failed is not None:
            raise ManifestError(f"{self.path}: an earlier write failed ({self._failed}); "
                                "the manifest must be checked before it is continued")
        if self.sealed or self._file is None:
            raise ManifestError(f"{self.path} is {'sealed' if self.sealed else 'closed'}")
        entry: dict[str, Any] = {
            "seq": self.seq + 1,
            "at": int(self._clock()),
            **fields,
            "prev": self.last_hash,
            "key_id": self._key.key_id,
        }
        entry["hash"] = entry_hash(entry)
        entry["sig"] = self._key.sign(signed_bytes(entry["hash"]))
        line = canonical(entry) + b"\n"
        file = self._file
        with contextlib.nullcontext() if locked else _exclusive(file):
            start = os.fstat(file.fileno()).st_size
            if start != self._end:  # another writer continued the chain: ours is stale
                self._failed = Fenced(self._fenced(self._newest_epoch_after()))
                raise self._failed
            try:
                file.write(line)
                file.flush()
                os.fsync(file.fileno())
            except BaseException as exc:
                # Take back a partial line so the file stays a valid chain for a restart.
                self._failed = exc
                try:
                    os.ftruncate(file.fileno(), start)
                except OSError:
                    pass
                raise
            self._end = start + len(line)
        self._account(entry)
        return entry

    def _newest_epoch_after(self) -> int:
        """The newest lease epoch in the lines another writer appended after ours."""
        with open(self.path, "rb") as file:
            file.seek(self._end)
            tail = file.read()
        newest = 0
        for raw in tail.splitlines():
            with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
                newest = max(newest, int(json.loads(raw)["detail"]["served_by"]["epoch"]))
        return newest

    def _fenced(self, newest: int) -> str:
        by = f"under lease epoch {newest}" if newest else "by another writer"
        return (f"{self.path} is continued {by}; this writer (lease epoch {self.epoch}) "
                "is fenced off")

    def _account(self, entry: Mapping[str, Any]) -> None:
        self.seq = int(entry["seq"])
        self.last_hash = str(entry["hash"])
        if entry["type"] in SEGMENT_TYPES:
            self.segments += 1
            self._files.add(entry["file"])
            number = segment_number(entry["file"].rsplit("/", 1)[-1]) or 0
            self._last_number[entry["track"]] = max(self._last_number.get(entry["track"], 0),
                                                    number)
            if isinstance(entry.get("last_pts"), int):
                rate = Fraction(str(entry["time_base"]))
                self.media_end_s = max(self.media_end_s, float(entry["last_pts"] * rate))
        elif entry["type"] == "seal":
            self.sealed = True
        served = entry.get("detail", {}).get("served_by") if entry["type"] == "policy" else None
        if isinstance(served, dict) and isinstance(served.get("epoch"), int):
            self.placed_epoch = max(self.placed_epoch, served["epoch"])

    def _relative(self, path: Path) -> str:
        if not path.is_absolute() and (self.visit_dir / path).is_file():
            path = self.visit_dir / path
        try:
            return path.resolve().relative_to(self.visit_dir.resolve()).as_posix()
        except ValueError:
            raise ValueError(f"segment {path} is not inside {self.visit_dir}") from None

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@contextlib.contextmanager
def _exclusive(file: BinaryIO) -> Iterator[None]:
    """Hold the manifest's ``flock``: nodes sharing the volume append one at a time."""
    fcntl.flock(file.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(file.fileno(), fcntl.LOCK_UN)


def _read_for_append(path: Path, key: RecordingKey) -> list[dict[str, Any]]:
    """The entries of an existing manifest, refusing anything verification would reject."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        raise ManifestError(f"{path} ends in an incomplete line (a crash while writing?); "
                            "it must be checked with recorder.verify before recording resumes")
    entries: list[dict[str, Any]] = []
    prev = GENESIS
    public = key.public_key
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            entry = json.loads(raw)
        except ValueError:
            raise ManifestError(f"{path} line {number} is not valid JSON") from None
        if not isinstance(entry, dict) or entry.get("type") not in ENTRY_TYPES:
            raise ManifestError(f"{path} line {number} is not a manifest entry")
        if entry.get("seq") != number:
            raise ManifestError(f"{path} line {number} has seq {entry.get('seq')!r}")
        if entry.get("key_id") != key.key_id:
            raise ManifestError(f"{path} seq {number} was signed with key "
                                f"{entry.get('key_id')!r}, not the recording key {key.key_id}; "
                                "continuing would mix keys in one manifest")
        link = CHAIN.check(entry, prev)
        if not (link.follows and link.intact) or not verify_signature(
                public, signed_bytes(entry["hash"]), entry.get("sig")):
            raise ManifestError(f"{path} seq {number} fails its chain, hash or signature check")
        if entries and entries[-1]["type"] == "seal":
            raise ManifestError(f"{path} has entries after its seal")
        prev = entry["hash"]
        entries.append(entry)
    return entries
