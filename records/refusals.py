"""Refused requests in the audit log, without letting anonymous callers fill it.

Anyone who can reach the server can send a bad bearer token, media ticket or join
token, as fast as they like, with every field of the request chosen by them. Writing a
permanent chained row for each would let them grow the audit log without bound and put
rows of their choosing into any visit's chain of custody. So the two kinds of refusal
are kept apart:

- A refusal of an *identified* caller (a verified token, refused for its role or for
  what it asked) is written at once, as its own row, with the token's ``sub`` as actor.
- A refusal of an *anonymous* caller (no valid token or ticket) is aggregated per
  (source, action, code). The first one after a quiet spell is written at once with
  ``count`` 1; the ones that follow within ``window_s`` are counted and written as one
  row (``count`` = how many) when that window closes: by a timer, at the next refusal
  or at shutdown. A source still refused then starts another window; a quiet one is
  forgotten. At most ``max_sources`` keys are held; refusals beyond that are counted
  under source ``*``. These rows never name a visit in the ``visit`` column, so they
  never enter a visit's chain of custody; what the request named (visit, subject,
  method and path) is kept in ``detail``, each cut to ``max_field_chars``.

The source is the client address the server sees, or, when that address is one of the
``trusted_proxies``, the nearest address in ``X-Forwarded-For`` that is not.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from records.audit import AuditLog
from records.dialect import ERRORS

log = logging.getLogger(__name__)

OVERFLOW_SOURCE = "*"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Key = tuple[str, str, str]  # source, action, code


@dataclass(frozen=True)
class RefusalLimits:
    window_s: float = 60.0
    max_sources: int = 1000
    max_field_chars: int = 100
    trusted_proxies: tuple[str, ...] = ()


@dataclass
class _Window:
    opened_at: float
    count: int = 0  # refusals since the last row written for this key
    first_at: float = 0.0
    last_at: float = 0.0
    sample: dict[str, str] = field(default_factory=dict)


def networks(cidrs: Collection[str]) -> tuple[Network, ...]:
    """Parse addresses or CIDR blocks; raises ValueError on a bad one."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def client_source(remote: str | None, forwarded_for: str,
                  trusted: Collection[Network]) -> str:
    """The caller's address: ``remote``, or behind trusted proxies the last address in
    ``X-Forwarded-For`` that no trusted proxy added. Never longer than an IPv6 address."""
    hops = [remote or ""]
    if forwarded_for:
        hops.extend(reversed([h.strip() for h in forwarded_for.split(",")]))
    for hop in hops:
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return "invalid"
        if not any(address in net for net in trusted):
            return str(address)
    return str(address)  # every hop was a trusted proxy: the farthest one


class RefusalAudit:
    """Writes refusals to one AuditLog from the event loop's thread."""

    def __init__(self, audit: AuditLog, limits: RefusalLimits = RefusalLimits(), *,
                 clock: Callable[[], float] = time.time) -> None:
        self.audit = audit
        self._limits = limits
        self._trusted = networks(limits.trusted_proxies)
        self._clock = clock
        self._windows: OrderedDict[Key, _Window] = OrderedDict()  # oldest window first
        self._timer: asyncio.TimerHandle | None = None

    def source(self, remote: str | None, forwarded_for: str) -> str:
        return client_source(remote, forwarded_for, self._trusted)

    def cut(self, value: object) -> str:
        """An untrusted value as text no longer than ``max_field_chars``."""
        text, limit = str(value), self._limits.max_field_chars
        return text if len(text) <= limit else text[:limit - 3] + "..."

    def identified(self, *, action: str, code: str, actor: str, role: str,
                   visit: str | None = None, subject: str | None = None,
                   request: str | None = None) -> None:
        """One row now: the caller proved who they are."""
        self.audit.record(
            action=action, outcome="refused", reason=code, now=self._clock(), actor=actor,
            role=role, visit=None if visit is None else self.cut(visit),
            subject=None if subject is None else self.cut(subject),
            detail={} if request is None else {"request": self.cut(request)})

    def anonymous(self, *, source: str, action: str, code: str, **named: object) -> None:
        """Count a refusal without a valid token; ``named`` holds what the request named
        (visit, subject, request), kept only in ``detail``."""
        now = self._clock()
        self._close_windows(now)
        key = (source, action, code)
        if key not in self._windows and len(self._windows) >= self._limits.max_sources:
            key = (OVERFLOW_SOURCE, action, code)
        sample = {k: self.cut(v) for k, v in named.items() if v is not None}
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(opened_at=now)
            self._write(key, _Window(now, 1, now, now, sample))
            self._schedule()
            return
        if window.count == 0:
            window.first_at, window.sample = now, sample
        window.count += 1
        window.last_at = now

    def close(self) -> None:
        """Write every window still open (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key, window in self._windows.items():
            if window.count:
                self._write(key, window)
        self._windows.clear()

    def _close_windows(self, now: float) -> None:
        while self._windows:
            key, window = next(iter(self._windows.items()))
            if now - window.opened_at < self._limits.window_s:
                return
            del self._windows[key]
            if window.count:  # still being refused: write the count, open the next window
                self._write(key, window)
                self._windows[key] = _Window(opened_at=now)

    def _write(self, key: Key, window: _Window) -> None:
        source, action, code = key
        detail: Mapping[str, Any] = {
            "source": source, "count": window.count, "first_at": window.first_at,
            "last_at": window.last_at, "window_s": self._limits.window_s, **window.sample}
        self.audit.record(action=action, outcome="refused", reason=code, now=self._clock(),
                          actor="unknown", role="", detail=detail)

    def _schedule(self) -> None:
        """Close windows on time even when no further refusal comes."""
        if self._timer is not None or not self._windows:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a command, a test): windows close at the next refusal
        oldest = next(iter(self._windows.values()))
        delay = max(0.0, oldest.opened_at + self._limits.window_s - self._clock())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._close_windows(self._clock())
        except ERRORS:
            log.exception("could not write refusals to the audit log")
        self._schedule()
