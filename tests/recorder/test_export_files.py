"""The signed list of an export's files, and what the check decides from it (pure)."""

from __future__ import annotations

import json

import pytest

from recorder.export_files import FILES_NAME, SIGNATURE_NAME, Listed, listing, listing_problems
from recorder.signing import RecordingKey

KEY = RecordingKey.generate()
FILES = [Listed("seal.txt", "a" * 64, 65), Listed("custody.json", "b" * 64, 300),
         Listed("segments/t/segment-00001.webm", "c" * 64, 9000)]
FOUND = {f.name: (f.sha256, f.bytes) for f in FILES}


def signed() -> tuple[bytes, str]:
    data = listing("visit-1", KEY.key_id, FILES)
    return data, KEY.sign(data)


def problems(found: dict[str, tuple[str, int]] = FOUND, **changes: object) -> list[str]:
    data, sig = signed()
    args: dict[str, object] = {"data": data, "signature": sig,
                               "keys": {"the bundled key": KEY.public_key}, "found": found}
    args.update(changes)
    return listing_problems(**args)  # type: ignore[arg-type]


def test_the_list_is_sorted_json_that_names_every_file() -> None:
    document = json.loads(listing("visit-1", KEY.key_id, FILES))
    assert document["visit"] == "visit-1" and document["key_id"] == KEY.key_id
    assert [f["name"] for f in document["files"]] == sorted(f.name for f in FILES)
    assert document["files"][0] == {"name": "custody.json", "sha256": "b" * 64, "bytes": 300}
    with pytest.raises(ValueError):
        listing("v", KEY.key_id, [*FILES, FILES[0]])
    with pytest.raises(ValueError):
        listing("v", KEY.key_id, [Listed(FILES_NAME, "d" * 64, 1)])


def test_an_untouched_export_has_no_problem() -> None:
    assert problems() == []
    assert problems(signature=signed()[1] + "\n") == []  # as the file holds it


def test_a_changed_missing_or_added_file_is_named() -> None:
    assert problems({**FOUND, "seal.txt": ("e" * 64, 65)}) == [
        "seal.txt was altered after the export was made: its SHA-256 or size differs from "
        "export-files.json."]
    assert problems({**FOUND, "seal.txt": ("a" * 64, 66)})[0].startswith("seal.txt was altered")
    assert problems({k: v for k, v in FOUND.items() if k != "custody.json"}) == [
        "custody.json is listed in export-files.json but missing from the export."]
    assert problems({**FOUND, "notes.txt": ("f" * 64, 3)}) == [
        "notes.txt is not in export-files.json: it was added after the export was made."]


def test_the_signature_must_verify_with_every_key_given() -> None:
    data, sig = signed()
    other = RecordingKey.generate()
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    assert problems(data=bytes(flipped))[0].startswith(
        f"{SIGNATURE_NAME} is not a valid signature of {FILES_NAME} by the bundled key")
    assert problems(signature=sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:])
    assert problems(signature="not base64!")
    # A forger's export, re-signed with their own key, fails against the trusted key.
    forged = other.sign(data)
    assert problems(signature=forged, keys={"the bundled key": other.public_key}) == []
    assert problems(signature=forged, keys={"the bundled key": other.public_key,
                                            "the key given": KEY.public_key}) == [
        f"{SIGNATURE_NAME} is not a valid signature of {FILES_NAME} by the key given: the "
        "list of files was altered, or signed with another key."]


def test_a_missing_or_unreadable_list_fails() -> None:
    assert problems(data=None)[0].startswith(f"{FILES_NAME} is missing")
    assert problems(signature=None) == [
        f"{SIGNATURE_NAME} is missing: nothing shows who made {FILES_NAME}."]
    for bad in (b"[]", b"{", b'{"format": "other", "files": []}',
                json.dumps({"format": "visitbridge-export-files/1",
                            "files": [{"name": "x", "sha256": "a"}]}).encode()):
        sig = KEY.sign(bad)
        assert problems(data=bad, signature=sig) == [
            f"{FILES_NAME} cannot be read as a list of files."], bad
