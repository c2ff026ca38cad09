"""Recorder benchmark: CPU per visit-hour of recording, against a transcoding baseline.

    python -m benchmarks.recorder --parties 2 --seconds 120 [--results FILE]

One visit of ``--parties`` parties, each publishing a VP8 video track and an Opus audio
track for ``--seconds`` of media. Every RTP packet is made up front from the pre-encoded
clips of benchmarks/media.py (aiortc's packetizers, random first sequence numbers,
timestamps and picture ids, marker bits, arrival times with network delay, jitter and
pacing on a fake clock), then fed in arrival order to real ``TrackRecorder`` instances
that write real 10 s WebM segments into a temporary directory; closed segments are
hashed and signed into a real ``Manifest`` (Ed25519 key made for the run), and at the
end the visit is finalized (``finalize_visit``) and the manifest sealed, as
recorder/session.py does. Nothing sleeps and nothing reads the real time.

Measured (``time.process_time``, this process, user + system):

- the recorder path: assembly, muxing, fsync, hashing, signing, finalize and seal;
- a baseline, in the same run on the same packets: what a transcoding recorder (aiortc's
  ``MediaRecorder`` approach) must at least do: decode every video and audio frame with
  PyAV (one thread per codec) and encode it again (libvpx real-time at the clip's
  bitrate, libopus stereo likewise). It neither reassembles with loss handling, nor
  muxes, nor writes, nor signs: a lower bound for a transcoding recorder.

Afterwards the recording is checked, outside the measurement: every segment decodes with
zero errors and holds every frame that was fed, the final files hold every frame, and
the manifest verifies against the key with the seal. Prints one JSON line and appends
it, with the run's context, to benchmarks/results/recorder.jsonl (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import fractions
import gc
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from aiortc import RTCRtpCodecParameters
from aiortc.codecs import get_encoder
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RtpPacket

from recorder.finalize import finalize_visit
from recorder.manifest import Manifest
from recorder.segments import SegmentInfo, sync_segment
from recorder.signing import RecordingKey
from recorder.track import BATCH_S, TrackRecorder
from recorder.verify import verify_visit
from tests.support.media import decode

from .measure import append_result, run_info
from .media import EncodedClip, encode_opus, encode_vp8

RESULTS = Path(__file__).resolve().parent / "results" / "recorder.jsonl"
VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2,
                             payloadType=111)
SEGMENT_S = 10.0  # the server's default (recorder/session.py)
EPOCH = 1_700_000_000.0  # the visit's booked start on the fake wall clock
NETWORK_DELAY_S = 0.03
JITTER_S = 0.004  # per frame, uniform: less than a frame interval, so no reordering
PACING_S = 0.0003  # between the packets of one frame, as a sender's pacer spreads them
AUDIO_START_S = 0.2  # the microphone starts before the camera, as in a browser
VIDEO_START_S = 0.5
PARTY_STAGGER_S = 0.05


@dataclass
class Track:
    """One published track: its packets, made once, with their arrival times."""

    party: str
    kind: str
    codec: RTCRtpCodecParameters
    frames: int = 0
    packets: list[tuple[float, RtpPacket]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.party}-{self.kind}"


class FakeClock:
    """The SFU's clock and the wall clock in one: it follows the packets' arrivals."""

    def __init__(self) -> None:
        self.now = EPOCH

    def __call__(self) -> float:
        return self.now


def party_names(count: int) -> list[str]:
    return ["inmate"] + [f"visitor{n}" for n in range(1, count)]


def packetize(party: str, clip: EncodedClip, codec: RTCRtpCodecParameters, seconds: float,
              start: float, rng: random.Random) -> Track:
    """``seconds`` of the looping clip as the browser of ``party`` would send it."""
    track = Track(party, clip.kind, codec)
    encoder = get_encoder(codec)  # aiortc's packetizer (``pack``), as RTCRtpSender uses it
    if hasattr(encoder, "picture_id"):
        encoder.picture_id = rng.randrange(1 << 15)
    time_base = fractions.Fraction(1, clip.clock)
    seq = rng.randrange(1 << 16)
    first_ts = rng.randrange(1 << 32)
    ssrc = rng.randrange(1, 1 << 32)
    video = clip.kind == "video"
    track.frames = round(seconds / clip.frame_seconds)
    for n in range(track.frames):
        source = clip.packets[n % len(clip.packets)]
        packet = av.Packet(bytes(source))
        packet.pts = n * clip.ticks_per_frame
        packet.time_base = time_base
        payloads, ts = encoder.pack(packet)
        sent = start + n * clip.frame_seconds
        arrival = sent + NETWORK_DELAY_S + rng.uniform(0.0, JITTER_S)
        for i, payload in enumerate(payloads):
            # Video: marker on a frame's last packet. Opus: marker on the first packet of
            # a talk spurt, here the first one (no DTX), as browsers do.
            marker = (i == len(payloads) - 1) if video else n == 0
            track.packets.append((arrival + i * PACING_S, RtpPacket(
                payload_type=codec.payloadType, marker=int(marker), sequence_number=seq,
                timestamp=(first_ts + ts) & 0xFFFFFFFF, ssrc=ssrc, payload=payload)))
            seq = (seq + 1) & 0xFFFF
    return track


def make_visit(parties: int, seconds: float, video: EncodedClip, audio: EncodedClip,
               seed: int = 1) -> tuple[list[Track], list[tuple[float, int, RtpPacket]]]:
    """Every track of the visit and one schedule of all their packets in arrival order."""
    rng = random.Random(seed)
    tracks: list[Track] = []
    for index, party in enumerate(party_names(parties)):
        offset = index * PARTY_STAGGER_S
        tracks.append(packetize(party, video, VP8, seconds, VIDEO_START_S + offset, rng))
        tracks.append(packetize(party, audio, OPUS, seconds, AUDIO_START_S + offset, rng))
    schedule = sorted(((arrival, index, packet) for index, track in enumerate(tracks)
                       for arrival, packet in track.packets), key=lambda item: item[:2])
    return tracks, schedule


# -- the recorder path ------------------------------------------------------------------


def run_recorder(tracks: list[Track], schedule: list[tuple[float, int, RtpPacket]],
                 visit_dir: Path, key: RecordingKey) -> dict[str, Any]:
    """Feed every packet to real TrackRecorders; close, finalize and seal. CPU-timed."""
    clock = FakeClock()
    failures: list[tuple[str, str]] = []
    ready: set[str] = set()
    keyframe_requests: dict[str, int] = defaultdict(int)
    segments: dict[str, list[SegmentInfo]] = defaultdict(list)
    manifest_cpu = 0.0

    gc.collect()
    cpu0, wall0 = time.process_time(), time.monotonic()
    manifest = Manifest.open(visit_dir, key, clock)
    recorders: list[TrackRecorder] = []
    for track in tracks:
        name, clock_rate = track.name, track.codec.clockRate

        def on_segment(info: SegmentInfo, name: str = name, clock_rate: int = clock_rate
                       ) -> None:  # what Recordings.tap's on_segment does, timed apart
            nonlocal manifest_cpu
            started = time.process_time()
            sync_segment(info.path)
            manifest.append_segment({"track": name, "path": info.path,
                                     "first_pts": info.first_pts, "last_pts": info.last_pts,
                                     "time_base": f"1/{clock_rate}", "sha256": info.sha256,
                                     "bytes": info.bytes})
            manifest_cpu += time.process_time() - started
            segments[name].append(info)

        def on_failure(reason: str, name: str = name) -> None:
            failures.append((name, reason))

        def request_keyframe(name: str = name) -> None:
            keyframe_requests[name] += 1

        recorders.append(TrackRecorder(
            visit_dir, name, track.kind, track.codec.mimeType, clock_rate,
            epoch=EPOCH, segment_s=SEGMENT_S, request_keyframe=request_keyframe,
            on_ready=lambda name=name: ready.add(name), on_segment=on_segment,
            on_failure=on_failure, clock=clock))
    due = EPOCH + BATCH_S
    for arrival, index, packet in schedule:
        clock.now = EPOCH + arrival
        if clock.now >= due:  # the server's batch timer (recorder.session)
            for recorder in recorders:
                recorder.flush(clock.now)
            due = clock.now + BATCH_S
        recorders[index].packet(packet, clock.now)
    for recorder in recorders:
        recorder.close()
    cpu1 = time.process_time()
    finals = finalize_visit(visit_dir)
    cpu2 = time.process_time()
    seal = manifest.seal({"finals": {f.participant: round(f.offset_s, 3) for f in finals},
                          "recovered": False})
    cpu3, wall3 = time.process_time(), time.monotonic()
    return {
        "cpu_s": cpu3 - cpu0, "wall_s": wall3 - wall0,
        "ingest_cpu_s": cpu1 - cpu0 - manifest_cpu,  # assembly + muxing
        "manifest_cpu_s": manifest_cpu,  # segment fsync + hashing + signing + manifest fsync
        "finalize_cpu_s": cpu2 - cpu1, "seal_cpu_s": cpu3 - cpu2,
        "seal": seal, "finals": finals, "segments": segments, "failures": failures,
        "ready": ready, "keyframe_requests": dict(keyframe_requests),
    }


# -- the transcoding baseline -----------------------------------------------------------


class Transcoder:
    """Decode one track's frames and encode them again, as a transcoding recorder must."""

    def __init__(self, track: Track, bitrate_bps: int, gop: int) -> None:
        self.video = track.kind == "video"
        self.time_base = fractions.Fraction(1, track.codec.clockRate)
        self.parts: list[bytes] = []
        self.first_ts: int | None = None
        self.frames_in = self.frames_decoded = self.bytes_out = 0
        self._bitrate = bitrate_bps
        self._gop = gop
        self.decoder = av.CodecContext.create("libvpx" if self.video else "libopus", "r")
        self.decoder.thread_count = 1
        if not self.video:  # aiortc's OpusDecoder settings
            self.decoder.format = "s16"
            self.decoder.layout = "stereo"
            self.decoder.sample_rate = 48_000
        self.encoder: Any = None

    def packet(self, packet: RtpPacket) -> None:
        # Depayload as aiortc's receiver does: VP8 frames end at the marker bit.
        self.parts.append(vp8_depayload(packet.payload) if self.video else packet.payload)
        if self.video and not packet.marker:
            return
        data, self.parts = b"".join(self.parts), []
        if self.first_ts is None:
            self.first_ts = packet.timestamp
        encoded = av.Packet(data)
        encoded.pts = (packet.timestamp - self.first_ts) & 0xFFFFFFFF
        encoded.time_base = self.time_base
        self.frames_in += 1
        for frame in self.decoder.decode(encoded):
            self.frames_decoded += 1
            self._encode(frame)

    def _encode(self, frame: Any) -> None:
        if self.encoder is None:
            self.encoder = self._open_encoder(frame)
        for out in self.encoder.encode(frame):
            self.bytes_out += out.size

    def flush(self) -> None:
        for frame in self.decoder.decode(None):
            self.frames_decoded += 1
            self._encode(frame)
        if self.encoder is not None:
            for out in self.encoder.encode(None):
                self.bytes_out += out.size

    def _open_encoder(self, frame: Any) -> Any:
        bitrate = str(self._bitrate)
        if self.video:
            # The cheapest real-time libvpx setting (benchmarks/media.py's, CBR at the
            # clip's bitrate, the clip's GOP): MediaRecorder's own defaults cost more.
            encoder = av.CodecContext.create("libvpx", "w")
            encoder.width, encoder.height = frame.width, frame.height
            encoder.pix_fmt = "yuv420p"
            encoder.time_base = self.time_base
            encoder.framerate = fractions.Fraction(30, 1)
            encoder.gop_size = self._gop
            encoder.qmin, encoder.qmax = 2, 56
            encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                               "minrate": bitrate, "maxrate": bitrate, "bufsize": bitrate}
        else:
            encoder = av.CodecContext.create("libopus", "w")
            encoder.sample_rate = 48_000
            encoder.layout = "stereo"
            encoder.format = "s16"
            encoder.time_base = fractions.Fraction(1, 48_000)
            # Constrained VBR: plain VBR overshoots the target by a third on this tone.
            encoder.options = {"application": "voip", "frame_duration": "20",
                               "vbr": "constrained"}
        encoder.bit_rate = self._bitrate
        encoder.thread_count = 1
        return encoder


def run_baseline(tracks: list[Track], schedule: list[tuple[float, int, RtpPacket]],
                 video: EncodedClip, audio: EncodedClip) -> dict[str, Any]:
    """The same packets, in the same order, through decode + re-encode. CPU-timed."""
    gop = video.keyframes[1] - video.keyframes[0] if len(video.keyframes) > 1 else 3000
    gc.collect()
    cpu0, wall0 = time.process_time(), time.monotonic()
    coders = [Transcoder(t, round((video if t.kind == "video" else audio).bitrate_bps), gop)
              for t in tracks]
    for _, index, packet in schedule:
        coders[index].packet(packet)
    for coder in coders:
        coder.flush()
    cpu1, wall1 = time.process_time(), time.monotonic()
    return {"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "coders": coders}


# -- checking the recording -------------------------------------------------------------


def count_packets(path: Path) -> list[int]:
    """Packets per stream of a file, by demuxing only."""
    with av.open(str(path)) as container:
        counts = [0] * len(container.streams)
        for packet in container.demux():
            if packet.size:
                counts[packet.stream.index] += 1
    return counts


def check_recording(tracks: list[Track], rec: dict[str, Any], visit_dir: Path,
                    key: RecordingKey) -> dict[str, Any]:
    problems: list[str] = [f"{name}: recording failed: {reason}"
                           for name, reason in rec["failures"]]
    decode_errors: list[str] = []
    files = decoded_frames = 0
    for track in tracks:
        infos = rec["segments"].get(track.name, [])
        if track.name not in rec["ready"]:
            problems.append(f"{track.name}: never ready")
        recorded = sum(info.frames for info in infos)
        if recorded != track.frames:
            problems.append(f"{track.name}: {recorded} frames recorded of {track.frames} fed")
        frames = 0
        for info in infos:
            decoded = decode(info.path)  # as a player would: every decoder error counts
            files += 1
            frames += decoded.frames
            decode_errors += [f"{info.path.name}: {error}" for error in decoded.errors]
            if decoded.packets != info.frames or not info.keyframe_first:
                problems.append(f"{info.path.name} of {track.name}: {decoded.packets} packets for "
                                f"{info.frames} frames, keyframe first: {info.keyframe_first}")
        if frames != recorded:
            problems.append(f"{track.name}: {frames} frames decoded of {recorded} recorded")
        decoded_frames += frames
    for final in rec["finals"]:
        expected = sum(t.frames for t in tracks if t.party == final.participant)
        if sum(count_packets(final.path)) != expected:
            problems.append(f"final file of {final.participant} lacks frames")
    if len(rec["finals"]) != len({t.party for t in tracks}):
        problems.append("a party has no final file")
    report = verify_visit(visit_dir, key.public_pem, rec["seal"])
    problems += [f"verify: {p}" for p in report.problems]
    return {"segments_decoded": files, "frames_decoded": decoded_frames,
            "decode_errors": len(decode_errors), "manifest_verified": report.ok,
            "manifest_segments": report.segments, "problems": (decode_errors + problems)[:20],
            "ok": not decode_errors and not problems}


# -- the run ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recorder",
                                description=__doc__.split("\n", 1)[0])
    p.add_argument("--parties", type=int, default=2,
                   help="parties in the visit, each with VP8 video and Opus audio (default 2)")
    p.add_argument("--seconds", type=float, default=120.0,
                   help="seconds of media per track (default 120)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="JSON-lines file to append to (default benchmarks/results/recorder.jsonl)")
    return p


def per_hour(value: float, seconds: float) -> float:
    return value * 3600 / seconds


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.parties < 1 or args.seconds <= 0:
        print("--parties must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    started = time.monotonic()
    video, audio = encode_vp8(), encode_opus()
    tracks, schedule = make_visit(args.parties, args.seconds, video, audio)
    key = RecordingKey.generate()
    packets = len(schedule)
    payload_bytes = sum(len(p.payload) for _, _, p in schedule)
    gc.collect()
    gc.freeze()  # the schedule is the benchmark's, not the recorder's: keep it out of GC
    print(f"clips and {packets} packets ready in {time.monotonic() - started:.1f} s",
          file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="visitbridge-recbench-") as tmp:
        visit_dir = Path(tmp) / "visit-bench"
        rec = run_recorder(tracks, schedule, visit_dir, key)
        print(f"recorder: {rec['cpu_s']:.2f} s CPU", file=sys.stderr)
        segment_bytes = sum(p.stat().st_size for p in visit_dir.rglob("segment-*"))
        final_bytes = sum(f.path.stat().st_size for f in rec["finals"])
        manifest_bytes = (visit_dir / "manifest.jsonl").stat().st_size
        check = check_recording(tracks, rec, visit_dir, key)
        print(f"check: {'ok' if check['ok'] else check['problems']}", file=sys.stderr)
    base = run_baseline(tracks, schedule, video, audio)
    print(f"baseline: {base['cpu_s']:.2f} s CPU", file=sys.stderr)

    seconds = args.seconds
    frames = sum(t.frames for t in tracks)
    coders = base["coders"]
    video_coders = [c for c in coders if c.video]
    audio_coders = [c for c in coders if not c.video]
    written = segment_bytes + final_bytes + manifest_bytes
    record: dict[str, Any] = {"benchmark": "recorder", "valid": check["ok"]}
    record["recorder"] = {
        "cpu_s_per_visit_hour": round(per_hour(rec["cpu_s"], seconds), 1),
        "us_per_packet": round(rec["cpu_s"] / packets * 1e6, 1),
        "ingest_us_per_packet": round(rec["ingest_cpu_s"] / packets * 1e6, 1),
        "cpu_pct_of_core": round(rec["cpu_s"] / seconds * 100, 2),
        "cpu_s": round(rec["cpu_s"], 3),
        "cpu_s_breakdown": {k: round(rec[f"{k}_cpu_s"], 3)
                            for k in ("ingest", "manifest", "finalize", "seal")},
        "wall_s": round(rec["wall_s"], 2),
        "segments": sum(len(v) for v in rec["segments"].values()),
        "keyframe_requests": sum(rec["keyframe_requests"].values()),
        "failures": len(rec["failures"]),
    }
    record["baseline"] = {
        "what": "PyAV decode of every frame + re-encode: libvpx realtime cpu-used 8 CBR, "
                "libopus voip constrained VBR, both at the clips' bitrates; "
                "no reassembly, muxing, writing or signing",
        "cpu_s_per_visit_hour": round(per_hour(base["cpu_s"], seconds), 1),
        "us_per_packet": round(base["cpu_s"] / packets * 1e6, 1),
        "cpu_pct_of_core": round(base["cpu_s"] / seconds * 100, 2),
        "cpu_s": round(base["cpu_s"], 3),
        "wall_s": round(base["wall_s"], 2),
        "frames_decoded": sum(c.frames_decoded for c in coders),
        "video_out_bps": round(sum(c.bytes_out for c in video_coders) * 8
                               / (seconds * len(video_coders))),
        "audio_out_bps": round(sum(c.bytes_out for c in audio_coders) * 8
                               / (seconds * len(audio_coders))),
    }
    record["baseline_over_recorder_cpu"] = (round(base["cpu_s"] / rec["cpu_s"], 1)
                                            if rec["cpu_s"] > 0 else None)
    record["bytes"] = {
        "written_per_visit_hour": round(per_hour(written, seconds)),
        "segments_per_visit_hour": round(per_hour(segment_bytes, seconds)),
        "segments": segment_bytes, "final_files": final_bytes, "manifest": manifest_bytes,
        "rtp_payload": payload_bytes,
    }
    record["check"] = check
    record["visit"] = {"parties": args.parties, "media_seconds": seconds,
                       "tracks": len(tracks), "packets": packets, "frames": frames,
                       "segment_s": SEGMENT_S}
    info = run_info({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "none")
    info.pop("client_loop", None)
    record.update(info)
    record["media"] = {"video_bps": round(video.bitrate_bps),
                       "audio_bps": round(audio.bitrate_bps),
                       "video": "VP8 640x480 30 fps, keyframe every 3.3 s",
                       "audio": "Opus 20 ms"}
    record["run_wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(record), flush=True)
    append_result(args.results, record)
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
