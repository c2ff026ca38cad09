"""Where recordings' keys live: the key-encryption keys and the wrapped data keys.

``KeyEncryptionKeys`` is the seam for a KMS or an HSM: it wraps and unwraps 32-byte data
keys and never hands out its own key. ``KeyringFile`` is the one implemented: a JSON
keyring in a file (mode 0600), ``{"keys": [base64, ...]}``, the first key current and any
others kept only while a rotation re-wraps what they wrapped. It is read again whenever
the file changes, so a rotation run by the command line reaches a running server.

``DataKeys`` keeps each visit's wrapped data keys in ``<folder>/<visit>.jsonl``, one line
per encrypted file, apart from the media: deleting a visit's file shreds its recording
wherever copies of the media went. Lines are appended under an exclusive ``flock``;
a rotation rewrites a visit's file under the same lock and renames it into place, so a
writer that locked the old file looks again.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from recorder.envelope import KEY_BYTES, EnvelopeError, kek_id, new_key, unwrap, wrap
from recorder.signing import fsync_dir

CACHED_VISITS = 64  # visits whose key files stay parsed (replay opens many files)


class KeyUnavailable(Exception):
    """A recording is encrypted and its key cannot be had (no KEK, or shredded)."""


class KeyEncryptionKeys(Protocol):
    def wrap(self, file: str, data_key: bytes) -> dict[str, str]: ...

    def unwrap(self, record: dict[str, str]) -> bytes: ...


def write_keyring(path: Path, keys: list[bytes]) -> None:
    """Replace the keyring file atomically, mode 0600, durably."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        json.dump({"keys": [base64.b64encode(k).decode() for k in keys]}, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def create_keyring(path: Path) -> str:
    """A new keyring file with one fresh key; refuses to replace an existing one (every
    recording it wrapped would be lost). Returns the key's id."""
    if path.exists():
        raise FileExistsError(f"{path} exists; a key-encryption key is never replaced "
                              "(rotate it instead)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_key()
    write_keyring(path, [key])
    return kek_id(key)


class KeyringFile:
    """Key-encryption keys from a keyring file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None
        self._keys: list[bytes] = []
        self.refresh()

    @property
    def keys(self) -> list[bytes]:
        return list(self._keys)

    @property
    def ids(self) -> list[str]:
        return [kek_id(k) for k in self._keys]

    def refresh(self) -> None:
        try:
            stat = self.path.stat()
        except OSError as exc:
            raise KeyUnavailable(f"the key-encryption key file {self.path} cannot be read: "
                                 f"{exc.strerror}") from None
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        try:
            keys = [base64.b64decode(k, validate=True)
                    for k in json.loads(self.path.read_text())["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyUnavailable(f"{self.path} is not a keyring: {exc}") from None
        if not keys or any(len(k) != KEY_BYTES for k in keys):
            raise KeyUnavailable(f"{self.path} holds no 32-byte key")
        self._keys, self._seen = keys, seen

    def wrap(self, file: str, data_key: bytes) -> dict[str, str]:
        return wrap(self._keys[0], file, data_key)

    def unwrap(self, record: dict[str, str]) -> bytes:
        for key in self._keys:
            if kek_id(key) == record.get("kek"):
                return unwrap(key, record)
        raise KeyUnavailable(f"the data key of file {record.get('file')} is wrapped by key "
                             f"{record.get('kek')}, which {self.path} does not hold")


class DataKeys:
    """The wrapped data keys of every visit, in ``folder``."""

    def __init__(self, folder: Path, keks: KeyEncryptionKeys) -> None:
        self.folder = Path(folder)
        self.keks = keks
        self._read: dict[str, tuple[tuple[int, int, int], dict[str, dict[str, str]]]] = {}
        self._created: set[str] = set()  # visits whose key file is new, until synced

    def path(self, visit: str) -> Path:
        return self.folder / f"{visit}.jsonl"

    def add(self, visit: str, file: str, data_key: bytes) -> None:
        """Record one file's data key (wrapped). Not synced: ``sync`` is, off the loop."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(visit)
        if not path.exists():
            self._created.add(visit)
        with self.locked(path, "ab") as handle:
            refresh = getattr(self.keks, "refresh", None)
            if refresh is not None:
                refresh()  # under the lock: a rotation in progress is seen
            handle.write(json.dumps(self.keks.wrap(file, data_key)).encode() + b"\n")

    def sync(self, visit: str) -> None:
        path = self.path(visit)
        if path.exists():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if visit in self._created:  # its directory entry, once
                fsync_dir(self.folder)
                self._created.discard(visit)

    def records(self, visit: str) -> dict[str, dict[str, str]]:
        """The visit's wrapped keys by file id, read again only when the file changed
        (a replay opens many files; shredding removes it, so nothing stale survives)."""
        path = self.path(visit)
        try:
            stat = path.stat()
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            cached = self._read.get(visit)
            if cached is not None and cached[0] == seen:
                return cached[1]
            text = path.read_text()
        except FileNotFoundError:
            self._read.pop(visit, None)
            return {}
        records = {r["file"]: r for r in map(json.loads, text.splitlines()) if r}
        self._read[visit] = (seen, records)
        if len(self._read) > CACHED_VISITS:
            self._read.pop(next(iter(self._read)))
        return records

    def key(self, visit: str, file: str) -> bytes:
        """The data key of one file of a visit; KeyUnavailable if there is none."""
        record = self.records(visit).get(file)
        if record is None:
            raise KeyUnavailable(f"no data key for file {file} of visit {visit}: "
                                 "shredded, or never recorded here")
        refresh = getattr(self.keks, "refresh", None)
        if refresh is not None:
            refresh()
        try:
            return self.keks.unwrap(record)
        except EnvelopeError as exc:
            raise KeyUnavailable(str(exc)) from None

    def shred(self, visit: str) -> int:
        """Delete every data key of a visit; returns how many there were."""
        return shred(self.folder, visit)

    def rewrap(self, visit: str) -> int:
        """Re-wrap every data key of a visit under the current KEK; returns how many
        changed. The media files are not touched."""
        path = self.path(visit)
        with self.locked(path, "ab"):
            changed, lines = 0, []
            for record in self.records(visit).values():
                fresh = self.keks.wrap(record["file"], self.keks.unwrap(record))
                changed += fresh["kek"] != record["kek"]
                lines.append(json.dumps(fresh))
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w") as file:
                file.write("".join(line + "\n" for line in lines))
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        fsync_dir(self.folder)
        return changed

    def visits(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.jsonl"))

    @staticmethod
    @contextmanager
    def locked(path: Path, mode: str) -> Iterator[object]:
        """Open ``path`` and hold its exclusive lock, on the file the path names once
        the lock is held (a rotation may have renamed a new one into place)."""
        while True:
            handle = open(path, mode)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                current = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                current = False
            if current:
                try:
                    yield handle
                finally:
                    handle.close()
                return
            handle.close()


def shred(folder: Path, visit: str) -> int:
    """Delete every data key of a visit (no key-encryption key needed: retention shreds
    even when encryption has since been turned off); returns how many there were."""
    path = Path(folder) / f"{visit}.jsonl"
    if not path.exists():
        return 0
    with DataKeys.locked(path, "ab"):
        count = sum(1 for line in path.read_text().splitlines() if line.strip())
        path.unlink()
    fsync_dir(Path(folder))
    return count


def rotate(keyring: Path, data_keys: Path) -> tuple[str, int]:
    """Rotate the key-encryption key: a new key becomes current (the old stays in the
    keyring meanwhile, so a running server keeps unwrapping), every data key is
    re-wrapped under it, then the old keys are dropped. Returns (new id, keys re-wrapped).
    Run again after an interruption: it finishes the job."""
    keks = KeyringFile(keyring)
    new = new_key()
    write_keyring(keyring, [new, *keks.keys])
    keks.refresh()
    store = DataKeys(data_keys, keks)
    changed = sum(store.rewrap(visit) for visit in store.visits())
    write_keyring(keyring, [new])
    return kek_id(new), changed
