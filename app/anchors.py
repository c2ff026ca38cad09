"""``visitbridge audit verify``'s second half: the audit log against its time-stamped
checkpoints (``records.anchoring``), read-only, with the keys and roots the operator has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config import Config
from recorder.signing import verify_with
from records.anchoring import verify_anchors
from records.dialect import ERRORS, open_database
from records.timestamp import load_roots


@dataclass(frozen=True)
class Outcome:
    exit_code: int  # 0 anchored or nothing to check, 1 tampered, 2 cannot check
    text: str


def check_anchors(path: Path | str, config: Config, tsa_ca: Path | None) -> Outcome:
    """Check the checkpoints of the database at ``path`` (its chain already verified)."""
    db = open_database(path, readonly=True)
    try:
        try:
            count = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
            last_seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()[0]
        except ERRORS:  # a database from before checkpoints
            count, last_seq = 0, 0
        ca_file = tsa_ca or config.tsa_ca_file
        if not count:
            wanted = bool(config.tsa_url or tsa_ca)
            return Outcome(0, "NOT ANCHORED: no time-stamped checkpoint in this database"
                           if wanted else "")
        if ca_file is None:
            return Outcome(2, f"cannot check the {count} time-stamped checkpoints: give "
                              "--tsa-ca or set tsa_ca_file")
        try:
            roots = load_roots(ca_file.read_bytes())
            public_pem = (config.data_dir / "keys" / "recording.public.pem").read_bytes()
        except (OSError, ValueError) as exc:
            return Outcome(2, f"cannot check the checkpoints: {exc}")
        verdict = verify_anchors(db, roots, lambda data, sig: verify_with(public_pem, data, sig))
    finally:
        db.close()
    if not verdict.ok:
        return Outcome(1, "AUDIT LOG TAMPERED: " + " ".join(verdict.problems))
    tail = last_seq - verdict.anchored_seq
    return Outcome(0, f"anchored: entries 1 to {verdict.anchored_seq} are covered by "
                      f"{verdict.checkpoints} time-stamped checkpoints (newest time-stamped "
                      f"{verdict.anchored_at}); {tail} newer entries are not anchored yet")
