"""Reading what an SDP negotiates, as a person checking it by eye would."""

from __future__ import annotations


def opus_attributes(sdp: str, attribute: str) -> list[list[str]]:
    """What follows ``a=<attribute>:<opus pt> `` on each audio m-line, in order (every
    such line of the m-line, e.g. each ``rtcp-fb``).

    An audio m-line without Opus fails here: Visitbridge's audio is Opus only.
    """
    found: list[list[str]] = []
    for section in sdp.split("\r\nm=")[1:]:
        if not section.startswith("audio "):
            continue
        attributes = section.split("\r\n")
        opus = next(a.split()[0].split(":")[1] for a in attributes
                    if a.startswith("a=rtpmap:") and a.split()[1].lower().startswith("opus/"))
        found.append([a.split(" ", 1)[1] for a in attributes
                      if a.startswith(f"a={attribute}:{opus} ")])
    return found


def opus_fmtp(sdp: str) -> list[str]:
    """The Opus format parameters of each audio m-line, in order ("" when it has none)."""
    return [lines[0] if lines else "" for lines in opus_attributes(sdp, "fmtp")]


def opus_feedback(sdp: str) -> list[list[str]]:
    """The RTCP feedback types offered for Opus on each audio m-line, in order."""
    return opus_attributes(sdp, "rtcp-fb")


def has_fec(fmtp: str) -> bool:
    """Whether an Opus fmtp line asks for in-band FEC."""
    return "useinbandfec=1" in fmtp.replace(" ", "").split(";")
