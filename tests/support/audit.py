"""The audit log of a server the tests started, read straight from its database."""

from __future__ import annotations

import json
from typing import Any

from records.dialect import open_database
from tests.support.postgres import server_database
from tests.support.server import Server


def audit(server: Server, visit: str) -> list[dict[str, Any]]:
    """A visit's audit rows in order, each with its ``detail`` decoded."""
    db = open_database(server_database(server.data_dir))
    try:
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in db.execute(
            "SELECT * FROM audit WHERE visit = ? ORDER BY seq", (visit,))]
    finally:
        db.close()
