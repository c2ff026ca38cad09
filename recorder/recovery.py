"""Crash recovery: segments a killed process left open are salvaged, not lost or hidden.

Segments are flushed as written with 1 s clusters, so the file a killed recorder was
writing plays up to its last cluster. At start-up every such orphan (a segment file the
manifest does not list) is hashed exactly as found, remuxed by stream copy (which drops
the torn tail and writes a proper ending), and appended to the manifest as ``recovered``
with the as-found hash in its note: the chain says what happened instead of pretending.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import av

from recorder.envelope import EnvelopeError
from recorder.manifest import MANIFEST_NAME, Manifest, file_digest, segment_number
from recorder.signing import RecordingKey
from recorder.vault import Vault


@dataclass(frozen=True)
class Recovered:
    file: str
    found_sha256: str
    found_bytes: int
    packets: int


def listed_files(visit_dir: Path) -> set[str]:
    path = visit_dir / MANIFEST_NAME
    if not path.exists():
        return set()
    files = set()
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("file"), str):
            files.add(entry["file"])
    return files


def is_sealed(visit_dir: Path) -> bool:
    path = visit_dir / MANIFEST_NAME
    if not path.exists():
        return False
    lines = path.read_text().strip().splitlines()
    try:
        return bool(lines) and json.loads(lines[-1]).get("type") == "seal"
    except ValueError:
        return False


def orphans(visit_dir: Path) -> list[Path]:
    listed = listed_files(visit_dir)
    found = []
    for track in sorted(p for p in visit_dir.iterdir() if p.is_dir() and p.name != "final"):
        for f in sorted(track.iterdir(), key=lambda p: segment_number(p.name) or 0):
            if segment_number(f.name) is not None and f"{track.name}/{f.name}" not in listed:
                found.append(f)
    return found


def remux(path: Path, vault: Vault) -> tuple[int, int | None, int | None, str]:
    """Rewrite a torn segment in place by stream copy; (packets, first, last, time_base).
    An encrypted one is read up to its last intact chunk and written under a new data
    key (a torn chunk fails authentication, and there is no final chunk)."""
    tmp = path.with_name(path.name + ".recovering")
    tmp.unlink(missing_ok=True)  # left by a crash during an earlier recovery
    visit = path.parent.parent.name
    packets, first, last = 0, None, None
    time_base = "1/1000"
    with av.open(vault.media_input(visit, path, salvage=True)) as src:
        sink = vault.media_output(visit, tmp)
        try:
            with av.open(sink, "w",
                         format="matroska" if path.suffix == ".mkv" else "webm") as dst:
                stream = src.streams[0]
                out = dst.add_stream_from_template(stream)
                time_base = f"{stream.time_base.numerator}/{stream.time_base.denominator}"
                try:
                    for packet in src.demux(stream):
                        if packet.dts is None or packet.size == 0:
                            continue
                        first = packet.pts if first is None else first
                        last = packet.pts
                        packet.stream = out
                        dst.mux(packet)
                        packets += 1
                except av.error.FFmpegError:
                    pass  # the torn tail: everything before it is kept
        finally:
            if not isinstance(sink, str):
                sink.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return packets, first, last, time_base


def recover_visit(visit_dir: Path, key: RecordingKey, clock,  # type: ignore[no-untyped-def]
                  vault: Vault) -> list[Recovered]:
    """Salvage every orphan segment of one visit into its manifest (not sealed here)."""
    if not orphans(visit_dir):
        return []
    with Manifest.open(visit_dir, key, clock) as manifest:
        return salvage(manifest, vault)


def salvage(manifest: Manifest, vault: Vault) -> list[Recovered]:
    """Append every orphan segment of the manifest's visit to it, as found: after a crash
    here, or when a node takes over a visit whose node died (a shared volume)."""
    done = []
    for path in orphans(manifest.visit_dir):
        sha, size = file_digest(path)
        try:
            packets, first, last, time_base = remux(path, vault)
        except (av.error.FFmpegError, EnvelopeError):
            packets, first, last, time_base = 0, None, None, "1/1000"
        if packets == 0:
            # Nothing playable (killed before the first cluster): keep it as found.
            note = f"found after a crash, not playable: sha256 {sha}, {size} bytes"
        else:
            note = (f"found after a crash: sha256 {sha}, {size} bytes; remuxed by stream "
                    f"copy, {packets} packets kept")
        manifest.append_segment({"track": path.parent.name, "path": path,
                                 "first_pts": first, "last_pts": last,
                                 "time_base": time_base}, recovered=True, note=note)
        done.append(Recovered(f"{path.parent.name}/{path.name}", sha, size, packets))
    return done
