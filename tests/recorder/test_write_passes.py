"""The recorder's half-second pass writes one visit per turn of the event loop: with ten
recorded visits, a pass over all of them at once held every visit's packets for as long
as the whole pass took."""

from __future__ import annotations

import asyncio
from pathlib import Path

from recorder.session import Recordings, VisitRecording
from recorder.signing import RecordingKey
from recorder.tap import RecordingTap
from recorder.track import BATCH_S
from records.archive import Archive
from records.audit import AuditLog
from records.store import Store, connect


class Track:
    """Stands in for a track recorder: says when it was flushed."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def flush(self, now: float) -> None:
        self.log.append(self.name)


def recorded(recordings: Recordings, visit: str, log: list[str]) -> None:
    rec = recordings._visits[visit] = VisitRecording(Path(visit))
    for kind in ("audio", "video"):
        tap = RecordingTap()
        tap.track = Track(f"{visit}-{kind}", log)  # type: ignore[assignment]
        rec.taps.append(tap)


def test_a_pass_lets_the_loop_run_between_visits(tmp_path: Path) -> None:
    db = connect(tmp_path / "visitbridge.db")
    recordings = Recordings(tmp_path / "recordings", RecordingKey.generate(), Archive(db),
                            Store(db), AuditLog(db))
    log: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        for visit in ("a", "b", "c"):
            recorded(recordings, visit, log)

        def packet() -> None:  # as a datagram callback would, every turn of the loop
            if sum(entry != "packet" for entry in log) < 6:
                log.append("packet")
                loop.call_soon(packet)

        recordings._schedule_batches()
        await asyncio.sleep(BATCH_S / 2)
        packet()
        await asyncio.sleep(BATCH_S)
        recordings._visits.clear()
        await recordings.close()

    asyncio.run(scenario())
    passes = [entry for entry in log if entry != "packet"]
    assert sorted(passes) == sorted(f"{v}-{k}" for v in "abc" for k in ("audio", "video"))
    # A visit's tracks are written together; between two visits, packets are handled.
    turns = "".join("." if entry == "packet" else entry[0] for entry in log).strip(".")
    assert sorted(turn for turn in turns.split(".") if turn) == ["aa", "bb", "cc"], log
