"""Encryption at rest as configured: the vault the server opens recordings through, and
the ``visitbridge recordings kek`` commands that create and rotate its key.

Off unless ``recordings_key_file`` names a keyring: the embedded mode then records in
plain files, as before. A configured file that is missing or unreadable stops the
server from starting rather than recording in the clear by mistake.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from app.config import Config, load
from recorder.keystore import DataKeys, KeyringFile, KeyUnavailable, create_keyring, rotate
from recorder.vault import Vault


def open_vault(config: Config) -> Vault:
    """Encrypting with the configured keyring, or plain (reading encrypted files then
    fails with a message saying the key is not configured). Raises KeyUnavailable."""
    if config.recordings_key_file is None:
        return Vault()
    return Vault(DataKeys(config.data_keys_dir, KeyringFile(config.recordings_key_file)))


def _configured(args: argparse.Namespace) -> Config | None:
    config = load(args.config)
    if config.recordings_key_file is None:
        print("recordings_key_file is not configured", file=sys.stderr)
        return None
    return config


def kek_create(args: argparse.Namespace) -> int:
    config = _configured(args)
    if config is None:
        return 2
    try:
        kid = create_keyring(config.recordings_key_file)  # type: ignore[arg-type]
    except FileExistsError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"created key-encryption key {kid} in {config.recordings_key_file}")
    return 0


def kek_rotate(args: argparse.Namespace) -> int:
    """A new key-encryption key; every data key re-wrapped under it; the old one gone."""
    config = _configured(args)
    if config is None:
        return 2
    try:
        old = KeyringFile(config.recordings_key_file).ids  # type: ignore[arg-type]
        kid, count = rotate(config.recordings_key_file,  # type: ignore[arg-type]
                            config.data_keys_dir)
    except KeyUnavailable as exc:
        print(f"cannot rotate: {exc}", file=sys.stderr)
        return 2
    from records import store
    from records.audit import AuditLog

    db = store.connect(config.database)
    AuditLog(db).record(action="recording_key_rotated",
                        actor=os.environ.get("USER", "operator"), role="operator",
                        now=time.time(), detail={"old": old, "new": kid, "rewrapped": count})
    db.close()
    print(f"key-encryption key is now {kid}; {count} data key(s) re-wrapped")
    return 0
