"""Forwarding benchmark: server CPU per forwarded packet under N two-party visits.

    python -m benchmarks.forwarding --visits 10 --seconds 30 --warmup 5
    python -m benchmarks.forwarding --visits 1 --seconds 20 --baseline mediarelay
    python -m benchmarks.forwarding --visits 10 --seconds 30 --compare-record

Starts the real server (``python -m app.cli serve``) in a temporary data
directory, joins N visits of two parties each through the real WebSocket signaling,
sends pre-encoded VP8 + Opus from every party, and measures one window after the
warm-up. Prints one JSON line and appends it, with the run's context, to
benchmarks/results/forwarding.jsonl. The method is described in BENCHMARKS.md.

``--compare-record`` runs two servers at once under the same load, one recording every
visit and one recording none, with the same measured window: the machine's noise (it is
shared) then falls on both alike, and their ratio is the cost of recording.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .load import add_load_arguments, run_load
from .measure import add_results_argument, append_result, benchmark_parser, run_info
from .media import EncodedClip, encode_opus, encode_vp8
from .receive import disable_decoding
from .server import ServerProcess

RESULTS = Path(__file__).resolve().parent / "results" / "forwarding.jsonl"
# name -> (module run with ``python -m``, its arguments)
SERVERS = {
    "visitbridge": ("app.cli", ("serve",)),
    "mediarelay": ("benchmarks.mediarelay_server", ()),
}
BASELINES = ("mediarelay",)


def parser() -> argparse.ArgumentParser:
    p = benchmark_parser("benchmarks.forwarding", __doc__)
    add_load_arguments(p)
    add_results_argument(p, RESULTS)
    p.add_argument("--workers", type=int, default=1,
                   help="SFU worker processes (serve --workers N)")
    p.add_argument("--worker-max-participants", type=int, default=40,
                   help="with --workers: admission threshold per worker")
    p.add_argument("--record", action="store_true",
                   help="record every visit (without it visits are privileged: not recorded)")
    p.add_argument("--compare-record", action="store_true",
                   help="two servers side by side, one recording every visit and one none; "
                        "report the ratio of their CPU per forwarded packet")
    p.add_argument("--baseline", choices=sorted(BASELINES),
                   help="also run the same load against a naive decode/re-encode relay")
    return p


async def _measure(name: str, args: argparse.Namespace, video: EncodedClip,
                   audio: EncodedClip, record: bool = False,
                   together: asyncio.Barrier | None = None) -> dict[str, Any]:
    module, module_args = SERVERS[name]
    with tempfile.TemporaryDirectory(prefix="visitbridge-bench-") as tmp:
        extra = {}
        if name == "visitbridge" and args.workers > 1:
            extra = {"VISITBRIDGE_WORKERS": str(args.workers),
                     "VISITBRIDGE_WORKER_MAX_PARTICIPANTS": str(args.worker_max_participants)}
        server = ServerProcess(Path(tmp), env=extra, command=(module, *module_args))
        server.start()
        try:
            return await run_load(server, args.visits, args.seconds, args.warmup, video, audio,
                                  record=record and name == "visitbridge", together=together)
        finally:
            server.stop()


async def _side_by_side(args: argparse.Namespace, video: EncodedClip,
                        audio: EncodedClip) -> tuple[dict[str, Any], dict[str, Any]]:
    """The same load on two servers at once, the second recording: (plain, recording)."""
    together = asyncio.Barrier(2)
    plain, recording = await asyncio.gather(
        _measure("visitbridge", args, video, audio, False, together),
        _measure("visitbridge", args, video, audio, True, together))
    return plain, recording


def install_loop() -> str:
    """uvloop when available: the client's own overhead is then smallest."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.visits < 1 or args.seconds <= 0 or args.warmup < 0:
        print("--visits must be >= 1, --seconds > 0, --warmup >= 0", file=sys.stderr)
        return 2
    disable_decoding()
    loop_name = install_loop()
    started = time.monotonic()
    video, audio = encode_vp8(), encode_opus()
    print(f"encoded clips in {time.monotonic() - started:.1f} s: VP8 "
          f"{video.bitrate_bps / 1e6:.2f} Mb/s, Opus {audio.bitrate_bps / 1e3:.0f} kb/s",
          file=sys.stderr)
    record: dict[str, Any] = {"benchmark": "forwarding"}
    if args.compare_record:
        plain, recording = asyncio.run(_side_by_side(args, video, audio))
        record["visitbridge"], record["visitbridge_recording"] = plain, recording
        ours, theirs = (r["server_us_per_forwarded_packet"] for r in (plain, recording))
        record["recording_over_plain_cpu_per_packet"] = (
            round(theirs / ours, 3) if ours and theirs else None)
    else:
        record["visitbridge"] = asyncio.run(
            _measure("visitbridge", args, video, audio, args.record))
    if args.baseline:
        base = asyncio.run(_measure(args.baseline, args, video, audio))
        record[args.baseline] = base
        ours = record["visitbridge"]["server_us_per_forwarded_packet"]
        theirs = base["server_us_per_forwarded_packet"]
        record[f"{args.baseline}_over_visitbridge_cpu_per_packet"] = (
            round(theirs / ours, 2) if ours and theirs else None)
    record.update(run_info({k: (str(v) if isinstance(v, Path) else v)
                            for k, v in vars(args).items()}, loop_name))
    record["media"] = {"video_bps": round(video.bitrate_bps), "audio_bps": round(audio.bitrate_bps),
                       "video": "VP8 640x480 30 fps", "audio": "Opus 20 ms"}
    print(json.dumps(record), flush=True)
    append_result(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
