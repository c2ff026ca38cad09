"""The write-once archive: S3-compatible object storage under Object Lock (boto3).

Only this module talks to the bucket. Every call blocks (boto3 is synchronous): call it
from a thread. Objects are written with COMPLIANCE retention, which nobody (not even
the bucket's owner) can shorten or lift before its date; a legal hold is an S3 legal
hold, which blocks deletion whatever the retention date.

Secrets never leave the credentials file: the endpoint is a plain URL (``app.config``
refuses one with a user or password in it) and nothing here logs a key.
"""

from __future__ import annotations

import configparser
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

READ_BYTES = 1 << 20
# What an S3 server answers when Object Lock forbids an operation.
REFUSED_CODES = ("AccessDenied", "ObjectLocked", "InvalidRequest")


class BucketError(Exception):
    """The bucket could not be reached or did not do what was asked."""


class BucketRefused(BucketError):
    """The bucket refused the operation (a locked version's deletion, for one)."""


@dataclass(frozen=True)
class BucketSettings:
    endpoint: str  # e.g. https://s3.example.org
    bucket: str
    region: str
    credentials_file: Path  # INI: [default] aws_access_key_id, aws_secret_access_key


def read_credentials(path: Path) -> tuple[str, str]:
    """(access key id, secret key) from an AWS-style credentials file's ``[default]``."""
    parser = configparser.ConfigParser()
    try:
        with open(path, encoding="utf-8") as file:
            parser.read_file(file)
        section = parser["default"]
        return section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip()
    except (OSError, KeyError, configparser.Error) as exc:
        raise BucketError(f"the S3 credentials file {path} cannot be used: "
                          f"{type(exc).__name__}") from None


def _failure(exc: Exception, what: str) -> BucketError:
    """The exception to raise for a failed call: refused, or failed, saying what failed."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        text = f"{what}: the bucket answered {code or 'an error'}"
        return BucketRefused(text) if code in REFUSED_CODES else BucketError(text)
    return BucketError(f"{what}: {type(exc).__name__}")


class Bucket:
    def __init__(self, settings: BucketSettings) -> None:
        # Imported here: boto3 costs a fifth of a second at every start of a server (and
        # of each command) that has no bucket configured.
        import boto3
        from botocore.client import Config as ClientConfig

        access, secret = read_credentials(settings.credentials_file)
        self.name = settings.bucket
        self._s3: Any = boto3.session.Session().client(
            "s3", endpoint_url=settings.endpoint, region_name=settings.region,
            aws_access_key_id=access, aws_secret_access_key=secret,
            config=ClientConfig(s3={"addressing_style": "path"}, signature_version="s3v4",
                                retries={"max_attempts": 3, "mode": "standard"},
                                connect_timeout=10, read_timeout=60))

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._s3, method)(Bucket=self.name, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc, what) from None

    def check_locked(self) -> None:
        """Raise BucketError unless the bucket has Object Lock enabled: archiving into a
        bucket without it would remove the local copy for one that can be overwritten."""
        answer = self._call(f"reading the Object Lock setting of bucket {self.name}",
                            "get_object_lock_configuration")
        if answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            raise BucketError(f"bucket {self.name} does not have Object Lock enabled")

    def put(self, key: str, path: Path, retain_until: datetime, hold: bool) -> str:
        """Write ``path`` as a new version of ``key``, locked; returns its version id."""
        with open(path, "rb") as body:
            answer = self._call(f"uploading {key}", "put_object", Key=key, Body=body,
                                ObjectLockMode="COMPLIANCE",
                                ObjectLockRetainUntilDate=retain_until,
                                ObjectLockLegalHoldStatus="ON" if hold else "OFF")
        version = answer.get("VersionId")
        if not version:
            raise BucketError(f"uploading {key}: the bucket kept no version (versioning off?)")
        return str(version)

    def chunks(self, key: str, version: str, start: int = 0,
               end: int | None = None) -> Iterator[bytes]:
        """The bytes of one version, ``start`` to ``end`` (inclusive; None: to the end)."""
        wanted = f"bytes={start}-{'' if end is None else end}"
        body = self._call(f"reading {key}", "get_object", Key=key, VersionId=version,
                          Range=wanted)["Body"]
        try:
            while piece := body.read(READ_BYTES):
                yield piece
        except (BotoCoreError, OSError) as exc:
            raise _failure(exc, f"reading {key}") from None
        finally:
            body.close()

    def digest(self, key: str, version: str) -> tuple[str, int]:
        """SHA-256 (hex) and size of one version, read back in full."""
        sha, size = hashlib.sha256(), 0
        for piece in self.chunks(key, version):
            sha.update(piece)
            size += len(piece)
        return sha.hexdigest(), size

    def download(self, key: str, version: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "xb") as file:
            for piece in self.chunks(key, version):
                file.write(piece)

    def set_hold(self, key: str, version: str, on: bool) -> None:
        self._call(f"setting the legal hold of {key}", "put_object_legal_hold", Key=key,
                   VersionId=version, LegalHold={"Status": "ON" if on else "OFF"})

    def retain(self, key: str, version: str, until: datetime) -> None:
        """Set a version's COMPLIANCE retention date (the server refuses an earlier one)."""
        self._call(f"setting the retention of {key}", "put_object_retention", Key=key,
                   VersionId=version,
                   Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})

    def delete(self, key: str, version: str) -> None:
        """Delete one version for good; BucketRefused while it is retained or held."""
        self._call(f"deleting {key}", "delete_object", Key=key, VersionId=version)


class ObjectReader(io.RawIOBase):
    """One object version as a seekable binary file, read with ranged GETs: replay
    serves byte ranges and decrypts chunk by chunk straight from the bucket."""

    def __init__(self, bucket: Bucket, key: str, version: str, size: int) -> None:
        super().__init__()
        self._bucket, self._key, self._version, self._size = bucket, key, version, size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._pos)
        if wanted <= 0:
            return 0
        data = b"".join(self._bucket.chunks(self._key, self._version, self._pos,
                                            self._pos + wanted - 1))
        buffer[:len(data)] = data
        self._pos += len(data)
        return len(data)
