"""The signed list of every file in an export, so that no byte of it goes unchecked.

The manifest signs the segments and the seal signs the replay files, but an export also
carries files the recording never saw: the custody trail, the seal the database kept,
these instructions, the data keys, the time-stamped checkpoints. ``export-files.json``
names every other file of the export with its SHA-256 and size, and ``export-files.sig``
is the recording key's Ed25519 signature over its exact bytes (base64), so a changed,
added or removed file fails the check. Like the manifest's signatures, this one proves
only which key made it: the verifier must compare the public key with one obtained out
of band, because anyone can re-sign an altered export with a key of their own.

Pure: building the list and judging an export against it; reading files is the
caller's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from recorder.signing import verify_signature

FILES_NAME = "export-files.json"
SIGNATURE_NAME = "export-files.sig"
FORMAT = "visitbridge-export-files/1"
UNLISTED = frozenset({FILES_NAME, SIGNATURE_NAME})


@dataclass(frozen=True)
class Listed:
    """One file of an export: its path inside the export (posix), SHA-256 hex, size."""

    name: str
    sha256: str
    bytes: int


def listing(visit: str, key_id: str, files: Iterable[Listed]) -> bytes:
    """The bytes of ``export-files.json`` for ``files``, sorted by name."""
    entries = sorted(files, key=lambda f: f.name)
    names = [f.name for f in entries]
    if len(set(names)) != len(names) or UNLISTED & set(names):
        raise ValueError(f"an export cannot list these names: {names}")
    document = {"format": FORMAT, "visit": visit, "key_id": key_id,
                "files": [asdict(f) for f in entries]}
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def listing_problems(data: bytes | None, signature: str | None,
                     keys: Mapping[str, ed25519.Ed25519PublicKey],
                     found: Mapping[str, tuple[str, int]]) -> list[str]:
    """Every way the export's files differ from the signed list, as sentences.

    ``data`` and ``signature`` are the contents of the two files (None when missing),
    ``keys`` the public keys the signature must verify with, each by how to name it,
    and ``found`` every file of the export but those two: name -> (SHA-256, size).
    """
    if data is None:
        return [f"{FILES_NAME} is missing: nothing shows that the other files of the export "
                "(custody.json, seal.txt, VERIFYING.txt, ...) are the ones exported."]
    problems = []
    if signature is None:
        problems.append(f"{SIGNATURE_NAME} is missing: nothing shows who made {FILES_NAME}.")
    else:
        problems += [f"{SIGNATURE_NAME} is not a valid signature of {FILES_NAME} by {name}: "
                     "the list of files was altered, or signed with another key."
                     for name, key in keys.items()
                     if not verify_signature(key, data, signature.strip())]
    listed = _parse(data)
    if listed is None:
        return problems + [f"{FILES_NAME} cannot be read as a list of files."]
    for name, (sha256, size) in sorted(listed.items()):
        if name not in found:
            problems.append(f"{name} is listed in {FILES_NAME} but missing from the export.")
        elif found[name] != (sha256, size):
            problems.append(f"{name} was altered after the export was made: its SHA-256 or "
                            f"size differs from {FILES_NAME}.")
    problems += [f"{name} is not in {FILES_NAME}: it was added after the export was made."
                 for name in sorted(set(found) - set(listed))]
    return problems


def _parse(data: bytes) -> dict[str, tuple[str, int]] | None:
    """name -> (SHA-256, size) of a well-formed list; None otherwise."""
    try:
        document: Any = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("format") != FORMAT \
            or not isinstance(document.get("files"), list):
        return None
    listed: dict[str, tuple[str, int]] = {}
    for entry in document["files"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)) or entry["name"] in listed:
            return None
        listed[entry["name"]] = (entry["sha256"], entry["bytes"])
    return listed
