"""The time-stamped checkpoints an export carries, and how to check them by hand.

A seal signed by the server's own key proves little against someone who holds that
key; the checkpoint holding the seal, time-stamped by an outside authority, proves the
seal existed at the authority's time. The export carries each such checkpoint as its
exact bytes, with the token and (when configured) the authority's root certificate.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from records.anchoring import CheckpointStore
from records.dialect import Connection

FOLDER = "anchors"
CA_NAME = f"{FOLDER}/tsa-ca.pem"

VERIFYING_SECTION = """
TIME-STAMPED CHECKPOINTS (anchors/)

  anchors/checkpoint-N.json  A checkpoint: the audit log's head and the seals of the
                             recordings sealed since the checkpoint before, as exact bytes
                             (no line break at the end). "seals" holds this visit's seal.
  anchors/checkpoint-N.tsr   An RFC 3161 time-stamp token over those bytes from the
                             time-stamp authority the prison uses.
  anchors/checkpoint-N.sig   The server's Ed25519 signature over the SHA-256 hex of the
                             checkpoint (base64), made with the recording key.
  anchors/tsa-ca.pem         The authority's root certificate as the server was
                             configured. Check it against the one the authority publishes.

Check a token (prints "Verification: OK"), its time, and that the checkpoint holds the
seal in seal.txt:

    openssl ts -verify -data anchors/checkpoint-N.json -in anchors/checkpoint-N.tsr \\
        -CAfile anchors/tsa-ca.pem
    openssl ts -reply -in anchors/checkpoint-N.tsr -text | grep 'Time stamp'
    jq -r '.seals["{visit}"]' anchors/checkpoint-N.json    # equals seal.txt

and its signature (the scratch files go outside the folder, which must hold only the
files export-files.json lists):

    printf '%s' "$(sha256sum < anchors/checkpoint-N.json | cut -c1-64)" > /tmp/cp-hash.txt
    base64 -d anchors/checkpoint-N.sig > /tmp/cp-sig.bin
    openssl pkeyutl -verify -pubin -inkey recording-public-key.pem -rawin \\
        -in /tmp/cp-hash.txt -sigfile /tmp/cp-sig.bin
"""


def verifying_section(visit: str) -> str:
    return VERIFYING_SECTION.replace("{visit}", visit)


def visit_anchors(db: Connection, visit: str,
                  ca_file: Path | None) -> dict[str, bytes]:
    """The files under ``anchors/`` for one visit's export (empty when none)."""
    files: dict[str, bytes] = {}
    for row in CheckpointStore(db).rows(visit):
        stem = f"{FOLDER}/checkpoint-{row['n']}"
        files[f"{stem}.json"] = row["data"]
        files[f"{stem}.tsr"] = row["token"]
        files[f"{stem}.sig"] = row["sig"].encode("ascii")
    if files and ca_file is not None and ca_file.is_file():
        files[CA_NAME] = ca_file.read_bytes()
    return files


def write_note(anchors: Mapping[str, bytes], visit: str) -> str:
    """What VERIFYING.txt adds for the anchors it carries ("" when none)."""
    return verifying_section(visit) if anchors else ""
