"""Reading what an SDP negotiates, as a person checking it by eye would."""

from __future__ import annotations


def opus_fmtp(sdp: str) -> list[str]:
    """The Opus format parameters of each audio m-line, in order ("" when it has none).

    An audio m-line without Opus fails here: Visitbridge's audio is Opus only.
    """
    lines: list[str] = []
    for section in sdp.split("\r\nm=")[1:]:
        if not section.startswith("audio "):
            continue
        attributes = section.split("\r\n")
        opus = next(a.split()[0].split(":")[1] for a in attributes
                    if a.startswith("a=rtpmap:") and a.split()[1].lower().startswith("opus/"))
        lines.append(next((a.split(" ", 1)[1] for a in attributes
                           if a.startswith(f"a=fmtp:{opus} ")), ""))
    return lines


def has_fec(fmtp: str) -> bool:
    """Whether an Opus fmtp line asks for in-band FEC."""
    return "useinbandfec=1" in fmtp.replace(" ", "").split(";")
