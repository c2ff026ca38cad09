"""Which remote ICE candidates one connection may add, and how many.

Every remote candidate is an address the server's ICE agent sends STUN checks to, from
inside the facility. A hostile page could aim them at the server's own loopback services
or at the facility's network, or flood the agent with thousands of candidate pairs. So a
connection may add at most ``limit`` candidates (trickled and in its answer together),
never a loopback (unless ``allow_loopback``, for tests), link-local, multicast,
unspecified or reserved address, and a private one only with ``allow_private``.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from sfu import metrics
from visit.roster import RosterError

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CandidatePolicy:
    limit: int = 32
    allow_loopback: bool = False
    allow_private: bool = True  # kiosks reach the server over the facility's own network

    def refusal(self, host: str) -> str | None:
        """Why a candidate at ``host`` may not be added (a metric label), or None."""
        if host.lower().endswith(".local"):  # mDNS: resolved on the server's own network
            return None if self.allow_private else "private"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return "not_an_address"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback:
            return None if self.allow_loopback else "loopback"
        if address.is_link_local:
            return "link_local"
        if address.is_multicast:
            return "multicast"
        if address.is_unspecified or address.is_reserved:
            return "unspecified"
        if not address.is_global:
            return None if self.allow_private else "private"
        return None


@dataclass
class CandidateGate:
    """One connection's count of remote candidates, under its policy."""

    policy: CandidatePolicy
    seen: int = 0
    told: set[str] = field(default_factory=set)

    def admit(self, host: str) -> bool:
        """Whether a candidate at ``host`` may be added.

        A refusal raises ``RosterError`` (``bad_message``) the first time for each
        reason, so the page is told once and not once per candidate.
        """
        self.seen += 1
        reason = "too_many" if self.seen > self.policy.limit else self.policy.refusal(host)
        if reason is None:
            return True
        metrics.ICE_CANDIDATES_REFUSED.labels(reason).inc()
        if reason in self.told:
            return False
        self.told.add(reason)
        log.info("ICE candidate refused", extra={"reason": reason})
        if reason == "too_many":
            raise RosterError("bad_message", f"Too many ICE candidates (at most "
                              f"{self.policy.limit} per connection): the rest are ignored.")
        raise RosterError("bad_message", f"ICE candidate refused ({reason} address).")

    def filter_sdp(self, sdp: str) -> str:
        """The SDP without the candidate lines this connection may not add."""
        kept = []
        for line in sdp.splitlines(keepends=True):
            if line.startswith("a=candidate:"):
                parts = line.split()  # foundation component transport priority address ...
                try:
                    admitted = self.admit(parts[4] if len(parts) > 5 else "")
                except RosterError:
                    admitted = False
                if not admitted:
                    continue
            kept.append(line)
        return "".join(kept)
