"""Mandatory recording through a real server: lossy links, SIGKILL, full disks, privilege."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import time
from pathlib import Path

import av
import pytest

from auth.tokens import VisitClaim
from recorder.track import BATCH_S
from records.dialect import open_database
from tests.support.postgres import server_database
from tests.support.recording import cancel, cli, wait_sealed
from tests.support.server import (
    BLUE,
    RED,
    Participant,
    in_visit,
    inmate_and_family,
    make_server,
    participants,
    running_server,
    start,
    stop,
    visit_now,
)

VIDEO_FPS = 30  # support.ColourTrack
CRASH_LOSS_S = 0.5  # docs/recording.md
FRAME_S = {"video": 1 / VIDEO_FPS, "audio": 0.020}  # support.ToneTrack: 20 ms


def drop_outgoing(participant: Participant, ratio: float, seed: int) -> None:
    """A lossy uplink: drop ``ratio`` of this participant's outgoing RTP (not RTCP)."""
    assert participant.pc is not None
    rng = random.Random(seed)
    transport = participant.pc.getTransceivers()[0].sender.transport
    send = transport._send_rtp

    async def lossy(data: bytes) -> None:
        is_rtcp = len(data) > 1 and 192 <= data[1] <= 223
        if not is_rtcp and rng.random() < ratio:
            return
        await send(data)

    transport._send_rtp = lossy  # type: ignore[method-assign]


def decode_all(path: Path) -> tuple[float, int, int]:
    """(seconds, frames, errors) decoding every stream of a file with PyAV."""
    frames = errors = 0
    first = last = None
    with av.open(str(path)) as container:
        for stream in container.streams:
            stream.thread_type = "AUTO"
        for packet in container.demux():
            if packet.pts is not None:
                t = float(packet.pts * packet.time_base)
                first = t if first is None else min(first, t)
                last = t if last is None else max(last, t)
            try:
                frames += len(packet.decode())
            except av.error.FFmpegError:
                errors += 1
    return (last - first) if first is not None else 0.0, frames, errors


@pytest.mark.solo  # the recorded length against the time that passed
async def test_lossy_visit_records_clean_files_of_the_right_length(tmp_path: Path) -> None:
    with running_server(tmp_path, VISITBRIDGE_SEGMENT_S="2") as server:
        visit = visit_now("rec-loss")
        inmate, family = inmate_and_family(server, visit, "l")
        async with in_visit(inmate, family):
            drop_outgoing(inmate, 0.02, seed=1)
            drop_outgoing(family, 0.02, seed=2)
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
            live_from = time.time()
            await asyncio.sleep(4)  # segments of 2 s: each file joins two or more
            await cancel(server, "rec-loss")
            live_seconds = time.time() - live_from
        await wait_sealed(server, "rec-loss")
        folder = tmp_path / "recordings" / "rec-loss"
        for who in ("inmate-l", "family-l"):
            seconds, frames, errors = decode_all(folder / "final" / f"{who}.webm")
            assert errors == 0, who
            assert frames > 0
            # Media flowed from before live_from, so the file is at least as long.
            assert live_seconds - 1.0 <= seconds <= live_seconds + 3.0, (who, seconds)
        result = cli(server, "recordings", "verify", "rec-loss")
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.solo  # what a kill loses, counted in real time
async def test_sigkill_loses_at_most_one_batch_of_each_track(tmp_path: Path) -> None:
    server = start(make_server(tmp_path, VISITBRIDGE_SEGMENT_S="2"))
    now = int(time.time())
    visit = VisitClaim(id="rec-kill", starts_at=now - 2, ends_at=now + 8)
    inmate, family = inmate_and_family(server, visit, "k")
    try:
        async with in_visit(inmate, family):
            await family.wait_for(lambda: family.video_from(0).frames >= 10, 15)
            await asyncio.sleep(3)  # into the second 2 s segment
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            killed_at = time.time()
            server.process.wait()
            assert killed_at < visit.ends_at - 1, "killed too late: the visit was ending"
        await asyncio.sleep(max(0.0, visit.ends_at + 1 - time.time()))
        start(server)  # same data dir and port: recovery runs at start-up
        seal = await wait_sealed(server, "rec-kill")
        assert seal
        folder = tmp_path / "recordings" / "rec-kill"
        manifest = (folder / "manifest.jsonl").read_text()
        assert '"type":"recovered"' in manifest
        for who in ("inmate-k", "family-k"):
            _, _, errors = decode_all(folder / "final" / f"{who}.webm")
            assert errors == 0
            for kind in ("audio", "video"):
                # Segment timestamps are on the visit's timeline, which counts from its
                # booked start in wall-clock time: the last recorded frame arrived at
                # about starts_at + its pts, and everything after it was lost. The docs
                # promise at most half a second (one recorder batch) and the frame in
                # flight.
                last = max(last_pts_s(p) for p in (folder / f"{who}-{kind}").iterdir())
                lost = killed_at - (visit.starts_at + last)
                assert lost <= CRASH_LOSS_S + FRAME_S[kind], (who, kind, lost)
        result = cli(server, "recordings", "verify", "rec-kill")
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        stop(server)


def last_pts_s(path: Path) -> float:
    """Seconds on the visit's timeline of the last frame in a segment file."""
    with av.open(str(path)) as container:
        return max((float(p.pts * p.time_base) for p in container.demux()
                    if p.pts is not None and p.size), default=0.0)


async def test_full_disk_ends_the_visit_and_nothing_unrecorded_was_forwarded(
        tmp_path: Path, small_volume: Path) -> None:
    with running_server(tmp_path / "data", VISITBRIDGE_RECORDINGS_PATH=str(small_volume),
                        VISITBRIDGE_RECORDINGS_MIN_FREE_MB="0") as server:
        visit = visit_now("rec-full")
        inmate, family = inmate_and_family(server, visit, "f", noise=True)
        async with in_visit(inmate, family):
            await family.wait_for(
                lambda: any(e["type"] == "ended" for e in family.events), 60)
            ended = next(e for e in family.events if e["type"] == "ended")
            assert ended["cause"] == "recording_failed"
            failed_at = time.time()
            received = {"family": family.video_from(0).frames,
                        "inmate": inmate.video_from(1).frames}
        await asyncio.sleep(0.5)
        folder = small_volume / "rec-full"
        for who, viewer in (("inmate-f", "family"), ("family-f", "inmate")):
            recorded = 0
            for segment in sorted((folder / f"{who}-video").glob("segment-*.webm")):
                try:
                    _, frames, _ = decode_all(segment)
                except av.error.FFmpegError:
                    frames = 0
                recorded += frames
            # Every picture the other party saw is in the recording but for one recorder
            # batch (BATCH_S of media, written at once: 15 frames at 30 fps) and the frame
            # in flight when the write failed.
            unrecorded = math.ceil(BATCH_S * VIDEO_FPS) + 1
            assert received[viewer] <= recorded + unrecorded, (who, received[viewer], recorded)
        assert failed_at  # the visit ended on the failure, not by its slot
        # The visit ended within 2 s of the failed write (the server's own log times).
        logged = [json.loads(line) for line in server.log_text().splitlines()
                  if line.startswith("{")]
        failure = next(r["ts"] for r in logged if r["msg"] == "recording failed")
        ending = next(r["ts"] for r in logged if r["msg"] == "visit ending")
        assert 0 <= ending - failure <= 2.0, (failure, ending)


async def test_new_visits_refused_while_the_recordings_volume_is_low(tmp_path: Path) -> None:
    # More free space required than any disk has: recording is "unavailable".
    with running_server(tmp_path, VISITBRIDGE_RECORDINGS_MIN_FREE_MB=str(1 << 40)) as server:
        family = Participant(server, server.token("family-u", "family", visit_now("rec-low")),
                             publish=False)
        attorney = Participant(server, server.token(
            "attorney-u", "attorney", visit_now("rec-priv", privileged=True)), publish=False)
        async with participants(family, attorney):
            refused = await family.join()
            assert refused["code"] == "recording_unavailable"
            assert family.close_code == 4012
            # A privileged visit is never recorded, so it does not need the volume.
            assert (await attorney.join())["type"] == "joined"
    db = open_database(server_database(tmp_path))
    rows = [tuple(r) for r in db.execute("SELECT action, visit, outcome, reason FROM audit")]
    assert ("join", "rec-low", "refused", "recording_unavailable") in rows
    skipped = [r for r in rows if r[0] == "recording_skipped"]
    assert skipped and skipped[0][1] == "rec-priv" and "not recorded" in skipped[0][3]
    assert not (tmp_path / "recordings" / "rec-priv").exists()


async def test_privileged_visit_carries_media_both_ways_and_writes_nothing(
        tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        visit = visit_now("rec-priv-media", privileged=True)
        inmate = Participant(server, server.token("inmate-p", "inmate", visit), RED)
        attorney = Participant(server, server.token("attorney-p", "attorney", visit), BLUE)
        async with in_visit(inmate, attorney):
            assert not inmate.events[0]["visit"]["recorded"]
            for party in (inmate, attorney):
                await party.wait_for(lambda p=party: min(received(p)) >= 30, 15)
            before = {p: received(p) for p in (inmate, attorney)}
            await asyncio.sleep(2)
            for party in (inmate, attorney):  # two seconds of pictures and sound, each way
                video, audio = received(party)  # of 60 frames of video, 100 of sound
                assert video - before[party][0] >= 40 and audio - before[party][1] >= 60, (
                    before[party], (video, audio))
            assert not any(e["type"] == "recording" for e in inmate.events + attorney.events)
        await asyncio.sleep(1)  # a recorder would flush, seal and finalize by now
        media = [p for p in tmp_path.rglob("*") if p.suffix in (".webm", ".mkv", ".jsonl")]
        assert media == [], media
        recordings = tmp_path / "recordings"
        assert not recordings.exists() or not any(recordings.iterdir())
        db = open_database(server_database(tmp_path))
        assert db.execute("SELECT COUNT(*) FROM recordings").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM audit WHERE action = 'recording_skipped' "
                          "AND visit = 'rec-priv-media'").fetchone()[0] == 1
        db.close()


def received(party: Participant) -> tuple[int, int]:
    """(video, audio) frames this party decoded from the other party."""
    return (sum(r.frames for r in party.video.values()),
            sum(r.frames for r in party.audio.values()))
