"""Export a visit's recording as one zip that can be verified offline, without the server.

A recording handed to a court, a lawyer or an inspector leaves the prison's systems; the
receiver must be able to check it with nothing but the zip (and, ideally, the prison's
published key id). So the zip carries the evidence as written (``segments/`` plus the
signed ``manifest.jsonl``), the public key, the seal the database kept, the custody
trail, and plain instructions (``VERIFYING.txt``) that work with Visitbridge or with
standard tools only. ``media/`` holds the joined per-participant files for watching;
they are made from the segments when the visit ends, and the seal holds their SHA-256
(recorder.replay_files), so they are covered too.

The zip is written to a temporary name and renamed, so a half-written export never sits
under the final name, and an existing file is never overwritten (each export is its own
custody event).
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recorder.anchored import write_note
from recorder.export_keys import KEYS_NAME, NOTE, segment_keys
from recorder.manifest import MANIFEST_NAME, SEGMENT_NAME, SEGMENT_TYPES
from recorder.replay_files import EXPORT_DIR
from recorder.signing import key_id_of, load_public_key
from recorder.vault import Vault

PUBLIC_KEY_NAME = "recording-public-key.pem"
SEAL_NAME = "seal.txt"
CUSTODY_NAME = "custody.json"
VERIFYING_NAME = "VERIFYING.txt"
UNSEALED_TEXT = "not sealed"
# Between these two lines of VERIFYING.txt is a shell script (tests run it as is).
SCRIPT_START = "----- 8< ----- check script (bash) -----"
SCRIPT_END = "----- >8 -----"

VERIFYING_TEMPLATE = """\
Visitbridge recording export: visit {visit}
Recording key id: {key_id}

WHAT IS IN THIS FOLDER

  segments/                 The recording exactly as written during the visit: one folder
                            per track (participant and audio or video) of numbered segment
                            files of about 10 seconds (WebM; .mkv for H.264 video).
  manifest.jsonl            One line per closed segment, in the order written: its file,
                            SHA-256 and size. Each line holds the hash of the line before it
                            ("prev") and an Ed25519 signature by the server's recording key
                            ("sig" over the 64 hex characters of "hash"). The last line
                            ("seal") closes the recording.
  seal.txt                  The seal hash the server stored in its database when the visit
                            ended; it must equal the "hash" of the last manifest line.
  recording-public-key.pem  The server's public recording key. Check that its key id (above,
                            and "key_id" in every manifest line) is the one the prison
                            publishes: anyone can make a self-consistent export with their
                            own key.
  custody.json              Who exported this recording and when, and earlier replays,
                            exports and verifications.
  media/                    Each participant's joined file, for watching. Made from the
                            segments when the visit ended; its SHA-256 and size are in
                            the seal ("final_files" in its "extra").
  VERIFYING.txt             This file.

VERIFY WITH VISITBRIDGE (offline, no server needed)

    visitbridge recordings verify --dir <unzipped folder>

It checks everything below and prints "OK: complete and unaltered" or each problem found.

VERIFY BY HAND (bash, sha256sum, jq, base64, OpenSSL 3)

In the unzipped folder, run the script below. It prints one line starting with FAILED
for each problem; an intact recording prints only "...: OK" lines and "seal: OK".

{script_start}
sha256sum --version >/dev/null && jq --version >/dev/null && openssl version >/dev/null || exit 2
# 1. Each segment file has the SHA-256 the manifest lists.
jq -r 'select(.type == "segment" or .type == "recovered")
       | "\\(.sha256)  segments/\\(.file)"' manifest.jsonl | sha256sum -c -
# 2. No segment file is missing from the manifest.
jq -r 'select(.file) | "segments/\\(.file)"' manifest.jsonl | sort > listed.txt
find segments -type f | sort | comm -13 listed.txt - | sed 's/^/FAILED: not in manifest: /'
# 3. Each line: content matches "hash", "prev" is the line before's hash, "sig" is valid.
prev=0000000000000000000000000000000000000000000000000000000000000000
while IFS= read -r line; do
  printf '%s' "$line" | jq -j .hash > hash.txt
  printf '%s' "$line" | jq -r .sig | base64 -d > sig.bin
  seq=$(printf '%s' "$line" | jq -r .seq)
  printf '%s' "$line" | jq -cjS 'del(.hash, .sig)' | sha256sum | cut -c1-64 | tr -d '\\n' \\
    | cmp -s - hash.txt || echo "FAILED: seq $seq: content does not match its hash"
  [ "$(printf '%s' "$line" | jq -r .prev)" = "$prev" ] \\
    || echo "FAILED: seq $seq: does not follow the line before"
  openssl pkeyutl -verify -pubin -inkey recording-public-key.pem -rawin \\
    -in hash.txt -sigfile sig.bin >/dev/null || echo "FAILED: seq $seq: bad signature"
  prev=$(cat hash.txt)
done < manifest.jsonl
# 4. The last line is the seal, and it is the seal the server stored.
[ "$(tail -n 1 manifest.jsonl | jq -r .type)" = seal ] || echo "FAILED: not sealed"
[ "$(tail -n 1 manifest.jsonl | jq -r .hash)" = "$(cat seal.txt)" ] && echo "seal: OK" \\
  || echo "FAILED: the seal differs from seal.txt"
# 5. Each file in media/ has the SHA-256 the seal lists (decrypted, for a recording
#    encrypted at rest), and none is missing or extra.
tail -n 1 manifest.jsonl | jq -r '.extra.final_files // {{}} | to_entries[]
  | "\\(.value.plain_sha256 // .value.sha256)  media/\\(.key)"' | tee media.txt \\
  | sha256sum -c -
cut -c67- media.txt | sort > listed-media.txt
find media -type f 2>/dev/null | sort | comm -13 listed-media.txt - \\
  | sed 's/^/FAILED: not in the seal: /'
{script_end}

To check one signature alone: put the 64 hex characters of a line's "hash" in a file
without a line break (printf '%s' HASH > hash.txt), its "sig" base64-decoded in another
(printf '%s' SIG | base64 -d > sig.bin), then

    openssl pkeyutl -verify -pubin -inkey recording-public-key.pem -rawin \\
        -in hash.txt -sigfile sig.bin

which prints "Signature Verified Successfully". By hand, also check that each track's
segment numbers run 1, 2, 3, ... without gaps, in the order of the manifest lines.
"""


def verifying_text(visit: str, key_id: str) -> str:
    """The VERIFYING.txt of an export (a function so tests can read the very same text)."""
    return VERIFYING_TEMPLATE.format(visit=visit, key_id=key_id, script_start=SCRIPT_START,
                                     script_end=SCRIPT_END)


def export_visit(visit_dir: Path, public_pem: bytes, out_zip: Path,
                 custody: Sequence[Mapping[str, Any]], seal: str | None,
                 finals: Sequence[Path], anchors: Mapping[str, bytes] | None = None,
                 vault: Vault | None = None) -> Path:
    """Write the export zip for one visit and return its path.

    ``custody`` is the audit entries to include (this export, prior replays, exports and
    verifications); ``seal`` the seal hash from the database (None if there is none);
    ``finals`` the joined per-participant files for ``media/``; ``anchors`` the
    time-stamped checkpoints holding the seal (``recorder.anchored``). The zip mirrors every
    segment file on disk (listed or not), so the export shows the same problems the
    server's copy would; it does not refuse a recording that fails verification, since
    exporting it may be exactly how that failure gets examined.

    Encrypted recordings: segments go in as stored, with their data keys in
    ``segment-keys.json`` (recorder/export_keys.py says why); ``media/`` is decrypted.
    """
    vault = vault or Vault()
    visit_dir, out_zip = Path(visit_dir), Path(out_zip)
    key_id = key_id_of(load_public_key(public_pem))  # refuse a bad key before writing
    if out_zip.exists():
        raise FileExistsError(f"{out_zip} already exists; an export is never overwritten")
    names = [Path(final).name for final in finals]
    if len(set(names)) != len(names):
        raise ValueError(f"final files must have distinct names: {names}")
    manifest = visit_dir / MANIFEST_NAME
    partial = out_zip.with_name(out_zip.name + ".partial")
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(partial, "w", allowZip64=True) as archive:
            text = zipfile.ZIP_DEFLATED
            for final in finals:  # media is already compressed: store it
                with vault.open(visit_dir.name, Path(final)) as src, archive.open(
                        zipfile.ZipInfo(f"{EXPORT_DIR}/{Path(final).name}"), "w",
                        force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            segments = segment_files(visit_dir)
            for rel in segments:
                archive.write(visit_dir / rel, f"segments/{rel}", zipfile.ZIP_STORED)
            keys = segment_keys(visit_dir, segments, vault)
            if keys is not None:
                archive.writestr(KEYS_NAME, json.dumps(keys, indent=2) + "\n", text)
            if manifest.is_file():
                archive.write(manifest, MANIFEST_NAME, text)
            archive.writestr(SEAL_NAME, f"{seal if seal else UNSEALED_TEXT}\n", text)
            archive.writestr(PUBLIC_KEY_NAME, public_pem, text)
            archive.writestr(CUSTODY_NAME, json.dumps(list(custody), indent=2,
                                                      ensure_ascii=False) + "\n", text)
            for name, data in (anchors or {}).items():
                archive.writestr(name, data, text)
            archive.writestr(VERIFYING_NAME, verifying_text(visit_dir.name, key_id)
                             + (NOTE if keys is not None else "")
                             + write_note(anchors or {}, visit_dir.name), text)
        with open(partial, "rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, out_zip)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out_zip


def segment_files(visit_dir: Path) -> list[str]:
    """Relative posix paths of the segment files on disk, the same set that verification
    treats as segments: everything in a track folder named by the manifest, and any
    segment-N.webm|mkv inside a subfolder."""
    tracks: set[str] = set()
    manifest = visit_dir / MANIFEST_NAME
    if manifest.is_file():
        for raw in manifest.read_bytes().splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("type") in SEGMENT_TYPES \
                    and isinstance(entry.get("track"), str):
                tracks.add(entry["track"])
    found = []
    for dirpath, dirnames, filenames in os.walk(visit_dir):
        dirnames.sort()
        here = Path(dirpath).relative_to(visit_dir)
        if here == Path("."):
            continue
        for name in sorted(filenames):
            if here.parts[0] in tracks or SEGMENT_NAME.fullmatch(name):
                found.append((here / name).as_posix())
    return found
