"""Joining a participant's segments into one indexed file for replay (stream copy only).

Segments stay as the evidence; the final file is a convenience for the compliance
console: audio and video of one party in one WebM with a cue index, so seeking is fast.
Each final file starts at 0; ``offset_s`` says where it sits on the visit's timeline so
the console can play every party in sync.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from recorder.manifest import segment_number
from recorder.vault import Vault


@dataclass(frozen=True)
class FinalFile:
    participant: str
    path: Path
    offset_s: float  # first media time on the visit timeline (0 = the visit's start)
    seconds: float


def participant_tracks(visit_dir: Path) -> dict[str, list[Path]]:
    """participant -> its track folders (``<participant>-audio``, ``<participant>-video``)."""
    found: dict[str, list[Path]] = {}
    for folder in sorted(p for p in visit_dir.iterdir() if p.is_dir()):
        participant, _, kind = folder.name.rpartition("-")
        if participant and kind in ("audio", "video"):
            found.setdefault(participant, []).append(folder)
    return found


def segments_of(track_dir: Path) -> list[Path]:
    files = [p for p in track_dir.iterdir() if segment_number(p.name) is not None]
    return sorted(files, key=lambda p: segment_number(p.name) or 0)


def _packets(files: list[Path], index: int, vault: Vault
             ) -> Iterator[tuple[Fraction, int, av.Packet]]:
    for path in files:
        with av.open(vault.media_input(path.parent.parent.name, path)) as container:
            stream = container.streams[0]
            for packet in container.demux(stream):
                if packet.dts is None or packet.size == 0:
                    continue
                yield packet.dts * stream.time_base, index, packet


def finalize_participant(visit_dir: Path, participant: str, tracks: list[Path],
                         vault: Vault) -> FinalFile:
    """Write ``final/<participant>.webm`` (or .mkv for H.264) from the track segments,
    encrypted like them when the vault encrypts."""
    inputs = [segments_of(t) for t in tracks]
    inputs = [files for files in inputs if files]
    if not inputs:
        raise ValueError(f"no segments for {participant}")
    h264 = any(f.suffix == ".mkv" for files in inputs for f in files)
    out_dir = visit_dir / "final"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{participant}.{'mkv' if h264 else 'webm'}"
    tmp = path.with_name(path.name + ".tmp")
    starts = []
    for files in inputs:
        with av.open(vault.media_input(visit_dir.name, files[0])) as c:
            s = c.streams[0]
            first = next((p.dts for p in c.demux(s) if p.dts is not None), 0)
            starts.append(first * s.time_base)
    origin = min(starts)
    last = origin
    tmp.unlink(missing_ok=True)  # left by a failed attempt
    sink = vault.media_output(visit_dir.name, tmp)
    with av.open(sink, "w", format="matroska" if h264 else "webm") as out:
        streams = []
        for files in inputs:
            with av.open(vault.media_input(visit_dir.name, files[0])) as c:
                streams.append(out.add_stream_from_template(c.streams[0]))
        merged = heapq.merge(*(_packets(files, i, vault) for i, files in enumerate(inputs)),
                             key=lambda item: (item[0], item[1]))
        for when, index, packet in merged:
            stream = streams[index]
            tb = packet.time_base
            shift = int(origin / tb)
            packet.dts -= shift
            packet.pts = packet.dts if packet.pts is None else packet.pts - shift
            packet.stream = stream
            out.mux(packet)
            last = max(last, when)
    if not isinstance(sink, str):
        sink.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return FinalFile(participant, path, float(origin), float(last - origin))


def finalize_visit(visit_dir: Path, vault: Vault) -> list[FinalFile]:
    return [finalize_participant(visit_dir, participant, tracks, vault)
            for participant, tracks in participant_tracks(visit_dir).items()]
