"""``visitbridge audit verify`` against time-stamped checkpoints: a real server anchors its
audit log at a real RFC 3161 authority, and a root user's consistent rewrite is caught."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp

from records.audit import COLUMNS, entry_hash, verify_file
from records.dialect import open_database
from tests.support.databases import drop_trigger
from tests.support.postgres import server_database
from tests.support.server import Server, make_server, start, stop
from tests.support.server_records import audit_verify as verify_command
from tests.support.server_records import server_rows
from tests.support.tsa import Authority


def audit_verify(data_dir: Path, authority: Authority,
                 *extra: str) -> subprocess.CompletedProcess[str]:
    """The command as the operator runs it, configured like the server."""
    return verify_command(data_dir, *extra, VISITBRIDGE_TSA_URL=authority.url,
                          VISITBRIDGE_TSA_CA_FILE=str(authority.ca))


def anchored_up_to(data_dir: Path) -> tuple[int, int]:
    """(newest entry a checkpoint covers, newest entry)."""
    covered, newest = server_rows(
        data_dir, "SELECT (SELECT COALESCE(MAX(audit_seq), 0) FROM checkpoints), "
                  "(SELECT COALESCE(MAX(seq), 0) FROM audit)")[0]
    return covered, newest


async def cancel(server: Server, visit: str, reason: str) -> None:
    token = server.token("records-system", "records", None)
    async with aiohttp.ClientSession() as http, http.post(
            f"{server.url}/api/visits/{visit}/cancel", json={"reason": reason},
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()


def rewrite_tail(database: Path | str, count: int, reason: str) -> None:
    """What a root user does with the database's own client: drop the triggers, rewrite
    the last entries with their hashes and links recomputed, and move the head to match."""
    db = open_database(database)
    try:
        drop_trigger(db, "audit_no_update", "audit")
        drop_trigger(db, "audit_head_forward_only", "audit_head")
        rows = [dict(zip(COLUMNS, r, strict=True)) for r in db.execute(
            f"SELECT {','.join(COLUMNS)} FROM audit ORDER BY seq")]
        prev = rows[-count - 1]["hash"]
        for row in rows[-count:]:
            row["reason"], row["prev_hash"] = reason, prev
            row["hash"] = prev = entry_hash({k: v for k, v in row.items() if k != "hash"})
            db.execute("UPDATE audit SET reason = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                       (row["reason"], row["prev_hash"], row["hash"], row["seq"]))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?", (rows[-1]["seq"], prev))
    finally:
        db.close()


async def test_a_consistent_rewrite_of_the_tail_and_head_is_caught_by_the_anchor(
        tmp_path: Path) -> None:
    authority = Authority(tmp_path / "tsa").start()
    data_dir = tmp_path / "server"
    server = start(make_server(data_dir, VISITBRIDGE_TSA_URL=authority.url,
                               VISITBRIDGE_TSA_CA_FILE=str(authority.ca)))
    try:
        for i in range(4):
            await cancel(server, f"anchor-{i}", "booking withdrawn by the family")
        deadline = time.time() + 20
        while (covered := anchored_up_to(data_dir))[0] < covered[1] and time.time() < deadline:
            await asyncio.sleep(0.2)  # a visit ended: the job anchors within seconds
        assert covered[0] == covered[1] >= 4, covered
    finally:
        await asyncio.to_thread(stop, server)
        authority.stop()
    assert "audit checkpoint anchored" in server.log_text()

    untouched = audit_verify(data_dir, authority)
    assert untouched.returncode == 0, untouched.stderr
    lines = untouched.stdout.splitlines()
    assert lines[0] == f"audit log intact: {covered[1]} entries verified"
    assert lines[1].startswith(f"anchored: entries 1 to {covered[1]} are covered by ")

    database = server_database(data_dir)
    rewrite_tail(database, 2, "routine check")
    assert verify_file(database).ok  # the chain and its head alone no longer tell
    tampered = audit_verify(data_dir, authority)
    assert tampered.returncode == 1, (tampered.stdout, tampered.stderr)
    assert tampered.stdout == ""
    assert tampered.stderr.startswith("AUDIT LOG TAMPERED: ")
    assert (f"Entry {covered[1]} differs from the one checkpoint" in tampered.stderr
            and "the log was rewritten after it was anchored" in tampered.stderr)

    # Without the authority's root, the checkpoints cannot be checked: said, not skipped.
    unchecked = audit_verify(data_dir, authority, "--tsa-ca", str(tmp_path / "missing.pem"))
    assert unchecked.returncode == 2 and "cannot check the checkpoints" in unchecked.stderr


async def test_a_server_whose_authority_is_down_runs_visits_and_says_so(
        tmp_path: Path) -> None:
    authority = Authority(tmp_path / "tsa")  # made, never started: nothing listens
    data_dir = tmp_path / "server"
    server = start(make_server(data_dir, VISITBRIDGE_TSA_URL=authority.url,
                               VISITBRIDGE_TSA_CA_FILE=str(authority.ca)))
    try:
        await cancel(server, "down-1", "booking withdrawn")
        deadline = time.time() + 20
        while "time-stamp authority failed" not in server.log_text() and time.time() < deadline:
            await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http:
            async with http.get(server.url + "/metrics") as resp:
                metrics = await resp.text()
            async with http.get(server.url + "/healthz") as resp:
                assert resp.status == 200
        await cancel(server, "down-2", "booking withdrawn")  # visits go on
    finally:
        await asyncio.to_thread(stop, server)
    assert "time-stamp authority failed: audit checkpoint 1 not anchored" in server.log_text()
    assert 'visitbridge_tsa_requests_total{result="error"}' in metrics
    assert 'visitbridge_tsa_requests_total{result="error"} 0.0' not in metrics
    assert "visitbridge_audit_anchor_pending 1.0" in metrics
    result = audit_verify(data_dir, authority)
    assert result.returncode == 0, result.stderr
    assert "NOT ANCHORED: no time-stamped checkpoint" in result.stdout
