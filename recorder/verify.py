"""Check a visit's recording against its signed manifest: complete and unaltered.

This is the check a prison runs before it relies on a recording (a hearing, a complaint,
a release to a lawyer), on the server or offline on an export. It trusts nothing but the
public key it is given (and, if given, the seal hash the database kept): every manifest
line must parse, follow the line before it, match its hash and carry a valid signature;
every listed segment file must exist with the listed size and SHA-256; no unlisted
segment file may sit beside them; every replay file (``final/``, ``media/`` in an
export) must be one the seal lists, with its SHA-256 and size; each track's segments
must run 1, 2, 3, ... in manifest order; and the manifest must end with a seal, whose
hash must equal the one stored in the database. In an export, every other file must be
the one the signed ``export-files.json`` lists (recorder.export_files). Every problem
found is reported (not just the first) as a plain sentence naming the file or seq,
because the person reading it is an investigator, not a developer.

What this cannot catch on its own: someone holding the private key can rewrite and
re-sign everything; the database copy of the seal (``expected_seal``) and a public key
obtained independently of the files being checked are what stop that: anyone can make
a self-consistent export signed with a key of their own.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from recorder import checks, replay_files
from recorder.export import PUBLIC_KEY_NAME, SEAL_NAME, UNSEALED_TEXT
from recorder.export_files import FILES_NAME, SIGNATURE_NAME, UNLISTED, listing_problems
from recorder.manifest import MANIFEST_NAME, SEGMENT_TYPES, file_digest
from recorder.replay_files import EXPORT_DIR, FINAL_DIR
from recorder.signing import key_id_of, load_public_key

HEX64 = re.compile(r"[0-9a-f]{64}")


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



def verify_visit(visit_dir: Path, public_pem: bytes, expected_seal: str | None = None, *,
                 allow_unsealed: bool = False, segments_dir: Path | None = None,
                 replay_dir: str = FINAL_DIR) -> Report:
    """Verify ``<visit_dir>/manifest.jsonl``, the segment files it lists and the replay
    files its seal lists.

    ``segments_dir`` is where the ``<track>/segment-*`` folders are (default: the visit
    folder itself; ``segments/`` in an export), ``replay_dir`` the folder of the visit
    holding the joined replay files (``final``; ``media`` in an export).
    ``allow_unsealed`` is for a visit still being recorded: a missing seal is then not a
    problem, and an unlisted segment file numbered above its track's last listed one is
    taken to be still open.
    """
    visit_dir = Path(visit_dir)
    root = Path(segments_dir) if segments_dir is not None else visit_dir
    problems = checks.Problems()
    try:
        public = load_public_key(public_pem)
    except ValueError as exc:
        return Report(False, [f"The public key cannot be used: {exc}."], 0, [], False, 0.0)
    kid = key_id_of(public)
    manifest_path = visit_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        problems.add("manifest", f"{MANIFEST_NAME} is missing from {visit_dir}.")
        checks.check_extra_files(root, {}, set(), allow_unsealed, problems)
        return Report(False, problems.result(), 0, [], False, 0.0, key_id=kid)
    entries = checks.check_lines(manifest_path.read_bytes(), public, kid, problems)

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
        checks.check_seal(seal, entries[:-1], problems)
        replay_files.check_folder(seal, visit_dir / replay_dir, replay_dir, problems)
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

    listed = checks.check_files(segment_entries, root, problems)
    last_numbers = checks.check_order(segment_entries, problems)
    checks.check_extra_files(root, last_numbers, listed, allow_unsealed, problems)

    result = problems.result()
    return Report(ok=not result, problems=result, segments=len(segment_entries), tracks=tracks,
                  sealed=sealed, seconds=checks.duration(segment_entries), seal=seal_hash,
                  key_id=kid)


def _export_root(unzipped_dir: Path) -> Path:
    """The folder holding manifest.jsonl: the one given, or its single subfolder (what
    unzip tools that extract into a folder named after the zip produce)."""
    if (unzipped_dir / MANIFEST_NAME).exists() or (unzipped_dir / PUBLIC_KEY_NAME).exists():
        return unzipped_dir
    children = [p for p in unzipped_dir.iterdir() if p.is_dir()] if unzipped_dir.is_dir() \
        else []
    if len(children) == 1 and (children[0] / PUBLIC_KEY_NAME).exists():
        return children[0]
    return unzipped_dir


def verify_export(unzipped_dir: Path, *, public_pem: bytes | None = None,
                  expected_seal: str | None = None) -> Report:
    """Verify an unzipped export offline: every file against the signed
    ``export-files.json``, ``segments/`` against ``manifest.jsonl`` with the bundled key,
    and ``seal.txt``.

    Pass ``public_pem`` (the key the prison publishes, obtained out of band) and
    ``expected_seal`` when known: the bundled ones only prove the export is
    self-consistent. A bundled key that differs from ``public_pem`` is reported as a
    problem, and the list of files must verify with both.
    """
    root = _export_root(Path(unzipped_dir))
    problems: list[str] = []
    bundled_path = root / PUBLIC_KEY_NAME
    bundled = bundled_path.read_bytes() if bundled_path.is_file() else None
    if bundled is None:
        problems.append(f"{PUBLIC_KEY_NAME} is missing from the export.")
    if public_pem is not None and bundled is not None:
        try:
            same = key_id_of(load_public_key(bundled)) == key_id_of(load_public_key(public_pem))
        except ValueError as exc:
            problems.append(f"{PUBLIC_KEY_NAME} cannot be used: {exc}.")
        else:
            if not same:
                problems.append(f"{PUBLIC_KEY_NAME} is not the recording key given to check "
                                "against: the export was signed with another key.")
    key = public_pem if public_pem is not None else bundled
    seal_path = root / SEAL_NAME
    stored = seal_path.read_text(encoding="utf-8", errors="replace").strip() \
        if seal_path.is_file() else None
    if stored is None:
        problems.append(f"{SEAL_NAME} is missing from the export.")
    elif not HEX64.fullmatch(stored) and stored != UNSEALED_TEXT:
        problems.append(f"{SEAL_NAME} does not hold a seal hash.")
    if expected_seal is not None and stored is not None and HEX64.fullmatch(stored) \
            and stored != expected_seal:
        problems.append(f"{SEAL_NAME} holds {stored}, not the expected seal {expected_seal}.")
    expected = expected_seal if expected_seal is not None else (
        stored if stored is not None and HEX64.fullmatch(stored) else None)
    # After the recording's own problems, which say more about a file than the list can.
    listing = _listing_problems(root, bundled, public_pem)
    if key is None:
        return Report(False, problems + listing, 0, [], False, 0.0)
    report = verify_visit(root, key, expected, segments_dir=root / "segments",
                          replay_dir=EXPORT_DIR)
    if problems or listing:
        report.problems = problems + report.problems + listing
        report.ok = False
    return report


def _listing_problems(root: Path, bundled: bytes | None, given: bytes | None) -> list[str]:
    """What ``export_files.listing_problems`` finds, after reading the export's files."""
    keys = {}
    for name, pem in ((PUBLIC_KEY_NAME, bundled), ("the recording key given", given)):
        try:
            keys.update({name: load_public_key(pem)} if pem is not None else {})
        except ValueError:
            pass  # reported by the key comparison or by verify_visit
    found = {path.relative_to(root).as_posix(): file_digest(path)
             for path in sorted(root.rglob("*"))
             if path.is_file() and path.relative_to(root).as_posix() not in UNLISTED}
    files, sig = root / FILES_NAME, root / SIGNATURE_NAME
    problems = listing_problems(
        files.read_bytes() if files.is_file() else None,
        sig.read_text(encoding="ascii", errors="replace") if sig.is_file() else None,
        keys, found)
    return problems if keys else problems + [
        f"{SIGNATURE_NAME} cannot be checked: there is no usable public key."]


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
