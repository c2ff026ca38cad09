"""What the write-once archive stores: keys, retention dates, the index record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recorder.archive_plan import (
    bucket_record,
    object_key,
    retain_until,
    retention_start,
    stored_object,
    versions,
)

END = datetime(2026, 11, 20, 14, 30, tzinfo=UTC).timestamp()


def test_objects_are_keyed_by_visit_and_path_in_its_folder() -> None:
    assert object_key("v-1", "final/family-9.webm") == "v-1/final/family-9.webm"
    assert object_key("v-1", "manifest.jsonl") == "v-1/manifest.jsonl"


def test_retention_counts_from_the_booked_end_like_the_index() -> None:
    assert retention_start({"ends_at": END, "sealed_at": END + 60, "created_at": 1.0}) == END
    assert retention_start({"ends_at": None, "sealed_at": END + 60}) == END + 60
    assert retention_start({"created_at": 5.0}) == 5.0
    with pytest.raises(ValueError):
        retention_start({"visit": "v-1"})


def test_the_bucket_keeps_objects_until_the_retention_period_ends_never_earlier() -> None:
    assert retain_until({"ends_at": END}, 180) == datetime(2027, 5, 19, 14, 30, tzinfo=UTC)
    # A fraction of a second is rounded up, so the bucket never lets go before the product.
    assert retain_until({"ends_at": END + 0.2}, 1).timestamp() == END + 86401


def test_the_index_record_names_each_object_version() -> None:
    until = datetime(2027, 5, 19, tzinfo=UTC)
    objects = {"manifest.jsonl": {"version": "v2", "sha256": "ab", "bytes": 10},
               "final/a.webm": {"version": "v1", "sha256": "cd", "bytes": 20}}
    record = bucket_record("evidence", objects, until, now=END)
    assert record == {"bucket": "evidence", "objects": objects,
                      "retain_until": until.timestamp(), "archived_at": END}
    assert stored_object(record, "final/a.webm") == objects["final/a.webm"]
    assert stored_object(record, "final/b.webm") is None
    assert stored_object(None, "final/a.webm") is None
    assert versions(record) == [("final/a.webm", "v1"), ("manifest.jsonl", "v2")]
    assert versions(None) == []
