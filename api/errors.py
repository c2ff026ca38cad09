"""The JSON error answer of every HTTP API: ``{"error": code, "message": ...}``.

``code`` is stable (clients branch on it); ``message`` is for people.
"""

from __future__ import annotations

import json

from aiohttp import web

_RAISED: dict[int, type[web.HTTPException]] = {
    401: web.HTTPUnauthorized, 403: web.HTTPForbidden, 404: web.HTTPNotFound,
    409: web.HTTPConflict, 410: web.HTTPGone,
}


def error(status: int, code: str, message: str) -> web.Response:
    """The error, to return from a handler."""
    return web.json_response({"error": code, "message": message}, status=status)


def http_error(status: int, code: str, message: str) -> web.HTTPException:
    """The error, to raise from a helper deep in a handler (401, 403, 404, 409 or 410)."""
    return _RAISED[status](text=json.dumps({"error": code, "message": message}),
                           content_type="application/json")
