"""The joined replay files under the seal, so that what a person watches is covered too.

The compliance console plays, and an export ships in ``media/``, each participant's
joined file from ``final/`` rather than the segments: one file per party with a cue
index, so seeking is instant. Joining happens before the seal, so each file's SHA-256
and size go into the seal (``extra.final_files``, keyed by file name); the recording key
signs that and the database pins the seal's hash. Any change to a replay file after the
visit then fails ``recorder.verify``, and the console refuses to play or export it.
Making replay read the segments instead would mean joining them again on every play
and every seek, in the request path, for the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from recorder.checks import Problems
from recorder.manifest import CHAIN, MANIFEST_NAME, file_digest, signed_bytes, stream_digest
from recorder.signing import load_public_key, verify_signature

FINALS_KEY = "final_files"
FINAL_DIR = "final"  # on the server, beside the segments
EXPORT_DIR = "media"  # in an export
# A plain file name: never a path the seal made up (../../etc/passwd).
NAME = re.compile(r"[^./\\\x00][^/\\\x00]*\.(webm|mkv)")
SHA256 = re.compile(r"[0-9a-f]{64}")


def seal_entries(paths: Iterable[Path],
                 plaintext: Callable[[Path], BinaryIO | None] = lambda path: None
                 ) -> dict[str, dict[str, Any]]:
    """What the seal says of each replay file: ``{name: {"sha256", "bytes"}}`` of the
    file as stored and, for one encrypted at rest (``plaintext`` opens it decrypted, or
    gives None for a plain file), ``plain_sha256`` and ``plain_bytes`` of what a person
    watches: an export ships that, decrypted, in ``media/``."""
    entries = {}
    for path in paths:
        sha256, size = file_digest(path)
        entry: dict[str, Any] = {"sha256": sha256, "bytes": size}
        stream = plaintext(Path(path))
        if stream is not None:
            with stream:
                entry["plain_sha256"], entry["plain_bytes"] = stream_digest(stream)
        entries[Path(path).name] = entry
    return entries


def listed(seal: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The replay files a seal covers, or None for a seal that covers none (written by a
    version that did not cover them, or malformed: either way nothing is vouched for)."""
    extra = seal.get("extra")
    entries = extra.get(FINALS_KEY) if isinstance(extra, dict) else None
    if not isinstance(entries, dict):
        return None
    return {name: entry for name, entry in entries.items() if NAME.fullmatch(name)
            and isinstance(entry, dict) and SHA256.fullmatch(str(entry.get("sha256")))
            and isinstance(entry.get("bytes"), int)
            and ("plain_sha256" not in entry or (
                SHA256.fullmatch(str(entry["plain_sha256"]))
                and isinstance(entry.get("plain_bytes"), int)))}


def file_problem(path: Path, label: str, entry: Mapping[str, Any] | None,
                 decrypted: bool = False) -> str | None:
    """Why the replay file at ``path`` is not the one sealed (``entry``), or None.
    ``decrypted``: the file is an export's decrypted copy of one encrypted at rest."""
    if entry is None:
        return digest_problem(label, entry, "", 0)
    try:
        sha256, size = file_digest(path)
    except FileNotFoundError:
        return f"{label} is missing."
    except OSError as exc:
        return f"{label} cannot be read: {exc.strerror}."
    return digest_problem(label, entry, sha256, size, decrypted)


def digest_problem(label: str, entry: Mapping[str, Any] | None, sha256: str, size: int,
                   decrypted: bool = False) -> str | None:
    """Why a replay file with this SHA-256 and size is not the one sealed, or None: the
    one test for a file on disk and for an object read back from the archive bucket."""
    if entry is None:
        return (f"{label} is not covered by the seal: it was added or replaced after the "
                "visit.")
    prefix = "plain_" if decrypted and "plain_sha256" in entry else ""
    if size != entry[prefix + "bytes"]:
        return (f"{label} has {size} bytes but the seal says {entry[prefix + 'bytes']}: the "
                "replay file was altered after the visit.")
    if sha256 != entry[prefix + "sha256"]:
        return (f"{label} was altered after the visit: its SHA-256 differs from the one in "
                "the seal.")
    return None


def check_folder(seal: Mapping[str, Any], folder: Path, shown: str,
                 problems: Problems) -> None:
    """Every replay file in ``folder`` (``shown`` is how to name it: ``final`` or
    ``media``) is one the seal lists, with its SHA-256 and size, and none listed is
    missing."""
    entries = listed(seal) or {}
    present = sorted(p.name for p in folder.iterdir() if p.is_file()) \
        if folder.is_dir() else []
    for name in sorted(set(entries) | set(present)):
        problem = file_problem(folder / name, f"{shown}/{name}", entries.get(name),
                               decrypted=shown == EXPORT_DIR)
        if problem is not None:
            problems.add("replay", problem, "replay files")


def sealed_entries(visit_dir: Path, public_pem: bytes,
                   expected_seal: str | None) -> dict[str, dict[str, Any]]:
    """The replay files of a sealed recording, read from its seal line after checking
    that line alone: its content matches its hash, the signature is the recording key's,
    and the hash is the seal the database kept. Raises ValueError saying what is wrong.
    (The whole manifest is ``recorder.verify``'s business; the seal line vouches for the
    replay files on its own.)"""
    try:
        data = (visit_dir / MANIFEST_NAME).read_bytes()
    except OSError as exc:
        raise ValueError(f"the manifest cannot be read ({exc})") from None
    return manifest_entries(data, public_pem, expected_seal)


def manifest_entries(data: bytes, public_pem: bytes,
                     expected_seal: str | None) -> dict[str, dict[str, Any]]:
    """``sealed_entries`` of a manifest's bytes (read from disk or from the bucket)."""
    try:
        lines = data.splitlines()
        seal = json.loads(lines[-1]) if lines else None
    except ValueError as exc:
        raise ValueError(f"the manifest cannot be read ({exc})") from None
    if not isinstance(seal, dict) or seal.get("type") != "seal":
        raise ValueError("the recording is not sealed")
    stored = seal.get("hash")
    if not isinstance(stored, str) or CHAIN.entry_hash(seal) != stored:
        raise ValueError("the seal line was altered")
    if expected_seal is None or stored != expected_seal:
        raise ValueError("the seal is not the one stored when the visit ended")
    if not verify_signature(load_public_key(public_pem), signed_bytes(stored),
                            seal.get("sig")):
        raise ValueError("the seal is not signed by the recording key")
    entries = listed(seal)
    if entries is None:
        raise ValueError("the seal does not cover the replay files")
    return entries
