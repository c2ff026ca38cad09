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

Encryption at rest: the same packets are recorded again through an encrypting vault
(``--rounds`` runs of each, alternating); the medians give CPU-seconds per visit-hour
with and without encryption, the difference and the ratio.

Afterwards the recording is checked, outside the measurement: every segment decodes with
zero errors and holds every frame that was fed, the final files hold every frame, and
the manifest verifies against the key with the seal. Prints one JSON line and appends
it, with the run's context, to benchmarks/results/recorder.jsonl (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import av
from aiortc.rtp import RtpPacket

from recorder.finalize import finalize_visit
from recorder.keystore import DataKeys, KeyringFile, create_keyring
from recorder.manifest import Manifest
from recorder.segments import SegmentInfo, sync_segment
from recorder.signing import RecordingKey
from recorder.track import BATCH_S, TrackRecorder
from recorder.vault import Vault
from recorder.verify import verify_visit
from tests.support.clock import FakeClock
from tests.support.media import decode

from .measure import add_results_argument, append_result, benchmark_parser, run_info
from .media import encode_opus, encode_vp8
from .transcoding import run_baseline
from .visit_packets import Track, make_visit

RESULTS = Path(__file__).resolve().parent / "results" / "recorder.jsonl"
SEGMENT_S = 10.0  # the server's default (recorder/session.py)
EPOCH = 1_700_000_000.0  # the visit's booked start on the fake wall clock


# -- the recorder path ------------------------------------------------------------------


def run_recorder(tracks: list[Track], schedule: list[tuple[float, int, RtpPacket]],
                 visit_dir: Path, key: RecordingKey, vault: Vault) -> dict[str, Any]:
    """Feed every packet to real TrackRecorders; close, finalize and seal. CPU-timed."""
    clock = FakeClock(EPOCH)  # the SFU's clock and the wall clock in one: it follows arrivals
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
            vault.sync(visit_dir.name)
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
            on_failure=on_failure, clock=clock,
            open_file=lambda path: vault.create(visit_dir.name, path)))
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
    finals = finalize_visit(visit_dir, vault)
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


def check_encrypted(tracks: list[Track], rec: dict[str, Any], visit_dir: Path,
                    key: RecordingKey, vault: Vault) -> list[str]:
    """The encrypted run's recording: it verifies, and its final files, decrypted, hold
    every frame."""
    problems = [f"{name}: recording failed: {reason}" for name, reason in rec["failures"]]
    report = verify_visit(visit_dir, key.public_pem, rec["seal"])
    problems += [f"verify: {p}" for p in report.problems]
    for final in rec["finals"]:
        plain = visit_dir.parent / f"plain-{final.path.name}"
        with vault.open(visit_dir.name, final.path) as src:
            plain.write_bytes(src.read())
        if sum(count_packets(plain)) != sum(t.frames for t in tracks
                                            if t.party == final.participant):
            problems.append(f"encrypted final file of {final.participant} lacks frames")
    return problems


# -- the run ------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser("benchmarks.recorder", __doc__)
    p.add_argument("--parties", type=int, default=2,
                   help="parties in the visit, each with VP8 video and Opus audio (default 2)")
    p.add_argument("--seconds", type=float, default=120.0,
                   help="seconds of media per track (default 120)")
    p.add_argument("--rounds", type=int, default=5,
                   help="plain and encrypted runs each, alternating; medians (default 5)")
    add_results_argument(p, RESULTS)
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
        rec = run_recorder(tracks, schedule, visit_dir, key, Vault())
        print(f"recorder: {rec['cpu_s']:.2f} s CPU", file=sys.stderr)
        create_keyring(Path(tmp) / "kek.json")
        vault = Vault(DataKeys(Path(tmp) / "data-keys", KeyringFile(Path(tmp) / "kek.json")))
        sealed = run_recorder(tracks, schedule, Path(tmp) / "visit-enc", key, vault)
        encrypted_problems = check_encrypted(tracks, sealed, Path(tmp) / "visit-enc", key,
                                             vault)
        # Plain and encrypted runs alternate, and each side's median counts: on a shared
        # machine one run of each can differ by more than encryption costs.
        plain_cpu, sealed_cpu = [rec["cpu_s"]], [sealed["cpu_s"]]
        for n in range(1, args.rounds):
            for cpu, run_vault in ((plain_cpu, Vault()), (sealed_cpu, vault)):
                again = Path(tmp) / f"visit-{n}-{len(cpu)}-{run_vault.encrypting}"
                cpu.append(run_recorder(tracks, schedule, again, key, run_vault)["cpu_s"])
                shutil.rmtree(again)
        plain_s, sealed_s = statistics.median(plain_cpu), statistics.median(sealed_cpu)
        print(f"recorder, plain / encrypting (median of {args.rounds}): {plain_s:.2f} / "
              f"{sealed_s:.2f} s CPU", file=sys.stderr)
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
    record: dict[str, Any] = {"benchmark": "recorder",
                              "valid": check["ok"] and not encrypted_problems}
    record["encryption"] = {  # the same packets, recorded again with encryption at rest
        "rounds": args.rounds,
        "plain_cpu_s_per_visit_hour": round(per_hour(plain_s, seconds), 2),
        "encrypted_cpu_s_per_visit_hour": round(per_hour(sealed_s, seconds), 2),
        "added_cpu_s_per_visit_hour": round(per_hour(sealed_s - plain_s, seconds), 2),
        "ratio": round(sealed_s / plain_s, 3) if plain_s > 0 else None,
        "runs_cpu_s": {"plain": [round(c, 3) for c in plain_cpu],
                       "encrypted": [round(c, 3) for c in sealed_cpu]},
        "cpu_s_breakdown": {k: [round(rec[f"{k}_cpu_s"], 3), round(sealed[f"{k}_cpu_s"], 3)]
                            for k in ("ingest", "manifest", "finalize", "seal")},
        "problems": encrypted_problems[:10],
    }
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
    return 0 if record["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
