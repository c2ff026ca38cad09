"""SegmentWriter: real encoded frames in, files a player decodes out; I/O failures mapped."""

from __future__ import annotations

import errno
import hashlib
import shutil
from pathlib import Path
from typing import BinaryIO

import pytest

from recorder.segments import OPUS_HEAD, RecordingError, segment_writer
from tests.support.files import failing_after
from tests.support.media import H264, OPUS, VP8, Publisher, decode
from tests.support.segments import ORIGIN, frames_of, write_all


@pytest.mark.parametrize(("codec", "suffix", "count"),
                         [(VP8, ".webm", 30), (H264, ".mkv", 30), (OPUS, ".webm", 100)])
def test_segment_plays_with_its_timestamps(tmp_path: Path, codec, suffix: str,
                                           count: int) -> None:
    publisher = Publisher(codec)
    frames = frames_of(publisher, count)
    path = tmp_path / f"segment-00001{suffix}"
    writer = segment_writer(path, codec.mimeType, codec.clockRate)
    write_all(writer, frames)
    info = writer.close()
    assert (info.path, info.first_pts, info.last_pts, info.frames, info.keyframe_first) == \
        (path, ORIGIN, frames[-1][1], count, True)
    assert info.bytes == path.stat().st_size
    if codec is not H264:  # WebM segments are hashed as written: the manifest trusts it
        assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    decoded = decode(path)
    assert decoded.errors == []
    assert decoded.packets == decoded.frames == count
    assert decoded.first_packet_keyframe
    assert decoded.first_s == pytest.approx(ORIGIN / codec.clockRate, abs=0.001)
    if publisher.kind == "video":
        assert decoded.width == 320
    else:
        assert decoded.extradata == OPUS_HEAD  # Chrome plays Opus only with an OpusHead


def test_frames_reach_the_file_while_writing(tmp_path: Path) -> None:
    """Flushed as written: a copy taken mid-segment (what kill -9 leaves) plays up to the
    last finished cluster, about one second back."""
    publisher = Publisher(VP8)
    frames = frames_of(publisher, 45)  # 3 s at 15 fps
    path = tmp_path / "segment-00001.webm"
    writer = segment_writer(path, "video/VP8", 90000)
    write_all(writer, frames)
    shutil.copy(path, tmp_path / "killed.webm")
    decoded = decode(tmp_path / "killed.webm")
    assert decoded.errors == []
    assert decoded.last_s >= frames[-1][1] / 90000 - 1.1
    writer.close()


@pytest.mark.parametrize("codec", [VP8, OPUS])
def test_durable_as_soon_as_the_first_keyframe_is_in_the_file(tmp_path: Path, codec) -> None:
    """The recorder confirms (and media starts to flow) only once a keyframe is on disk:
    WebM segments write their first frame at once, so a recorded visit does not wait."""
    frames = frames_of(Publisher(codec), 3)
    path = tmp_path / "a.webm"
    writer = segment_writer(path, codec.mimeType, codec.clockRate)
    writer.write(*frames[0])
    assert writer.durable
    shutil.copy(path, tmp_path / "killed.webm")
    decoded = decode(tmp_path / "killed.webm")
    assert (decoded.errors, decoded.frames, decoded.first_packet_keyframe) == ([], 1, True)
    writer.close()


def test_h264_is_durable_once_the_first_cluster_is_in_the_file(tmp_path: Path) -> None:
    frames = frames_of(Publisher(H264), 30)  # 2 s at 15 fps
    writer = segment_writer(tmp_path / "a.mkv", "video/H264", 90000)
    durable = []
    for data, pts, keyframe in frames:
        writer.write(data, pts, keyframe)
        durable.append(writer.durable)
    first = durable.index(True)
    assert 1.0 <= (frames[first][1] - ORIGIN) / 90000 <= 1.1
    writer.close()


def test_a_segment_must_start_with_a_keyframe(tmp_path: Path) -> None:
    frames = frames_of(Publisher(VP8), 2)
    writer = segment_writer(tmp_path / "a.webm", "video/VP8", 90000)
    with pytest.raises(ValueError):
        writer.write(frames[1][0], frames[1][1], False)


def test_an_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "segment-00001.webm"
    path.write_bytes(b"evidence")
    frames = frames_of(Publisher(VP8), 1)
    with pytest.raises(RecordingError) as failure:
        write_all(segment_writer(path, "video/VP8", 90000), frames)
    assert failure.value.reason == "io_error"
    assert path.read_bytes() == b"evidence"


@pytest.mark.parametrize(("error", "reason"), [
    (errno.ENOSPC, "disk_full"), (errno.EDQUOT, "disk_full"), (errno.EIO, "io_error"),
    (errno.EROFS, "permission")])
def test_write_failures_become_recording_errors(tmp_path: Path, error: int,
                                                reason: str) -> None:
    frames = frames_of(Publisher(OPUS), 100)
    writer = segment_writer(tmp_path / "a.webm", "audio/opus", 48000,
                           open_file=failing_after(2000, error))
    with pytest.raises(RecordingError) as failure:
        write_all(writer, frames)
    assert failure.value.reason == reason
    writer.abort()


def test_open_failure_is_a_permission_error(tmp_path: Path) -> None:
    def refuse(path: Path) -> BinaryIO:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    writer = segment_writer(tmp_path / "a.webm", "audio/opus", 48000, open_file=refuse)
    with pytest.raises(RecordingError) as failure:
        write_all(writer, frames_of(Publisher(OPUS), 1))
    assert failure.value.reason == "permission"


def test_failure_while_closing_is_reported(tmp_path: Path) -> None:
    """What the writer holds since its last flush is written at close: a full disk then
    must not pass."""
    frames = frames_of(Publisher(OPUS), 30)
    scratch = segment_writer(tmp_path / "scratch.webm", "audio/opus", 48000)
    scratch.write(*frames[0])
    first_bytes = (tmp_path / "scratch.webm").stat().st_size  # the head and first frame
    scratch.close()
    writer = segment_writer(tmp_path / "a.webm", "audio/opus", 48000,
                           open_file=failing_after(first_bytes, errno.ENOSPC))
    for frame in frames:
        writer.write(*frame)  # fits: only the first frame is written before a flush
    with pytest.raises(RecordingError) as failure:
        writer.close()
    assert failure.value.reason == "disk_full"
    writer.abort()
