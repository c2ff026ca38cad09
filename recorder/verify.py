"""Check a visit's recording against its signed manifest: complete and unaltered.

This is the check a prison runs before it relies on a recording (a hearing, a complaint,
a release to a lawyer), on the server or offline on an export. It trusts nothing but the
public key it is given (and, if given, the seal hash the database kept): every manifest
line must parse, follow the line before it, match its hash and carry a valid signature;
every listed segment file must exist with the listed size and SHA-256; no unlisted
segment file may sit beside them; each track's segments must run 1, 2, 3, ... in
manifest order; and the manifest must end with a seal, whose hash must equal the one
stored in the database. Every problem found is reported (not just the first) as a plain
sentence naming the file or seq, because the person reading it is an investigator, not
a developer.

What this cannot catch on its own: someone holding the private key can rewrite and
re-sign everything; the database copy of the seal (``expected_seal``) and a public key
obtained independently of the files being checked are what stop that.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from recorder.manifest import (
    ENTRY_TYPES,
    GENESIS,
    MANIFEST_NAME,
    SEGMENT_TYPES,
    entry_hash,
    file_digest,
    segment_number,
    signed_bytes,
)
from recorder.signing import key_id_of, load_public_key, verify_signature

HEX64 = re.compile(r"[0-9a-f]{64}")
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
class Report:
    """The outcome of one verification. ``seconds`` is the recorded media duration: for
    each track the sum of its segments' pts spans, and the longest track's total (a
    restart may reset pts, so spans are summed per segment rather than end minus start).
    """

    ok: bool
    problems: list[str]
    segments: int
    tracks: list[str]
    sealed: bool
    seconds: float
    seal: str | None = None
    key_id: str | None = None


@dataclass
class _Problems:
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


def verify_visit(visit_dir: Path, public_pem: bytes, expected_seal: str | None = None, *,
                 allow_unsealed: bool = False, segments_dir: Path | None = None) -> Report:
    """Verify ``<visit_dir>/manifest.jsonl`` and the segment files it lists.

    ``segments_dir`` is where the ``<track>/segment-*`` folders are (default: the visit
    folder itself; ``segments/`` in an export). ``allow_unsealed`` is for a visit still
    being recorded: a missing seal is then not a problem, and an unlisted segment file
    numbered above its track's last listed one is taken to be still open.
    """
    visit_dir = Path(visit_dir)
    root = Path(segments_dir) if segments_dir is not None else visit_dir
    problems = _Problems()
    try:
        public = load_public_key(public_pem)
    except ValueError as exc:
        return Report(False, [f"The public key cannot be used: {exc}."], 0, [], False, 0.0)
    kid = key_id_of(public)
    manifest_path = visit_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        problems.add("manifest", f"{MANIFEST_NAME} is missing from {visit_dir}.")
        _check_extra_files(root, {}, set(), allow_unsealed, problems)
        return Report(False, problems.result(), 0, [], False, 0.0, key_id=kid)
    entries = _check_lines(manifest_path.read_bytes(), public, kid, problems)

    seals = [e for e in entries if e["type"] == "seal"]
    last_seq = entries[-1]["seq"] if entries else 0
    seal_hash: str | None = None
    for seal in seals:
        if seal is not entries[-1]:
            problems.add("after-seal", f"seq {seal['seq']} is a seal but lines follow it (up "
                         f"to seq {last_seq}): entries were added after the recording was "
                         "sealed.")
    sealed = bool(entries) and entries[-1]["type"] == "seal"
    segment_entries = [e for e in entries if e["type"] in SEGMENT_TYPES]
    tracks = sorted({e["track"] for e in segment_entries})
    if sealed:
        seal = entries[-1]
        seal_hash = seal["hash"]
        _check_seal(seal, entries[:-1], problems)
        if expected_seal is not None and seal_hash != expected_seal:
            problems.add("seal", f"The seal (seq {seal['seq']}) has hash {seal_hash}, but the "
                         f"seal stored when the visit ended is {expected_seal}: this is not "
                         "the manifest that was sealed.")
    else:
        if not allow_unsealed:
            problems.add("seal", "The manifest is not sealed: it does not end with a seal "
                         "line (the recording is still running, stopped without sealing, or "
                         "its last lines were removed).")
        if expected_seal is not None:
            problems.add("seal", f"The seal {expected_seal} stored when the visit ended is not "
                         "in the manifest.")

    listed = _check_files(segment_entries, root, problems)
    last_numbers = _check_order(segment_entries, problems)
    _check_extra_files(root, last_numbers, listed, allow_unsealed, problems)

    result = problems.result()
    return Report(ok=not result, problems=result, segments=len(segment_entries), tracks=tracks,
                  sealed=sealed, seconds=_duration(segment_entries), seal=seal_hash,
                  key_id=kid)


def _check_lines(data: bytes, public: Any, kid: str,
                 problems: _Problems) -> list[dict[str, Any]]:
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
        if prev is not None and entry.get("prev") != prev:
            problems.add("chain", f"{label} does not follow the line before it: its prev is not "
                         "that line's hash (lines were removed, inserted or reordered).",
                         "broken chain")
        try:
            computed = entry_hash(entry)
        except ValueError:
            computed = None
        stored = entry.get("hash")
        if computed != stored:
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


def _check_seal(seal: Mapping[str, Any], before: list[dict[str, Any]],
                problems: _Problems) -> None:
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


def _check_files(entries: list[dict[str, Any]], root: Path, problems: _Problems) -> set[str]:
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


def _check_order(entries: list[dict[str, Any]], problems: _Problems) -> dict[str, int]:
    """Per track, numbers must run 1, 2, 3, ... in manifest order. Returns the last per
    track folder (for telling a live visit's open segment from an extra file)."""
    last: dict[str, int] = {}
    for entry in entries:
        number = segment_number(entry["file"].rsplit("/", 1)[-1])
        if number is None:
            continue  # reported by _check_files
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


def _check_extra_files(root: Path, last_numbers: Mapping[str, int], listed: set[str],
                       allow_unsealed: bool, problems: _Problems) -> None:
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


def _duration(entries: list[dict[str, Any]]) -> float:
    per_track: dict[str, Fraction] = {}
    for entry in entries:
        match = TIME_BASE.fullmatch(entry["time_base"])
        first, last = entry["first_pts"], entry["last_pts"]
        if match is None or first is None or last is None or last < first:
            continue
        span = (last - first) * Fraction(int(match.group(1)), int(match.group(2)))
        per_track[entry["track"]] = per_track.get(entry["track"], Fraction(0)) + span
    return float(max(per_track.values(), default=Fraction(0)))


def format_report(report: Report, where: Path) -> str:
    """The human-readable summary the command line prints."""
    verdict = "OK: complete and unaltered" if report.ok else "FAILED"
    lines = [
        f"{where}: {verdict}",
        f"  segments: {report.segments} in {len(report.tracks)} track(s) "
        f"({', '.join(report.tracks) or 'none'}), about {report.seconds:.0f} s",
        f"  sealed: {'yes, seal ' + str(report.seal) if report.sealed else 'no'}",
        f"  recording key id: {report.key_id}",
    ]
    lines += [f"  problem: {problem}" for problem in report.problems]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recorder.verify --dir FOLDER``: exit 0 if it verifies, 1 if not.

    FOLDER is an unzipped export (its own key and seal are used unless given), or a visit
    folder on the server together with ``--public-key``.
    """
    from recorder.export import verify_export  # export imports this module

    parser = argparse.ArgumentParser(prog="visitbridge recordings verify",
                                     description=main.__doc__)
    parser.add_argument("--dir", required=True, type=Path, help="export or visit folder")
    parser.add_argument("--public-key", type=Path, help="recording public key (PEM)")
    parser.add_argument("--seal", help="the seal hash stored in the database")
    parser.add_argument("--allow-unsealed", action="store_true", help="visit still recording")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    public_pem = args.public_key.read_bytes() if args.public_key else None
    if (args.dir / MANIFEST_NAME).is_file() and not (args.dir / "segments").is_dir():
        if public_pem is None:
            parser.error("a visit folder needs --public-key")
        report = verify_visit(args.dir, public_pem, args.seal,
                              allow_unsealed=args.allow_unsealed)
    else:
        report = verify_export(args.dir, public_pem=public_pem, expected_seal=args.seal)
    print(json.dumps(asdict(report), indent=2) if args.json else format_report(report, args.dir))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
