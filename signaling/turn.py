"""TURN REST API credentials (the coturn ``use-auth-secret`` convention) for joining pages.

The server and coturn share one secret. For each connection the server hands the page a
username ``"<expiry unix time>:<user>"`` and the password
``base64(HMAC-SHA1(secret, username))``; coturn recomputes the password from the shared
secret and refuses it after the expiry. Nothing is stored, and a leaked pair stops
working after ``turn_ttl_s``.

The credentials only ever travel in ``offer`` messages over the WebSocket: never log
them (nor the secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, Protocol

Message = dict[str, Any]


class TurnConfig(Protocol):
    """The part of ``app.config.Config`` this module reads."""

    @property
    def turn_urls(self) -> tuple[str, ...]: ...

    @property
    def turn_secret(self) -> str: ...

    @property
    def turn_ttl_s(self) -> int: ...


def credentials(secret: str, user: str, now: float, ttl_s: int) -> tuple[str, str]:
    """The (username, password) pair valid until ``now + ttl_s``."""
    username = f"{int(now) + ttl_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(config: TurnConfig, user: str, now: float) -> list[Message]:
    """The browser ``iceServers`` entries for TURN (empty when no TURN is configured)."""
    if not config.turn_urls:
        return []
    username, password = credentials(config.turn_secret, user, now, config.turn_ttl_s)
    return [{"urls": list(config.turn_urls), "username": username, "credential": password}]


def with_turn(message: Message, config: TurnConfig, user: str, now: float) -> Message:
    """``message`` with fresh TURN servers added to ``ice_servers`` if it is an offer.

    Other messages, and every message when TURN is not configured, come back unchanged.
    The input is not modified.
    """
    if message.get("type") != "offer" or not config.turn_urls:
        return message
    existing = list(message.get("ice_servers") or [])
    return {**message, "ice_servers": existing + ice_servers(config, user, now)}


def offer_hook(config: TurnConfig | None, user: str,
               clock: Callable[[], float] = time.time) -> Callable[[Message], Message] | None:
    """A function for ``WsConnection`` that adds TURN credentials to the offers it sends.

    None when TURN is not configured, so the connection sends messages as they are.
    """
    if config is None or not config.turn_urls:
        return None
    return lambda message: with_turn(message, config, user, clock())
