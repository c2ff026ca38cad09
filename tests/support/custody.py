"""Recordings for the chain-of-custody tests: segments of three interleaved tracks written
into a signed manifest, and the manifest's lines read and rewritten as a forger would."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from recorder.manifest import GENESIS, MANIFEST_NAME, Manifest, canonical, entry_hash, signed_bytes
from recorder.signing import RecordingKey
from recorder.verify import Report, verify_visit

# Three tracks whose segments interleave in time; H.264 video goes to .mkv.
TRACKS = {"family-1-video": ("webm", 90000), "family-1-audio": ("webm", 48000),
          "inmate-7-video": ("mkv", 90000)}
PER_TRACK = 3


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


@dataclass
class Recording:
    visit_dir: Path
    key: RecordingKey
    seal: str

    @property
    def manifest(self) -> Path:
        return self.visit_dir / MANIFEST_NAME

    def seg(self, track: str, number: int) -> Path:
        ext = TRACKS[track][0]
        return self.visit_dir / track / f"segment-{number:05d}.{ext}"

    def verify(self, expected_seal: str | None = None, allow_unsealed: bool = False) -> Report:
        return verify_visit(self.visit_dir, self.key.public_pem, expected_seal,
                            allow_unsealed=allow_unsealed)


def write_segment(visit_dir: Path, track: str, number: int) -> dict[str, object]:
    ext, rate = TRACKS[track]
    path = visit_dir / track / f"segment-{number:05d}.{ext}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Any bytes do for integrity; distinct content per file so swaps are detectable.
    path.write_bytes(f"{track}/{number}\n".encode() + os.urandom(2000 + 37 * number))
    first = (number - 1) * 10 * rate
    return {"track": track, "path": path, "first_pts": first,
            "last_pts": first + 10 * rate - 3000, "time_base": f"1/{rate}"}


def record(visit_dir: Path, key: RecordingKey, clock: Clock, numbers: range,
           manifest: Manifest | None = None) -> Manifest:
    manifest = manifest or Manifest.open(visit_dir, key, clock)
    for number in numbers:
        for track in TRACKS:  # interleaved: segment n of every track, then n + 1
            manifest.append_segment(write_segment(visit_dir, track, number))
    return manifest


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def write_lines(path: Path, entries: list[dict]) -> None:
    path.write_bytes(b"".join(canonical(e) + b"\n" for e in entries))


def failed_problems(report: Report) -> str:
    """The problems of a report that must have failed, as one text to search."""
    assert not report.ok
    return "\n".join(report.problems)


def resign(entries: list[dict], signer: RecordingKey, start: int, key_id: str = "") -> None:
    """Recompute seq, prev, hash and sig from ``start`` on, as a forger would."""
    for index in range(start, len(entries)):
        entry = entries[index]
        entry["seq"] = index + 1
        entry["prev"] = entries[index - 1]["hash"] if index else GENESIS
        entry["key_id"] = key_id or signer.key_id
        if entry["type"] == "seal":
            entry["last"] = entry["prev"]
        entry.pop("hash", None)
        entry.pop("sig", None)
        entry["hash"] = entry_hash(entry)
        entry["sig"] = signer.sign(signed_bytes(entry["hash"]))

