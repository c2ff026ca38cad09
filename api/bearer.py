"""Bearer tokens on the HTTP APIs: one check, one count and one audit row per refusal.

Every HTTP surface that takes ``Authorization: Bearer <token>`` authorizes through
``Bearer``, so whichever surface refuses a token answers the same JSON error (401, or
403 for a role not allowed there), counts it in ``visitbridge_token_refusals`` by code,
and writes the same audit row: action ``api``, outcome ``refused``, the code as reason,
the visit and subject of the path, and ``{"request": "<METHOD> <path>"}`` as detail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from aiohttp import web

from api.errors import http_error
from auth.tokens import TOKEN_REFUSALS, Claims, TokenError, TokenVerifier
from records.audit import AuditLog


class Bearer:
    """Authorizes requests of one HTTP surface and audits what it refuses.

    ``subject`` names the path parameter that says whom a call is about (``sub`` on the
    visits API, ``participant`` on the recordings API).
    """

    def __init__(self, verifier: TokenVerifier, audit: AuditLog, *, subject: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._verifier = verifier
        self._audit = audit
        self._subject = subject
        self._clock = clock

    async def authorize(self, request: web.Request, roles: Collection[str]) -> Claims:
        """The token's claims if its role is one of ``roles``; else raises the JSON error."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self._refuse_token(request, "missing_token")
            raise http_error(401, "missing_token", "send 'Authorization: Bearer <token>'")
        try:
            return await self._verifier.verify(token, now=self._clock(), roles=roles)
        except TokenError as exc:
            self._refuse_token(request, exc.code)
            raise http_error(403 if exc.code == "wrong_role" else 401, exc.code,
                             exc.message) from None

    def refused(self, request: web.Request, code: str, claims: Claims | None = None) -> None:
        """Audit a refused call: by an unknown caller, or by ``claims`` (authorized, but
        refused for what it asked)."""
        self._audit.record(
            action="api", outcome="refused", reason=code, now=self._clock(),
            actor=claims.sub if claims else "unknown", role=claims.role if claims else "",
            visit=request.match_info.get("visit"),
            subject=request.match_info.get(self._subject),
            detail={"request": f"{request.method} {request.path}"})

    def _refuse_token(self, request: web.Request, code: str) -> None:
        TOKEN_REFUSALS.labels(code).inc()
        self.refused(request, code)
