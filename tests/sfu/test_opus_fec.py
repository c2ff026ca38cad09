"""The server's offer asks every browser to protect its audio with Opus in-band FEC and
to repair it with NACK.

A real server and real aiortc participants joining over the real WebSocket: every Opus
m-line of the offer a participant receives, the pair it publishes on and every slot it
hears, carries ``useinbandfec=1`` and ``a=rtcp-fb:<pt> nack``. The browser side is
``tests/browser/test_audio_fec.py``.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.sdp import has_fec, opus_feedback, opus_fmtp
from tests.support.server import in_visit, inmate_and_family, running_server, visit_now


async def test_every_opus_m_line_of_the_offer_asks_for_fec(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        inmate, family = inmate_and_family(server, visit_now("fec-1"), "fec")
        async with in_visit(inmate, family):
            for p in (inmate, family):
                offer = next(e for e in p.events if e["type"] == "offer")
                fmtp = opus_fmtp(offer["sdp"])
                # One publish m-line and one per slot (max_visitors 4 plus the inmate's).
                assert len(fmtp) == 1 + len(offer["slots"]) == 6, fmtp
                assert all(has_fec(f) for f in fmtp), fmtp
                assert all("usedtx=0" in f.split(";") for f in fmtp), fmtp
                feedback = opus_feedback(offer["sdp"])
                assert len(feedback) == 6 and all("nack" in f for f in feedback), feedback
            # aiortc answers Opus without format parameters: audio still flows.
            await family.wait_for(lambda: family.audio.get(0) and family.audio[0].frames >= 25, 10)
