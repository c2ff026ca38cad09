"""The manifest line format, pinned: manifests and exports already made must keep verifying."""

from __future__ import annotations

from recorder.manifest import canonical, entry_hash

# A segment line as the recorder writes it (plus a float field, to pin how numbers are
# written). The hash below was computed by the release that first wrote manifests; a
# change to the canonical form or the hashed fields breaks it, and with it the hand
# checks in VERIFYING.txt (``jq -cS 'del(.hash, .sig)' | sha256sum``).
ENTRY = {
    "seq": 3, "type": "segment", "at": 1700000001, "track": "família-1-vídeo",
    "file": "família-1-vídeo/segment-00003.webm", "sha256": "ab" * 32, "bytes": 1500000,
    "first_pts": 0, "last_pts": 900000, "time_base": "1/90000",
    "note": "del \x7f, 2.0 and 0.1", "prev": "cd" * 32, "key_id": "k1",
    "extra_num": 2.0, "frac": 0.1,
}
HASH = "52449de0b98b3051ffc228e60bf907fa052ed45d853b0b02c90519c21b7fcee0"


def test_a_known_manifest_line_keeps_its_hash() -> None:
    assert entry_hash(ENTRY) == HASH
    assert entry_hash({**ENTRY, "hash": HASH, "sig": "c2ln"}) == HASH  # hash, sig left out


def test_manifest_lines_are_written_as_jq_prints_them() -> None:
    # Integral floats as integers and DEL escaped, as `jq -cS` prints them.
    assert canonical({"n": 2.0, "d": "\x7f", "ü": 0.1}) == '{"d":"\\u007f","n":2,"ü":0.1}'.encode()
