"""Fixtures of the recorder tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.replay_files import FINAL_DIR, FINALS_KEY, seal_entries
from recorder.signing import RecordingKey
from tests.support.custody import PER_TRACK, Clock, Recording, record


@pytest.fixture(scope="module")
def key() -> RecordingKey:
    return RecordingKey.generate()


@pytest.fixture
def rec(tmp_path: Path, key: RecordingKey) -> Recording:
    visit_dir = tmp_path / "recordings" / "visit-42"
    manifest = record(visit_dir, key, Clock(), range(1, PER_TRACK + 1))
    # Non-ASCII and DEL: the hand check's jq must reproduce the hashed bytes exactly.
    manifest.append_policy({"held_until_recording": True, "site": "Lüneburg — Haus 2\x7f"})
    final = visit_dir / FINAL_DIR / "family-1.webm"
    final.parent.mkdir()
    final.write_bytes(b"joined file")
    # Floats as recorder/session.py passes them (final file offsets), and the replay
    # file's hash as the seal covers it.
    seal = manifest.seal({"cause": "completed", "finals": {"family-1": 0.125, "inmate-7": 2.0},
                          FINALS_KEY: seal_entries([final])})
    return Recording(visit_dir, key, seal)
