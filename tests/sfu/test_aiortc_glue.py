"""aiortc, aioice and pylibsrtp private state is reached in one place, and checked.

Detection rule (a private access): an attribute ``x._name`` or ``x.__name`` (not a
dunder such as ``__name__``), read, written or deleted, where ``x`` is anything but the
bare names ``self`` or ``cls``; and ``getattr``/``setattr``/``hasattr``/``delattr`` with
such a name as a string literal. The glue modules are the only ones allowed to make
them. Names starting with ``_visitbridge_`` are the project's own markers (set on
library objects or on the functions it patches in), not library state, and are allowed.
"""

from __future__ import annotations

import ast
import asyncio
import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import aioice
import aiortc.rtcrtpreceiver
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import RtpPacket

from sfu import aiortc_glue, glue_rtp
from sfu.aiortc_glue import PRIVATE, check_aiortc

ROOT = Path(__file__).resolve().parents[2]
GLUE = (ROOT / "sfu" / "aiortc_glue.py", ROOT / "sfu" / "glue_rtp.py")
PACKAGES = ("visit", "auth", "records", "sfu", "recorder", "signaling", "api", "app",
            "benchmarks")
PROJECT_MARKER = "_visitbridge_"
ACCESSORS = ("getattr", "setattr", "hasattr", "delattr")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_accesses(source: str) -> Iterator[tuple[int, str]]:
    """(line, name) of every private access in ``source``, by the rule above."""
    for node in ast.walk(ast.parse(source)):
        name: str | None = None
        if isinstance(node, ast.Attribute):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                name = node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ACCESSORS and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            name = node.args[1].value
        if name is not None and _is_private(name) and not name.startswith(PROJECT_MARKER):
            yield node.lineno, name


def test_the_rule_catches_library_state_and_spares_own_state() -> None:
    found = {name for _, name in private_accesses(
        "t.sender._stream_id = 'slot0'\n"
        "r = receiver._RTCRtpReceiver__codecs\n"
        "self._sender._ssrc\n"
        "getattr(dtls, '_rx_srtp')\n"
        "self._own = cls._own + type(x).__name__\n"
        "dtls._visitbridge_fast = None\n")}
    assert found == {"_stream_id", "_RTCRtpReceiver__codecs", "_ssrc", "_rx_srtp"}


def test_registry_lists_exactly_what_the_glue_accesses() -> None:
    accessed = {name for path in GLUE for _, name in private_accesses(path.read_text())}
    registered = [name for names in PRIVATE.values() for name in names]
    assert len(registered) == len(set(registered)), "a name is registered twice"
    assert accessed == set(registered), (
        f"used but not registered: {sorted(accessed - set(registered))}; "
        f"registered but unused: {sorted(set(registered) - accessed)}")


def test_no_other_module_touches_private_library_state() -> None:
    offences = []
    scanned = 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path in GLUE:
                continue
            scanned += 1
            offences += [f"{path.relative_to(ROOT)}:{line}: {name}"
                         for line, name in private_accesses(path.read_text())]
    assert scanned > 50
    assert not offences, "private access outside the glue modules:\n" + "\n".join(offences)


def test_start_up_check_passes_on_the_installed_versions() -> None:
    check_aiortc()


def _owner(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO that defines ``name`` (None: an instance attribute)."""
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def _without(probe: Callable[[], dict[type, object | None]],
             *removed: tuple[type, str]) -> Callable[[], dict[type, object | None]]:
    """``probe``, with the given per-instance attributes taken off the objects it builds
    (aiortc often sets them itself while building the connection)."""

    def probe_without() -> dict[type, object | None]:
        instances = probe()
        for cls, name in removed:
            instance = instances[cls]
            if instance is not None and name in vars(instance):
                delattr(instance, name)
        return instances

    return probe_without


def _remove(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
    """Make ``name`` vanish from ``cls`` and its instances, as an upgrade could."""
    owner = _owner(cls, name)
    if owner is not None:
        monkeypatch.delattr(owner, name)
    else:
        monkeypatch.setattr(aiortc_glue, "probe_instances",
                            _without(aiortc_glue.probe_instances, (cls, name)))


@pytest.mark.parametrize("cls, name", [(cls, name) for cls, names in PRIVATE.items()
                                       for name in names],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_start_up_check_names_a_missing_private_attribute(
        monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
    _remove(monkeypatch, cls, name)
    with pytest.raises(RuntimeError, match=f"{cls.__name__}.{name}"):
        check_aiortc()


def test_start_up_check_names_every_missing_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    _remove(monkeypatch, RTCRtpReceiver, "_send_rtcp_pli")  # a method, on the class
    monkeypatch.setattr(aiortc_glue, "probe_instances", _without(  # set per instance
        aiortc_glue.probe_instances,
        (RTCRtpSender, "_RTCRtpSender__rtt"), (aioice.Connection, "_nominated")))
    with pytest.raises(RuntimeError) as failure:
        check_aiortc()
    message = str(failure.value)
    for expected in ("RTCRtpReceiver._send_rtcp_pli", "RTCRtpSender._RTCRtpSender__rtt",
                     "Connection._nominated"):
        assert expected in message


def test_start_up_check_names_a_missing_public_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(aiortc_glue.aioice.ice.CandidatePair, "remote_addr")
    with pytest.raises(RuntimeError, match="CandidatePair.remote_addr"):
        check_aiortc()


def _objects_per_peer() -> float:
    async def build() -> float:
        gc.collect()
        before = len(gc.get_objects())
        peers = [RTCPeerConnection() for _ in range(4)]
        for pc in peers:  # a server peer: one published pair and five slots
            for _ in range(6):
                pc.addTransceiver("audio")
                pc.addTransceiver("video")
        gc.collect()
        per_peer = (len(gc.get_objects()) - before) / len(peers)
        for pc in peers:
            await pc.close()
        return per_peer
    return asyncio.run(build())


def test_lazy_bitrate_estimators_keep_a_peer_light_and_still_estimate(
        monkeypatch: pytest.MonkeyPatch) -> None:
    eager = _objects_per_peer()
    monkeypatch.setattr(aiortc.rtcrtpreceiver, "RemoteBitrateEstimator",
                        aiortc.rtcrtpreceiver.RemoteBitrateEstimator)  # restored after
    aiortc_glue.install_lazy_bitrate_estimators()
    lazy = _objects_per_peer()
    # Each eager estimator holds a thousand one-millisecond buckets.
    assert eager - lazy > 5_000, (eager, lazy)
    estimator = aiortc.rtcrtpreceiver.RemoteBitrateEstimator()
    estimates = [estimator.add(abs_send_time=(i * 20 << 18) // 1000 & 0xFFFFFF,
                               arrival_time_ms=i * 20, payload_size=1200, ssrc=1)
                 for i in range(200)]
    assert any(e is not None for e in estimates)  # the real estimator, once fed


def test_receive_statistics_report_at_least_the_loss_they_are_given() -> None:
    """An audio publisher is told its subscribers' loss: the receiver reports aiortc
    builds from these statistics claim the worse of the two."""
    plain = glue_rtp.stream_statistics(48000)
    floored = glue_rtp.stream_statistics(48000, lambda: 13)  # 5 % on some downlink
    for stats in (plain, floored):
        for seq in (1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12):  # 4 lost of 12: 21/256
            stats.add(RtpPacket(sequence_number=seq, timestamp=seq * 960))
    assert (plain.fraction_lost, floored.fraction_lost) == (21, 21)  # its own is worse
    for stats in (plain, floored):
        stats.add(RtpPacket(sequence_number=13, timestamp=13 * 960))
    assert (plain.fraction_lost, floored.fraction_lost) == (0, 13)
    assert floored.packets_received == 12  # counted as aiortc counts
