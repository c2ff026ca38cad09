"""The anchoring job against a real RFC 3161 authority (``openssl ts`` on loopback):
tokens that verify with rfc3161-client and by hand, an authority that is down, exports."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from rfc3161_client import VerifierBuilder, decode_timestamp_response

from recorder.anchored import visit_anchors
from recorder.export import VERIFYING_NAME, export_visit
from recorder.signing import RecordingKey, verify_with
from records.anchoring import TSA_REQUESTS, Anchorer, AnchorPacing, CheckpointStore, verify_anchors
from records.archive import Archive
from records.audit import AuditLog
from records.store import connect
from records.timestamp import load_roots
from tests.support.tsa import Authority

T0 = 1_760_000_000.0


@pytest.fixture
def authority(tmp_path: Path) -> Iterator[Authority]:
    tsa = Authority(tmp_path / "tsa").start()
    yield tsa
    tsa.stop()


def anchorer(db: object, tsa: Authority, key: RecordingKey, now: list[float]) -> Anchorer:
    return Anchorer(db, tsa.url, load_roots(tsa.ca.read_bytes()), key,  # type: ignore[arg-type]
                    AnchorPacing(interval_s=60, max_backoff_s=8),
                    clock=lambda: now[0])


async def step(job: Anchorer) -> float:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        return await job._step(session)


async def test_checkpoints_get_tokens_that_verify_with_rfc3161_client_and_openssl(
        tmp_path: Path, database: Path | str, authority: Authority) -> None:
    db = connect(database)
    audit, key, now = AuditLog(db), RecordingKey.generate(), [T0]
    job = anchorer(db, authority, key, now)
    for i in range(3):
        audit.record(action="mute", actor="officer-a", role="officer", now=T0 + i)
    await step(job)
    [row] = CheckpointStore(db).rows()
    assert authority.requests == 1

    # rfc3161-client, on its own: the token is granted, signed by a TSA certificate that
    # chains to the test CA, over exactly the checkpoint's bytes.
    response = decode_timestamp_response(row["token"])
    root = x509.load_pem_x509_certificate(authority.ca.read_bytes())
    verifier = VerifierBuilder().add_root_certificate(root).build()
    assert verifier.verify_message(response, row["data"])
    assert response.tst_info.message_imprint.message.hex() == row["hash"]
    assert b'"audit":{"hash":"' in row["data"] and b'"seq":3}' in row["data"]
    with pytest.raises(Exception, match="Mismatch"):
        verifier.verify_message(response, row["data"].replace(b'"seq":3', b'"seq":2'))
    # A root the token does not chain to is refused.
    other = Authority(tmp_path / "other-tsa")
    stranger = x509.load_pem_x509_certificate(other.ca.read_bytes())
    with pytest.raises(Exception, match="(?i)certificate|chain|verif"):
        VerifierBuilder().add_root_certificate(stranger).build().verify_message(
            response, row["data"])

    # By hand, with openssl alone.
    (tmp_path / "cp.json").write_bytes(row["data"])
    (tmp_path / "cp.tsr").write_bytes(row["token"])
    hand = subprocess.run(["openssl", "ts", "-verify", "-data", "cp.json", "-in", "cp.tsr",
                           "-CAfile", str(authority.ca)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert "Verification: OK" in hand.stdout, hand.stderr

    verdict = verify_anchors(db, [root], lambda d, s: verify_with(key.public_pem, d, s))
    assert verdict.ok and verdict.anchored_seq == 3


async def test_an_authority_that_is_down_delays_anchoring_and_nothing_else(
        database: Path | str, authority: Authority, caplog: pytest.LogCaptureFixture) -> None:
    db = connect(database)
    audit, key, now = AuditLog(db), RecordingKey.generate(), [T0]
    job = anchorer(db, authority, key, now)
    audit.record(action="mute", actor="officer-a", role="officer", now=T0)
    authority.stop()
    errors_before = TSA_REQUESTS.labels("error")._value.get()
    with caplog.at_level(logging.WARNING, logger="records.anchoring"):
        await step(job)
    assert TSA_REQUESTS.labels("error")._value.get() == errors_before + 1
    assert "time-stamp authority failed: audit checkpoint 1 not anchored, retrying in" \
        in caplog.text
    assert CheckpointStore(db).rows() == []
    # The log goes on; the job waits out its backoff instead of hammering the authority.
    audit.record(action="unmute", actor="officer-a", role="officer", now=T0 + 1)
    authority.start()
    await step(job)
    assert authority.requests == 0
    # Failures back off, capped: 1-2 s, 2-4 s, 4-8 s, then at most 8 s.
    waits = []
    authority.stop()
    for _ in range(6):
        now[0] = job._retry_at
        await step(job)
        waits.append(job._retry_at - now[0])
    assert all(1 <= w <= 8 for w in waits) and waits[-1] >= 4, waits
    authority.start()
    now[0] = job._retry_at
    await step(job)
    [row] = CheckpointStore(db).rows()
    assert b'"seq":2}' in row["data"]  # it covers what was written while it was down


async def test_an_export_carries_the_checkpoint_of_its_seal_and_it_checks_by_hand(
        tmp_path: Path, database: Path | str, authority: Authority) -> None:
    db = connect(database)
    audit, key, now = AuditLog(db), RecordingKey.generate(), [T0]
    archive = Archive(db)
    archive.started("visit-7", "inmate-a", "Alex", T0, T0 + 60, T0)
    seal = "ab" * 32
    archive.sealed("visit-7", seal, 10, 1.0, {}, T0 + 5)
    audit.record(action="recording_sealed", actor="recorder", role="system", now=T0 + 5,
                 visit="visit-7", detail={"seal": seal})
    job = anchorer(db, authority, key, now)
    await step(job)
    assert CheckpointStore(db).pending_seals() == {}
    anchors = visit_anchors(db, "visit-7", authority.ca)
    assert sorted(anchors) == ["anchors/checkpoint-1.json", "anchors/checkpoint-1.sig",
                               "anchors/checkpoint-1.tsr", "anchors/tsa-ca.pem"]
    assert visit_anchors(db, "other-visit", authority.ca) == {}

    folder = tmp_path / "recordings" / "visit-7"
    folder.mkdir(parents=True)
    out = await asyncio.to_thread(export_visit, folder, key, tmp_path / "x.zip",
                                  [], seal, [], anchors)
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(out) as archive_zip:
        archive_zip.extractall(unzipped)
    text = (unzipped / VERIFYING_NAME).read_text()
    assert "TIME-STAMPED CHECKPOINTS" in text
    # The commands VERIFYING.txt gives, with N = 1.
    commands = [line.strip() for line in text.split("TIME-STAMPED CHECKPOINTS")[1]
                .replace("\\\n", " ").splitlines()
                if line.startswith("    ") and line[4] != " "]
    results = [subprocess.run(["bash", "-c", c.replace("checkpoint-N", "checkpoint-1")],
                              cwd=unzipped, capture_output=True, text=True, timeout=30)
               for c in commands]
    outputs = [r.stdout + r.stderr for r in results]
    assert all(r.returncode == 0 for r in results), outputs
    assert "Verification: OK" in outputs[0]
    assert "Time stamp:" in outputs[1]
    assert outputs[2].split("#")[0].strip() == seal
    assert "Signature Verified Successfully" in outputs[-1]
