"""Fixtures shared across the test packages."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from records import store as sqlite_store
from records.dialect import Connection
from tests.support.compliance import Recording, fabricate
from tests.support.databases import BACKENDS, fresh
from tests.support.s3 import SeaweedS3, seaweed
from tests.support.server import Server, running_server


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test is solo: real Chromium encoding and decoding live video takes
    more than a core, and its rates and deadlines are what the tests check."""
    browser = Path(__file__).parent / "browser"
    for item in items:
        if browser in item.path.parents:
            item.add_marker(pytest.mark.solo)


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real, tiny filesystem for recordings: it fills up during the visit."""
    mount = tmp_path / "volume"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here (the tests run as root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def db(database: Path | str) -> Iterator[Connection]:
    """A fresh visitbridge database, schema applied, on each backend."""
    connection = sqlite_store.connect(database)
    yield connection
    connection.close()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a fresh, empty visitbridge database is, on SQLite and again on PostgreSQL."""
    return fresh(request.param, tmp_path)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Recording]]:
    """A real server whose data directory holds a fabricated finished recording."""
    data_dir = Path(tmp_path_factory.mktemp("compliance"))
    recording = fabricate(data_dir)
    with running_server(data_dir) as server:
        yield server, recording


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A real S3 server with Object Lock (SeaweedFS), started once for the whole run;
    each test makes its own bucket."""
    with seaweed(Path(tmp_path_factory.mktemp("weed"))) as server:
        yield server
