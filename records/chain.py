"""Canonical JSON and hash chains: how the audit log and recording manifests prove their
entries were not edited, removed, reordered or inserted.

An entry's hash is the SHA-256 hex of the canonical JSON of its fields, less those the
hash cannot cover (the hash itself, a signature of it). Each entry also carries the hash
of the entry before it (``GENESIS`` for the first), so changing any entry breaks every
link after it. Two chains are kept on disk and both are public contracts that people
check by hand, so each keeps its own rules:

* the audit log (``records.audit``): Python's compact sorted JSON, UTF-8, floats as
  Python writes them (``1760000000.0``); the link field is ``prev_hash``.
* the recording manifest (``recorder.manifest``): the same text as ``jq -cS`` prints it
  (``jq=True``: a float with an integral value as an integer, DEL as ``\\u007f``), so
  ``jq -cS 'del(.hash, .sig)' | sha256sum`` reproduces a hash; the link field is ``prev``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64


def canonical(value: Any, *, jq: bool = False) -> str:
    """The one JSON text of a value: sorted keys, no spaces, non-ASCII characters as they
    are, NaN and infinities refused (ValueError).

    ``jq=True`` makes it what ``jq -cS`` prints: DEL is escaped as ``\\u007f`` (it only
    occurs inside strings, so the replacement touches nothing else) and a float with an
    integral value is written as an integer (jq prints ``2.0`` as ``2``). Other floats
    print the same in both (shortest round-trip form).
    """
    text = json.dumps(_jq_numbers(value) if jq else value, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("\x7f", "\\u007f") if jq else text


def _jq_numbers(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _jq_numbers(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_jq_numbers(inner) for inner in value]
    return value


@dataclass(frozen=True)
class Link:
    """How one entry sits in its chain."""

    follows: bool  # it names the hash of the entry before it (or that one is unknown)
    intact: bool  # its content matches its own hash


@dataclass(frozen=True)
class Chain:
    """The rules of one chain: where the previous hash is, what the hash leaves out, and
    which canonical form it is computed over. Entries keep their own hash in ``hash``."""

    prev: str
    unhashed: tuple[str, ...]
    jq: bool

    def canonical(self, value: Any) -> bytes:
        """The UTF-8 bytes of the canonical JSON of ``value`` under this chain's rules."""
        return canonical(value, jq=self.jq).encode("utf-8")

    def entry_hash(self, entry: Mapping[str, Any]) -> str:
        """SHA-256 hex of the canonical JSON of every field but the unhashed ones."""
        return hashlib.sha256(
            self.canonical({k: v for k, v in entry.items() if k not in self.unhashed})
        ).hexdigest()

    def check(self, entry: Mapping[str, Any], prev: str | None) -> Link:
        """Check one entry against the hash of the one before it (None: not known, for
        example after an unreadable line)."""
        try:
            intact = self.entry_hash(entry) == entry.get("hash")
        except ValueError:  # NaN or infinity: no canonical form, so no valid hash
            intact = False
        return Link(follows=prev is None or entry.get(self.prev) == prev, intact=intact)
