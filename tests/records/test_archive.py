"""The recordings index: search, visitors, legal holds and what retention may delete."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from records.archive import Archive, RecordingDeleted, UnknownRecording
from tests.support.archive import DAY, T0, add


def visits(rows: list[dict[str, Any]]) -> list[str]:
    return [r["visit"] for r in rows]


def test_search_filters_by_visit_inmate_visitor_and_date(db: sqlite3.Connection) -> None:
    archive = Archive(db)
    add(archive, "v-1", "inmate-41", "Jordan Reyes", T0, (("family-9", "Casey Reyes"),))
    add(archive, "v-2", "inmate-41", "Jordan Reyes", T0 + DAY,
        (("attorney-3", "Pat O'Neil"), ("family-9", "Casey Reyes")))
    add(archive, "v-3", "inmate-77", "Sam 100% Lee", T0 + 3 * DAY, (("family_1", "Robin"),))

    assert visits(archive.search()) == ["v-3", "v-2", "v-1"]  # newest first
    assert visits(archive.search(visit="v-2")) == ["v-2"]
    assert visits(archive.search(visit="v")) == []  # the visit id is exact
    # Inmate: id or name, substring, any case.
    assert visits(archive.search(inmate="INMATE-4")) == ["v-2", "v-1"]
    assert visits(archive.search(inmate="reyes")) == ["v-2", "v-1"]
    assert visits(archive.search(inmate="jordan r")) == ["v-2", "v-1"]
    # Visitor: any visitor's id or name.
    assert visits(archive.search(visitor="casey")) == ["v-2", "v-1"]
    assert visits(archive.search(visitor="o'neil")) == ["v-2"]
    assert visits(archive.search(visitor="attorney-")) == ["v-2"]
    assert visits(archive.search(visitor="Reyes", inmate="inmate-77")) == []
    # LIKE wildcards in the query are literal.
    assert visits(archive.search(inmate="100%")) == ["v-3"]
    assert visits(archive.search(inmate="%")) == ["v-3"]
    assert visits(archive.search(visitor="family_")) == ["v-3"]
    assert visits(archive.search(visitor="_")) == ["v-3"]
    # Dates: from inclusive, to exclusive, on starts_at.
    assert visits(archive.search(date_from=T0 + DAY)) == ["v-3", "v-2"]
    assert visits(archive.search(date_to=T0 + DAY)) == ["v-1"]
    assert visits(archive.search(date_from=T0, date_to=T0 + 2 * DAY)) == ["v-2", "v-1"]
    assert visits(archive.search(limit=1)) == ["v-3"]

    row = archive.get("v-2")
    assert row is not None
    assert row["visitors"] == [{"sub": "attorney-3", "name": "Pat O'Neil"},
                               {"sub": "family-9", "name": "Casey Reyes"}]
    assert row["finals"] == {"inmate-41": "final/inmate-41.webm"}
    assert (row["state"], row["seal"], row["bytes"], row["on_hold"]) == (
        "sealed", "ab" * 32, 1000, False)
    assert archive.get("nope") is None


def test_visitors_are_indexed_once_and_a_restart_goes_back_to_recording(
        db: sqlite3.Connection) -> None:
    archive = Archive(db)
    archive.started("v-1", "inmate-1", "A", T0, T0 + 1800, now=T0)
    archive.add_visitor("v-1", "family-1", "Old Name")
    archive.add_visitor("v-1", "family-1", "New Name")
    archive.add_visitor("v-1", "family-2", "Other")
    assert archive.get("v-1")["visitors"] == [  # type: ignore[index]
        {"sub": "family-1", "name": "New Name"}, {"sub": "family-2", "name": "Other"}]
    with pytest.raises(UnknownRecording):
        archive.add_visitor("nope", "x", "y")
    with pytest.raises(UnknownRecording):
        archive.sealed("nope", "s", 1, 1.0, {}, now=T0)
    archive.sealed("v-1", "s1", 10, 5.0, {}, now=T0 + 1800, recovered=True)
    assert archive.get("v-1")["state"] == "recovered"  # type: ignore[index]
    # The recorder starts again for the same visit (server restart mid-visit).
    archive.started("v-1", None, None, None, None, now=T0 + 1900)
    row = archive.get("v-1")
    assert row is not None
    assert (row["state"], row["inmate"], row["inmate_name"], row["starts_at"]) == (
        "recording", "inmate-1", "A", T0)


def test_holds_are_placed_released_and_kept_as_history(db: sqlite3.Connection) -> None:
    archive = Archive(db)
    add(archive, "v-1", "inmate-1", "A", T0)
    assert not archive.on_hold("v-1")
    first = archive.hold("v-1", "compliance-1", "case 2026-114", now=T0 + 10)
    second = archive.hold("v-1", "compliance-2", "subpoena 88", now=T0 + 20)
    assert first != second
    assert archive.on_hold("v-1")
    assert archive.get("v-1")["on_hold"] is True  # type: ignore[index]
    assert archive.search(visit="v-1")[0]["on_hold"] is True
    assert archive.release("v-1", "compliance-3", now=T0 + 30) == 2
    assert not archive.on_hold("v-1")
    assert archive.release("v-1", "compliance-3", now=T0 + 40) == 0
    history = archive.holds("v-1")
    assert [(h["placed_by"], h["reason"], h["released_by"], h["released_at"])
            for h in history] == [("compliance-1", "case 2026-114", "compliance-3", T0 + 30),
                                  ("compliance-2", "subpoena 88", "compliance-3", T0 + 30)]
    with pytest.raises(UnknownRecording):
        archive.hold("nope", "c", "r", now=T0)
    assert archive.mark_deleted("v-1", now=T0 + 50)
    with pytest.raises(RecordingDeleted):
        archive.hold("v-1", "c", "r", now=T0 + 60)


def test_expired_lists_only_finished_unheld_recordings_past_retention(
        db: sqlite3.Connection) -> None:
    archive = Archive(db)
    now = T0 + 200 * DAY
    add(archive, "old-sealed", "i-1", "A", T0)
    add(archive, "old-recovered", "i-2", "B", T0)
    archive.sealed("old-recovered", "s", 1, 1.0, {}, now=T0 + 3600, recovered=True)
    add(archive, "old-live", "i-3", "C", T0, seal=False)
    add(archive, "old-held", "i-4", "D", T0)
    archive.hold("old-held", "compliance-1", "litigation", now=T0 + DAY)
    add(archive, "recent", "i-5", "E", now - 10 * DAY)
    # Retention counts from the end of the visit: ends exactly 180 days ago is not expired.
    add(archive, "boundary", "i-6", "F", now - 180 * DAY - 30 * 60)

    assert archive.expired(180, now) == ["old-recovered", "old-sealed"]
    assert archive.expired(5, now) == ["old-recovered", "old-sealed", "boundary", "recent"]
    # A live one, and a held one, are refused at deletion too.
    assert not archive.mark_deleted("old-live", now)
    assert not archive.mark_deleted("old-held", now)
    assert archive.mark_deleted("old-sealed", now)
    assert not archive.mark_deleted("old-sealed", now)  # only once
    assert archive.get("old-sealed")["state"] == "deleted"  # type: ignore[index]
    assert archive.expired(180, now) == ["old-recovered"]
    archive.release("old-held", "compliance-1", now)
    assert archive.expired(180, now) == ["old-held", "old-recovered"]
