"""TrackRecorder end to end: a simulated visit's real RTP in, segment files a player decodes
out, with loss, a killed process, a full disk and the ready/fail-closed signals."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import BinaryIO

import pytest
from aiortc.rtp import RtpPacket

from recorder.segments import SegmentInfo, open_segment_file
from recorder.track import BATCH_S, TrackRecorder
from tests.support.clock import FakeClock
from tests.support.files import failing_after
from tests.support.media import H264, OPUS, VP8, Network, Publisher, concatenate, decode, run

SECONDS = 25.0
VIDEO_START = 0.5  # the camera starts after the microphone, as in a browser
AUDIO_START = 0.2
DELAY = 0.03  # network delay used by Network()


@dataclass
class Visit:
    """Two tracks of one participant recorded with a fake clock; what the callbacks saw."""

    directory: Path
    clock: FakeClock
    publishers: dict[str, Publisher]
    recorders: dict[str, TrackRecorder] = field(default_factory=dict)
    segments: dict[str, list[SegmentInfo]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    ready_at: dict[str, float] = field(default_factory=dict)
    requests: list[float] = field(default_factory=list)
    closed: dict[str, list[SegmentInfo]] = field(default_factory=dict)

    @property
    def epoch(self) -> float:
        return 1_000_000.0

    def elapsed(self) -> float:
        return self.clock.now - self.epoch


def start_visit(directory: Path, publishers: dict[str, Publisher], *, segment_s: float = 10.0,
                open_file: Callable[[Path], BinaryIO] | None = None,
                on_ready: Callable[[str], None] | None = None) -> Visit:
    visit = Visit(directory, FakeClock(1_000_000.0), publishers)
    for name, publisher in publishers.items():
        visit.segments[name] = []

        def request(publisher: Publisher = publisher) -> None:
            visit.requests.append(visit.elapsed())
            publisher.request_keyframe()

        def ready(name: str = name) -> None:
            visit.ready_at[name] = visit.elapsed()
            if on_ready is not None:
                on_ready(name)

        codec = publisher.codec
        visit.recorders[name] = TrackRecorder(
            directory, name, publisher.kind, codec.mimeType, codec.clockRate,
            epoch=visit.epoch, segment_s=segment_s, request_keyframe=request,
            on_ready=ready, on_segment=visit.segments[name].append,
            on_failure=lambda reason, name=name: visit.failures.append((name, reason)),
            clock=visit.clock, open_file=open_file)
    return visit


def feed(visit: Visit, seconds: float, network: Network | None = None) -> None:
    """Packets in arrival order; every BATCH_S of arrivals, all recorders are flushed in
    one pass, as the server's batch timer does (recorder.session)."""
    due = visit.clock.now + BATCH_S

    def taker(recorder: TrackRecorder) -> Callable[[RtpPacket, float], None]:
        def take(packet: RtpPacket, now: float) -> None:
            nonlocal due
            if now >= due:
                for each in visit.recorders.values():
                    each.flush(now)
                due = now + BATCH_S
            recorder.packet(packet, now)
        return take

    run([(visit.publishers[name], taker(recorder))
         for name, recorder in visit.recorders.items()], seconds, visit.clock, network)


def close(visit: Visit) -> Visit:
    for name, recorder in visit.recorders.items():
        visit.closed[name] = recorder.close()
    return visit


def participant(video_codec=VP8, **video: object) -> dict[str, Publisher]:
    return {"video": Publisher(video_codec, start=VIDEO_START, **video),  # type: ignore[arg-type]
            "audio": Publisher(OPUS, start=AUDIO_START)}


@pytest.fixture(scope="module")
def visit(tmp_path_factory: pytest.TempPathFactory) -> Visit:
    """25 s of 320x240 VP8 + Opus, no loss, 10 s segments."""
    visit = start_visit(tmp_path_factory.mktemp("visit"), participant())
    feed(visit, SECONDS)
    return close(visit)


def test_every_segment_decodes_cleanly_and_starts_on_a_keyframe(visit: Visit) -> None:
    assert visit.failures == []
    for name in ("video", "audio"):
        paths = sorted((visit.directory / name).iterdir())
        assert [p.name for p in paths] == [f"segment-0000{i}.webm" for i in (1, 2, 3)]
        assert visit.closed[name] == visit.segments[name]
        assert [s.path for s in visit.segments[name]] == paths
        for info in visit.segments[name]:
            decoded = decode(info.path)
            assert decoded.errors == []
            assert decoded.first_packet_keyframe and info.keyframe_first
            assert decoded.packets == decoded.frames == info.frames
            assert info.bytes == info.path.stat().st_size


def test_segments_are_about_ten_seconds_with_a_keyframe_asked_for_in_time(
        visit: Visit) -> None:
    video = [s.first_pts / 90000 for s in visit.segments["video"]]
    audio = [s.first_pts / 48000 for s in visit.segments["audio"]]
    # Video is cut at the first keyframe once 9 s (segment_s - 1 s) have passed, and the
    # keyframe is requested then: when the batch holding that frame is recorded, up to
    # BATCH_S and a frame interval (1/15 s here) later. This publisher answers on its
    # next frame.
    frame = 1 / 15
    assert all(9.0 <= b - a <= 9.0 + BATCH_S + 2 * frame for a, b in pairwise(video))
    assert all(b - a == pytest.approx(10.0, abs=0.02) for a, b in pairwise(audio))
    # One request for the first keyframe, then one per cut, each ~1 s before 10 s.
    assert visit.requests[0] == pytest.approx(VIDEO_START + DELAY, abs=0.01)
    cuts = [t - s for t, s in zip(visit.requests[1:], video[:-1], strict=True)]
    assert len(cuts) == 2 and all(9.0 <= c <= 9.0 + BATCH_S + frame for c in cuts)


def test_recording_covers_what_was_fed_on_the_visit_timeline(visit: Visit) -> None:
    for name, start, rate in (("video", VIDEO_START, 90000), ("audio", AUDIO_START, 48000)):
        segments = visit.segments[name]
        first_s = segments[0].first_pts / rate
        last_s = segments[-1].last_pts / rate
        # pts 0 is the recording epoch: each track starts where its first packet arrived.
        assert first_s == pytest.approx(start + DELAY, abs=0.002)
        assert abs((last_s - first_s) - (SECONDS - start)) < 1.0
        publisher = visit.publishers[name]
        assert sum(s.frames for s in segments) == publisher.frames_sent


def test_pts_continue_across_segments_and_a_stream_copy_join_plays_end_to_end(
        visit: Visit, tmp_path: Path) -> None:
    for name, step in (("video", 6000), ("audio", 960)):
        segments = visit.segments[name]
        for before, after in pairwise(segments):
            assert abs(after.first_pts - before.last_pts - step) <= 1  # no gap, no overlap
        joined = tmp_path / f"{name}.webm"
        concatenate([s.path for s in segments], joined)
        decoded = decode(joined)
        assert decoded.errors == []
        assert decoded.frames == sum(s.frames for s in segments)
        rate = 90000 if name == "video" else 48000
        assert decoded.first_s == pytest.approx(segments[0].first_pts / rate, abs=0.001)
        assert decoded.last_s == pytest.approx(segments[-1].last_pts / rate, abs=0.001)


def test_ready_once_the_first_keyframe_has_reached_the_file(visit: Visit) -> None:
    # A segment's first frame is written at once: audio is ready with its first packet,
    # video with the first keyframe (the publisher's first frame here).
    assert set(visit.ready_at) == {"video", "audio"}
    assert visit.ready_at["video"] == pytest.approx(VIDEO_START + DELAY, abs=0.05)
    assert visit.ready_at["audio"] == pytest.approx(AUDIO_START + DELAY, abs=0.01)


def test_ready_is_not_signalled_before_a_keyframe_is_in_the_file(tmp_path: Path) -> None:
    video = Publisher(VP8)
    checked: list[int] = []

    def on_ready(name: str) -> None:
        # What the SFU may rely on when media starts to flow: the file plays.
        path = tmp_path / name / "segment-00001.webm"
        shutil.copy(path, tmp_path / f"{name}-at-ready.webm")
        decoded = decode(tmp_path / f"{name}-at-ready.webm")
        assert decoded.errors == [] and decoded.first_packet_keyframe
        checked.append(decoded.frames)

    visit = start_visit(tmp_path, {"video": video}, on_ready=on_ready)
    recorder = visit.recorders["video"]
    # Joined mid-stream: the publisher's first keyframe went by before the recorder
    # attached, then come delta frames (a browser sends no keyframe until asked).
    frames = video.frames()
    early = [next(frames) for _ in range(6)][1:]
    for send_time, packets in early:
        for packet in packets:
            recorder.packet(packet, visit.clock.now + send_time)
        assert not recorder.ready
    assert len(visit.requests) == 1  # asked at the first packet (then every 0.5 s)
    assert not (tmp_path / "video").exists()  # nothing written before a keyframe
    feed(visit, 3.0)
    assert recorder.ready and checked and checked[0] >= 1
    close(visit)


def test_once_ready_packets_wait_for_the_owners_flush(tmp_path: Path) -> None:
    """What a crash can cost is what the owner has not flushed: nothing is written
    between flushes, and a flush writes every frame taken since the last one."""
    visit = start_visit(tmp_path, {"audio": Publisher(OPUS)})
    recorder = visit.recorders["audio"]
    path = tmp_path / "audio" / "segment-00001.webm"

    def send(frames: int) -> float:
        for send_time, packets in [next(stream) for _ in range(frames)]:
            for packet in packets:
                recorder.packet(packet, visit.clock.now + send_time)
        return visit.clock.now + send_time

    stream = visit.publishers["audio"].frames()
    send(1)
    assert recorder.ready and decode(path).frames == 1  # written at once: ready
    size = path.stat().st_size
    now = send(24)  # 20 ms frames: the rest of a half-second batch
    assert path.stat().st_size == size
    recorder.flush(now)
    assert decode(path).frames == 25
    close(visit)


def test_two_percent_packet_loss_still_decodes_without_errors(tmp_path: Path) -> None:
    visit = start_visit(tmp_path, participant())
    network = Network(loss=0.02, duplicate=0.01, seed=7)
    feed(visit, 12.0, network)
    close(visit)
    assert network.lost > 20 and visit.failures == []
    assert len(visit.requests) > 3  # frames after each loss wait for a requested keyframe
    for name in ("video", "audio"):
        recorded = 0
        for info in visit.segments[name]:
            decoded = decode(info.path)
            assert decoded.errors == [] and decoded.first_packet_keyframe
            recorded += decoded.frames
        sent = visit.publishers[name].frames_sent
        assert 0.5 * sent < recorded < sent  # some frames dropped, most kept


def test_killed_mid_segment_the_file_plays_all_but_the_last_second(tmp_path: Path) -> None:
    visit = start_visit(tmp_path, participant(), segment_s=60.0)
    feed(visit, 6.0)
    for name, start in (("video", VIDEO_START), ("audio", AUDIO_START)):
        # kill -9 now: copy what is on disk before anything is closed
        killed = tmp_path / f"{name}-killed.webm"
        shutil.copy(tmp_path / name / "segment-00001.webm", killed)
        decoded = decode(killed)
        assert decoded.errors == [] and decoded.first_packet_keyframe
        assert decoded.first_s == pytest.approx(start + DELAY, abs=0.002)
        assert decoded.last_s >= 6.0 - 1.1
    close(visit)


def test_a_full_disk_is_reported_once_and_packet_never_raises(tmp_path: Path) -> None:
    def open_file(path: Path) -> BinaryIO:  # the video file hits a full disk after 60 kB
        if path.parent.name == "video":
            return failing_after(60_000, errno.ENOSPC)(path)
        return open_segment_file(path)

    visit = start_visit(tmp_path, participant(), open_file=open_file)
    feed(visit, 5.0)
    assert visit.failures == [("video", "disk_full")]
    assert visit.ready_at.keys() == {"video", "audio"}  # the failure came after ready
    video = visit.recorders["video"]
    size = (tmp_path / "video" / "segment-00001.webm").stat().st_size
    feed(visit, 7.0)  # more packets after the failure: ignored, nothing raised
    assert (tmp_path / "video" / "segment-00001.webm").stat().st_size == size
    assert video.close() == [] and visit.segments["video"] == []
    assert visit.failures == [("video", "disk_full")]  # exactly once
    close(visit)
    assert len(visit.segments["audio"]) == 1


@pytest.mark.parametrize(("error", "reason"), [(errno.EACCES, "permission"),
                                                (errno.EIO, "io_error")])
def test_a_file_that_cannot_be_written_fails_before_ready(tmp_path: Path, error: int,
                                                          reason: str) -> None:
    visit = start_visit(tmp_path, {"audio": Publisher(OPUS)},
                        open_file=failing_after(0, error))
    feed(visit, 2.0)
    assert visit.failures == [("audio", reason)]
    assert visit.ready_at == {} and not visit.recorders["audio"].ready
    close(visit)
    assert visit.failures == [("audio", reason)]


def test_a_failing_segment_hook_fails_closed(tmp_path: Path) -> None:
    visit = start_visit(tmp_path, {"audio": Publisher(OPUS)}, segment_s=2.0)

    def refuse(info: SegmentInfo) -> None:
        raise RuntimeError("manifest unavailable")

    visit.recorders["audio"]._on_segment = refuse
    feed(visit, 5.0)
    assert visit.failures == [("audio", "internal_error")]


def test_h264_is_recorded_to_matroska(tmp_path: Path) -> None:
    visit = start_visit(tmp_path, participant(H264), segment_s=4.0)
    feed(visit, 5.0)
    close(visit)
    segments = visit.segments["video"]
    assert [s.path.name for s in segments] == ["segment-00001.mkv", "segment-00002.mkv"]
    for info in segments:
        decoded = decode(info.path)
        assert decoded.errors == [] and decoded.first_packet_keyframe and decoded.width == 320


def test_media_missing_from_the_recording_is_reported_as_a_gap(tmp_path: Path) -> None:
    """A publisher silent for 2 s (or packets lost for 2 s) is a 2 s gap, counted."""

    gaps: list[float] = []
    recorder = TrackRecorder(
        tmp_path, "audio", "audio", "audio/opus", 48000, epoch=0.0,
        request_keyframe=lambda: None, on_ready=lambda: None, on_segment=lambda info: None,
        on_failure=lambda reason: None, on_gap=gaps.append, clock=lambda: 0.0)
    silence = b"\xfc\xff\xfe"  # an Opus frame (the recorder never decodes it)
    for i in [*range(100), *range(200, 300)]:  # packets 100-199 (2 s) never arrive
        recorder.packet(RtpPacket(payload_type=111, sequence_number=i, timestamp=960 * i,
                                  ssrc=1, payload=silence, marker=0), i * 0.02)
    recorder.close()
    assert len(gaps) == 1 and abs(gaps[0] - 2.02) < 0.01, gaps
