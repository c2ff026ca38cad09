"""How well one participant's connection carries the visit (no I/O, clock passed in).

Pages report their WebRTC statistics every ``interval_s`` (the ``stats`` message); the
server measures what arrives from each publisher. Both feed one level per participant,
shown on every tile: ``good``, ``weak`` (loss, round trip or jitter past the weak
thresholds) or ``lost`` (the server stopped receiving their media: only the server can
say so, a page's report never does). A page is never trusted: its message is checked
field by field, its numbers are clamped, and reports closer together than half the
interval are refused. Weak is entered at once and left only after ``good_reports``
reports in a row under the (lower) good thresholds, so a tile does not flicker.
"""

from __future__ import annotations

from typing import Any

from visit.roster import RosterError
from visit.value import value

LEVELS = ("good", "weak", "lost")
MAX_STATS_BYTES = 1024  # a stats message is a dozen numbers
OPUS_RATE = 48_000  # audio is Opus only: concealed samples per second
MIN_PACKETS = 20  # fewer packets in a report than this say nothing about loss
_COUNT_MAX = 2**53  # counters beyond this are not real
_SECONDS_MAX = 86_400.0


@value
class QualityPolicy:
    interval_s: float = 5.0  # pages report this often
    weak_loss: float = 0.05  # fraction of packets lost
    good_loss: float = 0.02
    weak_rtt_s: float = 0.4
    good_rtt_s: float = 0.25
    weak_jitter_s: float = 0.05
    good_jitter_s: float = 0.03
    good_reports: int = 2  # reports in a row under the good thresholds to leave weak


@value
class Report:
    """One page's statistics: cumulative counters since its peer connection started."""

    audio_concealed_samples: int = 0
    audio_total_samples: int = 0
    video_frames_decoded: int = 0
    video_frozen_s: float = 0.0
    packets_lost: int = 0
    packets_received: int = 0
    # NACKs the page sent: the link's loss before repair, which packets_lost no longer
    # shows once retransmissions (audio too) fill the holes.
    packets_nacked: int = 0
    jitter_s: float = 0.0
    rtt_s: float | None = None
    outbound_bps: float = 0.0


_COUNTS = ("audio_concealed_samples", "audio_total_samples", "video_frames_decoded",
           "packets_lost", "packets_received", "packets_nacked")
_SECONDS = ("video_frozen_s", "jitter_s", "outbound_bps")


def _number(message: dict[str, Any], name: str) -> float:
    value = message.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise RosterError("bad_message", f"stats field {name} must be a number")
    return float(value)


def parse_report(message: dict[str, Any], size: int) -> Report:
    """A ``stats`` message as a ``Report`` with every number clamped; ``RosterError``
    (``bad_message``) for a message too large or a field that is not a number."""
    if size > MAX_STATS_BYTES:
        raise RosterError("bad_message", f"a stats message may be at most {MAX_STATS_BYTES} bytes")
    counts = {n: int(min(max(_number(message, n), 0), _COUNT_MAX)) for n in _COUNTS}
    seconds = {n: min(max(_number(message, n), 0.0), _SECONDS_MAX) for n in _SECONDS}
    rtt = message.get("rtt_s")
    rtt_s = None if rtt is None else min(max(_number(message, "rtt_s"), 0.0), 60.0)
    return Report(**counts, **seconds, rtt_s=rtt_s)


@value
class Impairment:
    """What a report adds to the server's counters: seconds of frozen video and of
    concealed (invented) audio the page saw since its previous report."""

    frozen_s: float = 0.0
    concealed_s: float = 0.0


def _loss(lost: int, received: int) -> float | None:
    total = lost + received
    return lost / total if total >= MIN_PACKETS and lost > 0 else (0.0 if total else None)


class QualityMeter:
    """One participant's level, from their reports and the server's own counts."""

    def __init__(self, policy: QualityPolicy, streams: int) -> None:
        self._policy = policy
        self._streams = max(1, streams)  # remote tracks of each kind a page can receive
        self._rated = "good"  # from reports, with hysteresis
        self._good_run = 0
        self._stopped = False  # the server receives nothing from them
        self._last: Report | None = None
        self._last_at: float | None = None
        self._uplink: tuple[int, int] | None = None

    @property
    def level(self) -> str:
        return "lost" if self._stopped else self._rated

    def media_stopped(self, stopped: bool) -> None:
        self._stopped = stopped

    def report(self, report: Report, uplink: tuple[int, int], now: float) -> Impairment:
        """Take one report (``RosterError`` ``rate_limited`` if it came too soon) and the
        publisher's (received, expected) packet counts at the server."""
        if self._last_at is not None and now - self._last_at < self._policy.interval_s / 2:
            raise RosterError("rate_limited", "stats reports are limited to one every "
                                              f"{self._policy.interval_s / 2:g} seconds")
        elapsed = 0.0 if self._last_at is None else now - self._last_at
        last, self._last, self._last_at = self._last, report, now
        uplink_before, self._uplink = self._uplink, uplink
        if last is None or any(getattr(report, n) < getattr(last, n) for n in _COUNTS) \
                or report.video_frozen_s < last.video_frozen_s:
            last = None  # first report, or a new peer connection: a new baseline
        losses = []
        if last is not None:
            lost = max(report.packets_lost - last.packets_lost,
                       report.packets_nacked - last.packets_nacked)
            losses.append(_loss(lost, report.packets_received - last.packets_received))
        if uplink_before is not None:
            received = uplink[0] - uplink_before[0]
            expected = uplink[1] - uplink_before[1]
            losses.append(_loss(max(0, expected - received), max(0, received)))
        self._rate(max((x for x in losses if x is not None), default=0.0), report)
        if last is None:
            return Impairment()
        cap = elapsed * self._streams
        frozen = report.video_frozen_s - last.video_frozen_s
        concealed = (report.audio_concealed_samples - last.audio_concealed_samples) / OPUS_RATE
        return Impairment(min(frozen, cap), min(concealed, cap))

    def _rate(self, loss: float, report: Report) -> None:
        p = self._policy
        rtt = report.rtt_s or 0.0
        if loss >= p.weak_loss or rtt >= p.weak_rtt_s or report.jitter_s >= p.weak_jitter_s:
            self._rated, self._good_run = "weak", 0
        elif loss < p.good_loss and rtt < p.good_rtt_s and report.jitter_s < p.good_jitter_s:
            self._good_run += 1
            if self._good_run >= p.good_reports:
                self._rated = "good"
        else:
            self._good_run = 0
