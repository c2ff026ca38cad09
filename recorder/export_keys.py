"""The data keys an export of an encrypted recording carries, and their use offline.

An export ships the segments exactly as stored (ciphertext), because their hashes are
what the manifest signs: every check of an export works on them unchanged. To make the
recording usable by whoever receives it, ``segment-keys.json`` holds each encrypted
file's data key in the clear. Those keys open this one recording and nothing else; the
key-encryption key never leaves the server. AES-GCM authenticates every chunk, so media
decrypted with these keys is the media whose ciphertext the manifest signed.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recorder.keystore import KeyUnavailable
from recorder.vault import Vault

KEYS_NAME = "segment-keys.json"
NOTE = """
ENCRYPTED SEGMENTS

  The segment files are stored encrypted (AES-256-GCM in authenticated chunks), as
  they were written on the server; the checks above verify them as they are.
  segment-keys.json holds the data key of each segment file (these keys open this
  recording only). To get playable segments:

    python -m recorder.export_keys --dir <unzipped folder> --out <new folder>
"""


def segment_keys(visit_dir: Path, files: Sequence[str], vault: Vault) -> dict[str, Any] | None:
    """``{"files": {relative path: {"file_id", "key"}}}`` of the encrypted files among
    ``files``; None if none is encrypted."""
    found = {}
    for rel in files:
        known = vault.file_key(visit_dir.name, visit_dir / rel)
        if known is not None:
            found[rel] = {"file_id": known[0], "key": base64.b64encode(known[1]).decode()}
    return {"cipher": "AES-256-GCM chunks (recorder/envelope.py)", "files": found} \
        if found else None


def decrypt_export(root: Path, out: Path) -> list[Path]:
    """Write the plaintext of every segment of an unzipped export into ``out``."""
    keys = json.loads((root / KEYS_NAME).read_text())["files"]
    by_id = {entry["file_id"]: base64.b64decode(entry["key"]) for entry in keys.values()}

    def lookup(_visit: str, file_id: str) -> bytes:
        if file_id not in by_id:
            raise KeyUnavailable(f"{KEYS_NAME} has no key for file {file_id}")
        return by_id[file_id]

    vault, written = Vault(lookup=lookup), []
    for path in sorted((root / "segments").rglob("segment-*")):
        target = out / path.relative_to(root / "segments")
        target.parent.mkdir(parents=True, exist_ok=True)
        with vault.open("", path) as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="decrypt the segments of an export")
    parser.add_argument("--dir", type=Path, required=True, help="the unzipped export")
    parser.add_argument("--out", type=Path, required=True, help="a new folder")
    args = parser.parse_args(argv)
    files = decrypt_export(args.dir, args.out)
    print(f"{len(files)} segment file(s) decrypted into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
