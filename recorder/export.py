"""Export a visit's recording as one zip that can be verified offline, without the server.

A recording handed to a court, a lawyer or an inspector leaves the prison's systems; the
receiver must be able to check it with nothing but the zip (and, ideally, the prison's
published key id). So the zip carries the evidence as written (``segments/`` plus the
signed ``manifest.jsonl``), the public key, the seal the database kept, the custody
trail, and plain instructions (``VERIFYING.txt``) that work with Visitbridge or with
standard tools only. ``export-files.json`` lists every other file with its SHA-256, signed
with the recording key (recorder.export_files), so that no file goes unchecked.
``media/`` holds the joined per-participant files for watching; they are made from the
segments when the visit ends, and the seal holds their SHA-256 (recorder.replay_files),
so they are covered by the manifest's key too.

The zip is written to a temporary name and renamed, so a half-written export never sits
under the final name, and an existing file is never overwritten (each export is its own
custody event).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from recorder.anchored import write_note
from recorder.export_files import FILES_NAME, SIGNATURE_NAME, Listed, listing
from recorder.export_keys import KEYS_NAME, NOTE, segment_keys
from recorder.manifest import MANIFEST_NAME, SEGMENT_NAME, SEGMENT_TYPES
from recorder.replay_files import EXPORT_DIR
from recorder.signing import RecordingKey
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
  export-files.json         Every other file of this folder with its SHA-256 and size, as
                            the export was made: a file changed, added or removed since then
                            fails the check, whichever file it is.
  export-files.sig          The Ed25519 signature of export-files.json by the recording key
                            (base64).

Every signature here proves only which key made it: compare recording-public-key.pem
with the public key the prison gives you out of band (or its key id, above), and give
that key to the check (--public-key); anyone can re-sign an altered export with a key of
their own. The script below trusts recording-public-key.pem; compare it by hand with

    diff <(openssl pkey -pubin -in recording-public-key.pem -outform DER | sha256sum) \\
         <(openssl pkey -pubin -in PRISON-KEY.pem -outform DER | sha256sum) && echo same

VERIFY WITH VISITBRIDGE (offline, no server needed)

    visitbridge recordings verify --dir <unzipped folder> --public-key PRISON-KEY.pem

It checks everything below and prints "OK: complete and unaltered" or each problem found.

VERIFY BY HAND (bash, sha256sum, jq, base64, OpenSSL 3)

In the unzipped folder, run the script below (it writes its scratch files elsewhere,
in a new temporary folder). It prints one line starting with FAILED for each problem; an
intact recording prints only "...: OK" lines, "export-files: OK" and "seal: OK".

{script_start}
sha256sum --version >/dev/null && jq --version >/dev/null && openssl version >/dev/null || exit 2
t=$(mktemp -d) && trap 'rm -r "$t"' EXIT || exit 2
# 0. export-files.json is signed by the recording key, each file it lists has its SHA-256,
#    and no file is missing from it.
base64 -d export-files.sig > "$t/files.sig" && openssl pkeyutl -verify -pubin \\
  -inkey recording-public-key.pem -rawin -in export-files.json -sigfile "$t/files.sig" \\
  >/dev/null && echo "export-files: OK" || echo "FAILED: export-files.sig: bad signature"
jq -r '.files[] | "\\(.sha256)  \\(.name)"' export-files.json | sha256sum -c -
jq -r '.files[].name' export-files.json | sort > "$t/listed-files.txt"
find . -type f ! -path ./export-files.json ! -path ./export-files.sig | cut -c3- | sort \\
  | comm -13 "$t/listed-files.txt" - | sed 's/^/FAILED: not in export-files.json: /'
# 1. Each segment file has the SHA-256 the manifest lists.
jq -r 'select(.type == "segment" or .type == "recovered")
       | "\\(.sha256)  segments/\\(.file)"' manifest.jsonl | sha256sum -c -
# 2. No segment file is missing from the manifest.
jq -r 'select(.file) | "segments/\\(.file)"' manifest.jsonl | sort > "$t/listed.txt"
find segments -type f | sort | comm -13 "$t/listed.txt" - | sed 's/^/FAILED: not in manifest: /'
# 3. Each line: content matches "hash", "prev" is the line before's hash, "sig" is valid.
prev=0000000000000000000000000000000000000000000000000000000000000000
while IFS= read -r line; do
  printf '%s' "$line" | jq -j .hash > "$t/hash.txt"
  printf '%s' "$line" | jq -r .sig | base64 -d > "$t/sig.bin"
  seq=$(printf '%s' "$line" | jq -r .seq)
  printf '%s' "$line" | jq -cjS 'del(.hash, .sig)' | sha256sum | cut -c1-64 | tr -d '\\n' \\
    | cmp -s - "$t/hash.txt" || echo "FAILED: seq $seq: content does not match its hash"
  [ "$(printf '%s' "$line" | jq -r .prev)" = "$prev" ] \\
    || echo "FAILED: seq $seq: does not follow the line before"
  openssl pkeyutl -verify -pubin -inkey recording-public-key.pem -rawin \\
    -in "$t/hash.txt" -sigfile "$t/sig.bin" >/dev/null || echo "FAILED: seq $seq: bad signature"
  prev=$(cat "$t/hash.txt")
done < manifest.jsonl
# 4. The last line is the seal, and it is the seal the server stored.
[ "$(tail -n 1 manifest.jsonl | jq -r .type)" = seal ] || echo "FAILED: not sealed"
[ "$(tail -n 1 manifest.jsonl | jq -r .hash)" = "$(cat seal.txt)" ] && echo "seal: OK" \\
  || echo "FAILED: the seal differs from seal.txt"
# 5. Each file in media/ has the SHA-256 the seal lists (decrypted, for a recording
#    encrypted at rest), and none is missing or extra.
tail -n 1 manifest.jsonl | jq -r '.extra.final_files // {{}} | to_entries[]
  | "\\(.value.plain_sha256 // .value.sha256)  media/\\(.key)"' | tee "$t/media.txt" \\
  | sha256sum -c -
cut -c67- "$t/media.txt" | sort > "$t/listed-media.txt"
find media -type f 2>/dev/null | sort | comm -13 "$t/listed-media.txt" - \\
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


def export_visit(visit_dir: Path, key: RecordingKey, out_zip: Path,
                 custody: Sequence[Mapping[str, Any]], seal: str | None,
                 finals: Sequence[Path], anchors: Mapping[str, bytes] | None = None,
                 vault: Vault | None = None) -> Path:
    """Write the export zip for one visit and return its path.

    ``key`` is the server's recording key: its public half goes in the zip, and it signs
    the list of the zip's files (recorder/export_files.py). ``custody`` is the audit
    entries to include (this export, prior replays, exports and verifications); ``seal``
    the seal hash from the database (None if there is none); ``finals`` the joined
    per-participant files for ``media/``; ``anchors`` the time-stamped checkpoints
    holding the seal (``recorder.anchored``). The zip mirrors every segment file on disk
    (listed or not), so the export shows the same problems the server's copy would; it
    does not refuse a recording that fails verification, since exporting it may be
    exactly how that failure gets examined.

    Encrypted recordings: segments go in as stored, with their data keys in
    ``segment-keys.json`` (recorder/export_keys.py says why); ``media/`` is decrypted.
    """
    vault = vault or Vault()
    visit_dir, out_zip = Path(visit_dir), Path(out_zip)
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
            put = _Entries(archive)
            for final in finals:  # media is already compressed: store it
                with vault.open(visit_dir.name, Path(final)) as src:
                    put.stream(f"{EXPORT_DIR}/{Path(final).name}", src, zipfile.ZIP_STORED)
            segments = segment_files(visit_dir)
            for rel in segments:  # dated as on disk, when each was written
                with open(visit_dir / rel, "rb") as src:
                    put.stream(f"segments/{rel}", src, zipfile.ZIP_STORED,
                               os.fstat(src.fileno()).st_mtime)
            keys = segment_keys(visit_dir, segments, vault)
            if keys is not None:
                put.data(KEYS_NAME, json.dumps(keys, indent=2) + "\n")
            if manifest.is_file():
                put.data(MANIFEST_NAME, manifest.read_bytes())
            put.data(SEAL_NAME, f"{seal if seal else UNSEALED_TEXT}\n")
            put.data(PUBLIC_KEY_NAME, key.public_pem)
            put.data(CUSTODY_NAME, json.dumps(list(custody), indent=2, ensure_ascii=False)
                     + "\n")
            for name, data in (anchors or {}).items():
                put.data(name, data)
            put.data(VERIFYING_NAME, verifying_text(visit_dir.name, key.key_id)
                     + (NOTE if keys is not None else "")
                     + write_note(anchors or {}, visit_dir.name))
            files = listing(visit_dir.name, key.key_id, put.written)
            archive.writestr(FILES_NAME, files, zipfile.ZIP_DEFLATED)
            archive.writestr(SIGNATURE_NAME, key.sign(files) + "\n", zipfile.ZIP_DEFLATED)
        with open(partial, "rb") as file:
            os.fsync(file.fileno())
        os.replace(partial, out_zip)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out_zip


class _Entries:
    """Writes the zip's entries and keeps each one's SHA-256 and size, hashed from the
    very bytes written, for the signed list of files."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self._archive = archive
        self.written: list[Listed] = []

    def stream(self, name: str, src: BinaryIO, compress: int,
               mtime: float | None = None) -> None:
        info = zipfile.ZipInfo(name, time.localtime(mtime)[:6])
        info.compress_type, info.external_attr = compress, 0o644 << 16
        digest, size = hashlib.sha256(), 0
        with self._archive.open(info, "w", force_zip64=True) as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
        self.written.append(Listed(name, digest.hexdigest(), size))

    def data(self, name: str, data: bytes | str) -> None:
        raw = data.encode("utf-8") if isinstance(data, str) else data
        self.stream(name, io.BytesIO(raw), zipfile.ZIP_DEFLATED)


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
