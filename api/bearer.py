"""Bearer tokens on the HTTP APIs: one check, one count and one audit row per refusal.

Every HTTP surface that takes ``Authorization: Bearer <token>`` authorizes through
``Bearer``, so whichever surface refuses a token answers the same JSON error (401, or
403 for a role not allowed there), counts it in ``visitbridge_token_refusals`` by code,
and audits it the same way (records.refusals): action ``api``, outcome ``refused``, the
code as reason. A caller without a valid token is aggregated per source and never
attached to a visit; a verified token (a wrong role, or a call refused for what it
asked) is audited with its ``sub``, and the visit and subject of the path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from aiohttp import web

from api.errors import http_error
from auth.tokens import TOKEN_REFUSALS, Claims, TokenError, TokenVerifier
from records.refusals import RefusalAudit


class Bearer:
    """Authorizes requests of one HTTP surface and audits what it refuses.

    ``subject`` names the path parameter that says whom a call is about (``sub`` on the
    visits API, ``participant`` on the recordings API).
    """

    def __init__(self, verifier: TokenVerifier, refusals: RefusalAudit, *, subject: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._verifier = verifier
        self._refusals = refusals
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
            # Every role is verified, so that a wrong role is refused with a known sub.
            claims = await self._verifier.verify(token, now=self._clock())
        except TokenError as exc:
            self._refuse_token(request, exc.code)
            raise http_error(403 if exc.code == "wrong_role" else 401, exc.code,
                             exc.message) from None
        if claims.role not in roles:
            TOKEN_REFUSALS.labels("wrong_role").inc()
            self.refused(request, "wrong_role", claims)
            raise http_error(403, "wrong_role", f"Role {claims.role!r} is not allowed here.")
        return claims

    def refused(self, request: web.Request, code: str, claims: Claims | None = None) -> None:
        """Audit a refused call: by a caller without a valid token or ticket, or by
        ``claims`` (authorized, but refused for what it asked)."""
        visit = request.match_info.get("visit")
        subject = request.match_info.get(self._subject)
        call = f"{request.method} {request.path}"
        if claims is not None:
            self._refusals.identified(action="api", code=code, actor=claims.sub,
                                      role=claims.role, visit=visit, subject=subject,
                                      request=call)
            return
        self._refusals.anonymous(
            source=self._refusals.source(request.remote,
                                         request.headers.get("X-Forwarded-For", "")),
            action="api", code=code, visit=visit, subject=subject, request=call)

    def _refuse_token(self, request: web.Request, code: str) -> None:
        TOKEN_REFUSALS.labels(code).inc()
        self.refused(request, code)
