"""The recordings index: search, visitors, legal holds and what retention may delete."""

from __future__ import annotations

from typing import Any

import pytest

from records.archive import (
    Archive,
    HoldReleased,
    RecordingDeleted,
    UnknownHold,
    UnknownRecording,
    recording_length,
)
from records.dialect import Connection
from tests.support.archive import DAY, T0, add


def visits(rows: list[dict[str, Any]]) -> list[str]:
    return [r["visit"] for r in rows]


def test_search_filters_by_visit_inmate_visitor_and_date(db: Connection) -> None:
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
        db: Connection) -> None:
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


def test_an_inmate_who_joins_after_a_visitor_is_indexed_and_found(
        db: Connection) -> None:
    archive = Archive(db)
    # The family's media opened the recording: no inmate was known yet.
    archive.started("v-1", None, None, T0, T0 + 1800, now=T0)
    archive.add_visitor("v-1", "family-1", "Casey Reyes")
    assert archive.search(inmate="jordan") == []
    archive.add_inmate("v-1", "inmate-41", "Jordan Reyes")
    assert [r["visit"] for r in archive.search(inmate="jordan")] == ["v-1"]
    assert [r["visit"] for r in archive.search(inmate="INMATE-41")] == ["v-1"]
    with pytest.raises(UnknownRecording):
        archive.add_inmate("nope", "inmate-1", "A")


def test_a_recording_lasts_from_its_first_media_to_its_last() -> None:
    # Parties recorded from 95 s to 1295 s and from 100 s to 1300 s after the booked start.
    assert recording_length([(95.0, 1200.0), (100.0, 1200.0)]) == 1205.0
    # A pause between two parties is part of it; time before anyone was recorded is not.
    assert recording_length([(10.0, 5.0), (60.0, 5.0)]) == 55.0
    assert recording_length([]) == 0.0


def test_holds_are_placed_released_and_kept_as_history(db: Connection) -> None:
    archive = Archive(db)
    add(archive, "v-1", "inmate-1", "A", T0)
    assert not archive.on_hold("v-1")
    first = archive.hold("v-1", "compliance-1", "case 2026-114", now=T0 + 10)
    second = archive.hold("v-1", "compliance-2", "subpoena 88", now=T0 + 20)
    assert first != second
    assert archive.on_hold("v-1")
    assert archive.get("v-1")["on_hold"] is True  # type: ignore[index]
    assert archive.search(visit="v-1")[0]["on_hold"] is True
    # One hold at a time: the other stays, with its own reason.
    archive.release("v-1", first, "compliance-3", "case closed", now=T0 + 30)
    assert archive.on_hold("v-1")
    with pytest.raises(HoldReleased):
        archive.release("v-1", first, "compliance-3", "again", now=T0 + 35)
    with pytest.raises(UnknownHold):
        archive.release("other-visit", second, "compliance-3", "wrong visit", now=T0 + 35)
    archive.release("v-1", second, "compliance-3", "subpoena withdrawn", now=T0 + 40)
    assert not archive.on_hold("v-1")
    history = archive.holds("v-1")
    assert [(h["placed_by"], h["reason"], h["released_by"], h["released_at"],
             h["release_reason"]) for h in history] == [
        ("compliance-1", "case 2026-114", "compliance-3", T0 + 30, "case closed"),
        ("compliance-2", "subpoena 88", "compliance-3", T0 + 40, "subpoena withdrawn")]
    with pytest.raises(UnknownRecording):
        archive.hold("nope", "c", "r", now=T0)
    assert archive.mark_deleted("v-1", now=T0 + 50)
    with pytest.raises(RecordingDeleted):
        archive.hold("v-1", "c", "r", now=T0 + 60)


def test_expired_lists_only_finished_unheld_recordings_past_retention(
        db: Connection) -> None:
    archive = Archive(db)
    now = T0 + 200 * DAY
    add(archive, "old-sealed", "i-1", "A", T0)
    add(archive, "old-recovered", "i-2", "B", T0)
    archive.sealed("old-recovered", "s", 1, 1.0, {}, now=T0 + 3600, recovered=True)
    add(archive, "old-live", "i-3", "C", T0, seal=False)
    add(archive, "old-held", "i-4", "D", T0)
    held = archive.hold("old-held", "compliance-1", "litigation", now=T0 + DAY)
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
    archive.release("old-held", held, "compliance-1", "settled", now)
    assert archive.expired(180, now) == ["old-held", "old-recovered"]
