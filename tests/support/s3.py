"""A real S3 server with Object Lock for the archive tests: SeaweedFS's ``weed``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.client import Config as ClientConfig

from recorder.bucket import Bucket, BucketSettings
from records.dialect import open_database
from tests.support.binaries import need_binary
from tests.support.postgres import server_database
from tests.support.process import read_log, stop_process, wait_listening
from tests.support.server_records import server_rows

ACCESS, SECRET = "test-access", "test-secret-not-real"
REGION = "us-east-1"


@dataclass
class SeaweedS3:
    endpoint: str
    credentials_file: Path

    def client(self) -> Any:
        """A plain boto3 client, for what a test does behind the product's back."""
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=ACCESS,
            aws_secret_access_key=SECRET, config=ClientConfig(s3={"addressing_style": "path"}))

    def new_bucket(self, name: str, locked: bool = True) -> str:
        self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=locked)
        return name

    def settings(self, bucket: str) -> BucketSettings:
        return BucketSettings(self.endpoint, bucket, REGION, self.credentials_file)

    def bucket(self, name: str) -> Bucket:
        return Bucket(self.settings(name))

    def server_env(self, bucket: str) -> dict[str, str]:
        """The settings a ``visitbridge serve`` needs to archive into ``bucket``."""
        return {"VISITBRIDGE_S3_ENDPOINT": self.endpoint, "VISITBRIDGE_S3_BUCKET": bucket,
                "VISITBRIDGE_S3_REGION": REGION,
                "VISITBRIDGE_S3_CREDENTIALS_FILE": str(self.credentials_file)}


@contextlib.contextmanager
def seaweed(folder: Path) -> Iterator[SeaweedS3]:
    """``weed server`` with its S3 gateway on free loopback ports, until the block ends."""
    weed = need_binary("weed")
    folder.mkdir(parents=True, exist_ok=True)
    ports = [_grpc_pair_port() for _ in range(4)]
    log_path = folder / "weed.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [weed, "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-s3", f"-s3.port={ports[0]}", f"-master.port={ports[1]}",
             f"-volume.port={ports[2]}", f"-filer.port={ports[3]}",
             # its Iceberg and Lance catalogs, on fixed ports by default, are not used
             "-s3.port.iceberg=0", "-s3.port.lance=0",
             # every bucket is a collection with volumes of its own: many small ones
             "-volume.max=200", "-master.volumeSizeLimitMB=16"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(process, ports[0], 60, "weed", lambda: read_log(log_path))
        credentials = folder / "credentials"
        credentials.write_text(f"[default]\naws_access_key_id = {ACCESS}\n"
                               f"aws_secret_access_key = {SECRET}\n")
        server = SeaweedS3(f"http://127.0.0.1:{ports[0]}", credentials)
        _until_ready(server, process, log_path)
        yield server
    finally:
        stop_process(process, 2)  # it waits on its own servers past SIGTERM; nothing to keep


def _grpc_pair_port() -> int:
    """A free port below 55536 whose port + 10000 is free too: weed serves gRPC there."""
    while True:
        port = random.randrange(10000, 55000)
        with contextlib.ExitStack() as held:
            try:
                for candidate in (port, port + 10000):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return port


def _until_ready(server: SeaweedS3, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """The S3 port listens before the filer and volumes are up: wait for a real answer."""
    deadline = time.monotonic() + 60
    client = server.client()
    while True:
        try:
            client.list_buckets()
            probe = server.new_bucket(f"probe-{time.monotonic_ns()}")
            client.put_object(Bucket=probe, Key="k", Body=b"x")
            return
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"weed did not get ready:\n{read_log(log_path)}") from None
            time.sleep(0.5)


async def wait_archived(data_dir: Path, visit: str, timeout: float = 40) -> dict[str, Any]:
    """The index's record of the visit's archive, once the server has written it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = server_rows(data_dir, "SELECT bucket_json FROM recordings WHERE visit = ?",
                           (visit,))
        if rows and rows[0][0]:
            return dict(json.loads(rows[0][0]))
        if time.monotonic() > deadline:
            raise AssertionError(f"{visit} was not archived in {timeout:g} s")
        await asyncio.sleep(0.5)


def repoint(data_dir: Path, visit: str, rel: str, version: str) -> None:
    """Make the index name another version of one object, behind the server's back."""
    db = open_database(server_database(data_dir))
    try:
        (text,), = db.execute("SELECT bucket_json FROM recordings WHERE visit = ?",
                              (visit,)).fetchall()
        index = json.loads(text)
        index["objects"][rel]["version"] = version
        db.execute("UPDATE recordings SET bucket_json = ? WHERE visit = ?",
                   (json.dumps(index, separators=(",", ":")), visit))
    finally:
        db.close()
