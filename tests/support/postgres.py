"""A real PostgreSQL for tests: one throwaway cluster per test run, a fresh database per
use.

The cluster is made with the server binaries on the machine (``initdb``, ``pg_ctl``) in a
temporary folder, listens only on a Unix socket in that folder (on a free port number,
which names the socket), trusts local connections and is removed when the run ends.
PostgreSQL refuses to run as root, so as root it runs as ``nobody``.

``VISITBRIDGE_TEST_DATABASE=postgresql`` makes every server the tests start
(``tests.support.server``) keep its records in a fresh database of this cluster, so the
whole suite can run on PostgreSQL; the records tests run on both regardless.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import psycopg

from tests.support.binaries import need_binary
from tests.support.process import free_port

USER = "nobody"


def backend() -> str:
    """The backend the suite's servers use: ``sqlite`` (default) or ``postgresql``."""
    return os.environ.get("VISITBRIDGE_TEST_DATABASE", "sqlite").strip().lower() or "sqlite"


def _binary(name: str) -> str:
    # Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin.
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return shutil.which(name) or (found[-1] if found else need_binary(name))


class Cluster:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vb-postgres-"))
        self.port = free_port(0)
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        self._as_user = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
        if self._as_user:
            shutil.chown(self.dir, USER)
        data = self.dir / "data"
        self._run(_binary("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        options = (f"-c listen_addresses='' -c unix_socket_directories={self.dir} "
                   f"-c port={self.port} -c fsync=off -c max_connections=300")
        self._run(_binary("pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w",
                  "-o", options, "start")
        self._data = data

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self._as_user, *command], capture_output=True, text=True,
                                cwd=self.dir)
        if result.returncode != 0:
            log = (self.dir / "log").read_text() if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): "
                               f"{result.stderr.strip()}\n{log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.dir}&port={self.port}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        with self._lock:
            name = f"vb_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(_binary("pg_ctl"), "-D", str(self._data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


_cluster: Cluster | None = None
_started = threading.Lock()
_databases: dict[Path, str] = {}


def cluster() -> Cluster:
    """The run's cluster, started on first use and stopped when the run ends."""
    global _cluster
    with _started:
        if _cluster is None:
            _cluster = Cluster()
            atexit.register(_cluster.stop)
        return _cluster


def database_env(data_dir: Path) -> dict[str, str]:
    """A server's database setting under the chosen backend: on PostgreSQL, a database of
    its own, the same one again for a server restarted on the same data directory."""
    if backend() != "postgresql":
        return {}
    key = data_dir.resolve()
    with _started:
        known = _databases.get(key)
    url = known or cluster().new_database()
    with _started:
        url = _databases.setdefault(key, url)
    return {"VISITBRIDGE_DATABASE_URL": url}


def server_database(data_dir: Path) -> Path | str:
    """The database of the server whose data directory this is, under the chosen backend."""
    env = database_env(data_dir)
    return env.get("VISITBRIDGE_DATABASE_URL") or data_dir / "visitbridge.db"


def dump(url: str) -> bytes:
    """Everything a database holds, as ``pg_dump`` writes it (schema and rows as text)."""
    return subprocess.run([_binary("pg_dump"), "--dbname", url], capture_output=True,
                          check=True).stdout
