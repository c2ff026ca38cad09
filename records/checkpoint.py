"""Checkpoints of the audit chain head and of recording seals, and what verifying them
decides; plain logic, no I/O.

The audit chain proves its entries were not edited, but whoever can write the database
can rewrite the newest entries and the head together. A checkpoint copies the head (and
the seals of recordings sealed since the one before) into a small JSON document, signed
with the server's recording key and time-stamped by an RFC 3161 authority outside the
server: the authority's token proves that exactly these bytes existed at its time, so a
later rewrite of any entry up to the checkpointed one no longer matches.

A checkpoint's bytes are the canonical JSON of its body (``records.chain.canonical``);
its hash is their SHA-256 hex, which is also the token's message imprint, so
``openssl ts -verify -data checkpoint.json`` checks a token by hand. Checkpoints form a
chain of their own (``n`` and ``prev``), so removing one from the middle shows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from records.chain import GENESIS, canonical

VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    n: int
    prev: str  # hash of checkpoint n - 1, GENESIS for the first
    at: float  # when the server made it (the token's time is the one to trust)
    audit_seq: int  # the audit head: 0 and GENESIS for an empty log
    audit_hash: str
    seals: Mapping[str, str] = field(default_factory=dict)  # visit -> seal hash
    key_id: str = ""  # the recording key that signs it

    def body(self) -> dict[str, Any]:
        return {"v": VERSION, "n": self.n, "prev": self.prev, "at": self.at,
                "audit": {"seq": self.audit_seq, "hash": self.audit_hash},
                "seals": dict(self.seals), "key_id": self.key_id}

    def data(self) -> bytes:
        """The bytes that are hashed, signed and time-stamped."""
        return canonical(self.body()).encode("utf-8")

    def hash(self) -> str:
        return hashlib.sha256(self.data()).hexdigest()


def parse(data: bytes) -> Checkpoint:
    """A checkpoint from its stored bytes; ValueError if they are not one."""
    try:
        body = json.loads(data)
        checkpoint = Checkpoint(n=int(body["n"]), prev=str(body["prev"]), at=float(body["at"]),
                                audit_seq=int(body["audit"]["seq"]),
                                audit_hash=str(body["audit"]["hash"]),
                                seals={str(k): str(v) for k, v in body["seals"].items()},
                                key_id=str(body["key_id"]))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a checkpoint: {exc}") from None
    if body.get("v") != VERSION or checkpoint.data() != data:
        raise ValueError("not a checkpoint in canonical form")
    return checkpoint


def following(previous: Checkpoint | None, *, head: tuple[int, str],
              seals: Mapping[str, str], now: float, key_id: str) -> Checkpoint:
    """The next checkpoint after ``previous`` (None: the first)."""
    return Checkpoint(n=previous.n + 1 if previous else 1,
                      prev=previous.hash() if previous else GENESIS, at=now,
                      audit_seq=head[0], audit_hash=head[1], seals=dict(seals),
                      key_id=key_id)


def due(previous: Checkpoint | None, *, head_seq: int, pending_seals: int,
        last_visit_end: float | None, now: float, interval_s: float) -> bool:
    """Whether to make a checkpoint now: a seal waits, or the log moved since the last
    one and either the interval has passed or a visit ended after it."""
    if pending_seals:
        return True
    if previous is None:
        return head_seq > 0
    if head_seq == previous.audit_seq:
        return False
    ended_since = last_visit_end is not None and last_visit_end >= previous.at
    return ended_since or now - previous.at >= interval_s


@dataclass(frozen=True)
class Stored:
    """One checkpoint as read back, with what the edges found about it."""

    data: bytes
    stored_hash: str
    signature_ok: bool
    token_problem: str  # "" when the token verifies over ``data``
    token_time: str  # the authority's time (ISO 8601), "" if unknown


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: tuple[str, ...]
    anchored_seq: int  # the newest audit entry a verified checkpoint covers
    anchored_at: str  # that checkpoint's time-stamp time
    checkpoints: int


def judge(stored: Sequence[Stored], chain: Mapping[int, str], last_seq: int) -> Verdict:
    """Check every checkpoint and the audit chain against them.

    ``chain`` maps each audit seq to its stored hash and ``last_seq`` is the newest entry
    (the chain itself was checked by ``records.audit.verify``). A checkpoint whose entry
    is missing or has another hash means the log was rewritten after the authority saw it.
    """
    problems: list[str] = []
    previous: Checkpoint | None = None
    anchored_seq, anchored_at = 0, ""
    for item in stored:
        try:
            checkpoint = parse(item.data)
        except ValueError as exc:
            problems.append(f"A stored checkpoint is unreadable: {exc}.")
            previous = None
            continue
        name = f"Checkpoint {checkpoint.n}"
        expected_n = previous.n + 1 if previous else 1
        if checkpoint.n != expected_n or (
                checkpoint.prev != (previous.hash() if previous else GENESIS)):
            problems.append(f"{name} does not follow checkpoint {expected_n - 1}: "
                            "checkpoints were removed or reordered.")
        previous = checkpoint
        if checkpoint.hash() != item.stored_hash:
            problems.append(f"{name} does not match its stored hash.")
        if not item.signature_ok:
            problems.append(f"{name} is not signed by the recording key.")
        if item.token_problem:
            problems.append(f"{name}: its time-stamp token does not verify "
                            f"({item.token_problem}).")
            continue
        seq = checkpoint.audit_seq
        if seq > last_seq:
            problems.append(f"{name} (time-stamped {item.token_time}) covers entry {seq}, "
                            f"but the log ends at entry {last_seq}: entries were removed.")
        elif seq and chain.get(seq) != checkpoint.audit_hash:
            problems.append(f"Entry {seq} differs from the one checkpoint {checkpoint.n} "
                            f"time-stamped at {item.token_time}: the log was rewritten "
                            "after it was anchored.")
        elif seq >= anchored_seq:
            anchored_seq, anchored_at = seq, item.token_time
    return Verdict(not problems, tuple(problems), anchored_seq, anchored_at, len(stored))
