"""Two nodes on one recordings volume: the lease epoch fences the manifest.

The node that took a visit over opens its manifest under the next epoch; from then on
every write of the node that held it before (a late segment, a seal) is refused, and the
chain the new owner continues verifies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.manifest import Manifest, ManifestError
from recorder.signing import RecordingKey
from recorder.verify import verify_visit
from tests.support.custody import Clock, lines_of, record, write_segment


def served(node: str, epoch: int) -> dict[str, object]:
    return {"node": node, "epoch": epoch}


def test_a_late_write_of_the_old_owner_is_refused(tmp_path: Path, key: RecordingKey) -> None:
    visit_dir, clock = tmp_path / "v", Clock()
    old = record(visit_dir, key, clock, range(1, 3),
                 Manifest.open(visit_dir, key, clock, served_by=served("a", 1)))
    new = Manifest.open(visit_dir, key, clock, served_by=served("b", 2))  # took it over
    late = write_segment(visit_dir, "family-1-video", 3)
    with pytest.raises(ManifestError, match="epoch 2.*epoch 1.*fenced"):
        old.append_segment(late)
    with pytest.raises(ManifestError):
        old.seal()
    new.append_segment(late)
    new.seal()
    policies = [e["detail"]["served_by"] for e in lines_of(new.path) if e["type"] == "policy"]
    assert policies == [served("a", 1), served("b", 2)]
    report = verify_visit(visit_dir, key.public_pem, None)
    assert report.ok, report.problems


def test_an_older_epoch_cannot_open_a_manifest_a_newer_one_wrote(
        tmp_path: Path, key: RecordingKey) -> None:
    visit_dir, clock = tmp_path / "v", Clock()
    Manifest.open(visit_dir, key, clock, served_by=served("b", 2)).close()
    with pytest.raises(ManifestError, match="fenced"):
        Manifest.open(visit_dir, key, clock, served_by=served("a", 1))
    # The same holder (a node restarted within its lease) continues.
    Manifest.open(visit_dir, key, clock, served_by=served("b", 2)).close()
    assert len(lines_of(visit_dir / "manifest.jsonl")) == 2
