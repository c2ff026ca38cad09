"""The checks ``recorder.verify`` runs over a manifest and the segment files beside it.

Each check adds what it finds to a :class:`Problems` as a plain sentence naming the file
or seq (the reader is an investigator, not a developer) and carries on, so that one
verification reports every problem rather than the first.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from recorder.manifest import (
    CHAIN,
    ENTRY_TYPES,
    GENESIS,
    MANIFEST_NAME,
    SEGMENT_TYPES,
    file_digest,
    segment_number,
    signed_bytes,
)
from recorder.signing import verify_signature

TIME_BASE = re.compile(r"([1-9][0-9]*)/([1-9][0-9]*)")
# After this many problems of one kind the rest are counted, not listed: a manifest
# re-signed from line 3 onwards would otherwise produce one sentence per segment.
MAX_LISTED_PER_KIND = 10

COMMON_FIELDS: dict[str, tuple[type, ...]] = {
    "seq": (int,), "type": (str,), "at": (int,), "prev": (str,), "key_id": (str,),
    "hash": (str,), "sig": (str,),
}
TYPE_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "segment": {"track": (str,), "file": (str,), "sha256": (str,), "bytes": (int,),
                "first_pts": (int, type(None)), "last_pts": (int, type(None)),
                "time_base": (str,)},
    "policy": {"detail": (dict,)},
    "seal": {"segments": (int,), "tracks": (list,), "last": (str,), "extra": (dict,)},
}
TYPE_FIELDS["recovered"] = TYPE_FIELDS["segment"]


@dataclass
class Problems:
    """What the checks found, listed up to MAX_LISTED_PER_KIND per kind."""

    listed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, text: str, label: str = "") -> None:
        count = self.counts[kind] = self.counts.get(kind, 0) + 1
        self.labels[kind] = label or kind
        if count <= MAX_LISTED_PER_KIND:
            self.listed.append(text)

    def result(self) -> list[str]:
        extra = []
        for kind, count in self.counts.items():
            more = count - MAX_LISTED_PER_KIND
            if more > 0:
                noun = "problem" if more == 1 else "problems"
                extra.append(f"{more} more {noun} of the same kind ({self.labels[kind]}) "
                             "are not listed.")
        return self.listed + extra


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false are not numbers here
        return False
    return isinstance(value, types)


def check_lines(data: bytes, public: Any, kid: str,
                 problems: Problems) -> list[dict[str, Any]]:
    """Parse and check every line; returns the entries whose fields are well formed (even
    if their chain, hash or signature is bad, so the file checks still run on them)."""
    name = MANIFEST_NAME
    if not data:
        problems.add("manifest", f"{name} is empty.")
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    else:
        problems.add("manifest", f"{name} line {len(lines)} is incomplete (the file does not "
                     "end with a line break): the manifest was cut off or edited.")
    entries: list[dict[str, Any]] = []
    prev: str | None = GENESIS
    for number, raw in enumerate(lines, start=1):
        try:
            entry = json.loads(raw)
        except ValueError:
            problems.add("parse", f"{name} line {number} is not valid JSON: the manifest was "
                         "cut off or edited.", "unreadable lines")
            prev = None
            continue
        if not isinstance(entry, dict):
            problems.add("parse", f"{name} line {number} is not a JSON object.",
                         "unreadable lines")
            prev = None
            continue
        seq = entry.get("seq")
        label = f"seq {seq}" if _is(seq, (int,)) else f"{name} line {number}"
        if seq != number:
            problems.add("seq", f"{name} line {number} has seq {seq!r} instead of {number}: "
                         "lines were removed, inserted or reordered.", "seq out of place")
        kind = entry.get("type")
        wanted = {**COMMON_FIELDS, **TYPE_FIELDS.get(kind, {})} if kind in ENTRY_TYPES \
            else COMMON_FIELDS
        if kind not in ENTRY_TYPES:
            problems.add("fields", f"{label} has unknown type {kind!r}.", "malformed lines")
        bad = [key for key, types in wanted.items() if not _is(entry.get(key), types)]
        if bad:
            problems.add("fields", f"{label} lacks or has malformed field(s): "
                         f"{', '.join(bad)}.", "malformed lines")
        link = CHAIN.check(entry, prev)
        if not link.follows:
            problems.add("chain", f"{label} does not follow the line before it: its prev is not "
                         "that line's hash (lines were removed, inserted or reordered).",
                         "broken chain")
        stored = entry.get("hash")
        if not link.intact:
            problems.add("hash", f"{label} was altered: its content does not match its hash.",
                         "altered lines")
        if entry.get("key_id") != kid:
            problems.add("key", f"{label} names signing key {entry.get('key_id')!r}, not the "
                         f"given recording key {kid}.", "other key")
        if not isinstance(stored, str) or not verify_signature(
                public, signed_bytes(stored) if stored.isascii() else b"", entry.get("sig")):
            problems.add("sig", f"{label} has an invalid signature: it was not signed by the "
                         f"recording key {kid} (re-written by someone without the key?).",
                         "invalid signatures")
        prev = stored if isinstance(stored, str) else None
        if kind in ENTRY_TYPES and not bad:
            entries.append(entry)
    return entries


def check_seal(seal: Mapping[str, Any], before: list[dict[str, Any]],
                problems: Problems) -> None:
    """The seal's own statements must match what precedes it."""
    segments = [e for e in before if e["type"] in SEGMENT_TYPES]
    label = f"The seal (seq {seal['seq']})"
    if seal["segments"] != len(segments):
        problems.add("seal", f"{label} counts {seal['segments']} segments but the manifest "
                     f"lists {len(segments)}.")
    tracks = sorted({e["track"] for e in segments})
    if seal["tracks"] != tracks:
        problems.add("seal", f"{label} names tracks {seal['tracks']} but the manifest has "
                     f"{tracks}.")
    if before and seal["last"] != before[-1]["hash"]:
        problems.add("seal", f"{label} does not name the hash of the line before it as last.")


def check_files(entries: list[dict[str, Any]], root: Path, problems: Problems) -> set[str]:
    """Each listed file exists with the listed size and SHA-256. Returns the listed paths."""
    by_sha: dict[str, dict[str, Any]] = {}
    for entry in entries:
        by_sha.setdefault(entry["sha256"], entry)
    listed: dict[str, int] = {}
    for entry in entries:
        rel, seq = entry["file"], entry["seq"]
        parts = rel.split("/")
        if len(parts) != 2 or parts[0] != entry["track"] or segment_number(parts[1]) is None:
            # Never open a path the manifest made up (../../etc/passwd).
            problems.add("files", f"seq {seq} names file {rel!r}, which is not "
                         f"<track>/segment-NNNNN.webm|mkv for its track {entry['track']!r}.")
            continue
        if rel in listed:
            problems.add("files", f"{rel} is listed twice (seq {listed[rel]} and seq {seq}).")
            continue
        listed[rel] = seq
        path = root / rel
        if not path.is_file():
            problems.add("missing", f"{rel} (seq {seq}) is missing.", "missing files")
            continue
        try:
            sha256, size = file_digest(path)
        except OSError as exc:
            problems.add("missing", f"{rel} (seq {seq}) cannot be read: {exc.strerror}.",
                         "missing files")
            continue
        if sha256 == entry["sha256"] and size == entry["bytes"]:
            continue
        twin = by_sha.get(sha256)
        if twin is not None and twin is not entry:
            problems.add("altered", f"{rel} (seq {seq}) does not match the manifest: it holds "
                         f"the content of {twin['file']} (seq {twin['seq']}), so segment files "
                         "were swapped or copied.", "altered files")
        elif size != entry["bytes"]:
            problems.add("altered", f"{rel} (seq {seq}) has {size} bytes but the manifest says "
                         f"{entry['bytes']}: the file was altered.", "altered files")
        else:
            problems.add("altered", f"{rel} (seq {seq}) was altered: its SHA-256 differs from "
                         "the manifest.", "altered files")
    return set(listed)


def check_order(entries: list[dict[str, Any]], problems: Problems) -> dict[str, int]:
    """Per track, numbers must run 1, 2, 3, ... in manifest order. Returns the last per
    track folder (for telling a live visit's open segment from an extra file)."""
    last: dict[str, int] = {}
    for entry in entries:
        number = segment_number(entry["file"].rsplit("/", 1)[-1])
        if number is None:
            continue  # reported by check_files
        track = entry["track"]
        before = last.get(track, 0)
        if number == before + 1:
            pass
        elif number <= before:
            problems.add("order", f"{entry['file']} (seq {entry['seq']}) comes after segment "
                         f"{before} of track {track}: segments are out of order.",
                         "out of order")
        elif number == before + 2:
            problems.add("order", f"Track {track} jumps from segment {before} to {number} "
                         f"(seq {entry['seq']}): segment {before + 1} is missing.", "gaps")
        else:
            problems.add("order", f"Track {track} jumps from segment {before} to {number} "
                         f"(seq {entry['seq']}): segments {before + 1} to {number - 1} are "
                         "missing.", "gaps")
        last[track] = max(before, number)
    return last


def check_extra_files(root: Path, last_numbers: Mapping[str, int], listed: set[str],
                       allow_unsealed: bool, problems: Problems) -> None:
    """No segment file may be on disk without a manifest line. Counted as segment files:
    everything inside a track's folder, and anything named segment-N.webm|mkv elsewhere
    (so a replay or temp file in another folder is not flagged)."""
    if not root.is_dir():
        problems.add("missing", f"The segments folder {root} is missing.", "missing files")
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            rel = (here / name).as_posix()
            if rel in listed:
                continue
            parts = rel.split("/")
            number = segment_number(name)
            in_track = len(parts) >= 2 and parts[0] in last_numbers
            if not in_track and number is None:
                continue
            if allow_unsealed and len(parts) == 2 and number is not None \
                    and number > last_numbers.get(parts[0], 0):
                continue  # the segment still being written
            problems.add("extra", f"{rel} is on disk but not in the manifest: a segment file "
                         "was added, or its manifest line was removed.", "unlisted files")


def duration(entries: list[dict[str, Any]]) -> float:
    """Seconds of media recorded, as ``Report.seconds`` describes."""
    per_track: dict[str, Fraction] = {}
    for entry in entries:
        match = TIME_BASE.fullmatch(entry["time_base"])
        first, last = entry["first_pts"], entry["last_pts"]
        if match is None or first is None or last is None or last < first:
            continue
        span = (last - first) * Fraction(int(match.group(1)), int(match.group(2)))
        per_track[entry["track"]] = per_track.get(entry["track"], Fraction(0)) + span
    return float(max(per_track.values(), default=Fraction(0)))

