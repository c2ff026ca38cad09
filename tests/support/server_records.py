"""A server's records read from outside, on whichever backend the suite runs: rows of a
query, every byte stored, and ``visitbridge audit verify`` as the operator runs it.

The server's database is the SQLite file in its data directory, or on
``VISITBRIDGE_TEST_DATABASE=postgresql`` the database ``tests.support.postgres`` gave it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from records.dialect import is_url, open_database
from tests.support.postgres import database_env, dump, server_database
from tests.support.process import ROOT


def server_rows(data_dir: Path, sql: str, args: Sequence[Any] = ()) -> list[Any]:
    """Every row of a read-only query; each row reads by index and by column name."""
    db = open_database(server_database(data_dir), readonly=True)
    try:
        return list(db.execute(sql, args).fetchall())
    finally:
        db.close()


def stored_bytes(data_dir: Path) -> bytes:
    """All the records hold: the SQLite file with its journal, or a dump of the database."""
    target = server_database(data_dir)
    if is_url(target):
        return dump(str(target))
    return b"".join(p.read_bytes() for p in data_dir.glob("visitbridge.db*"))


def audit_verify(data_dir: Path, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``visitbridge audit verify`` configured like the server of ``data_dir`` (plus
    ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "audit", "verify", *extra], cwd=ROOT,
        env={**os.environ, "VISITBRIDGE_DATA_DIR": str(data_dir), **database_env(data_dir),
             **env},
        capture_output=True, text=True, timeout=60)
