"""The refusal-spike, free-space and codec alerts and their dashboard panels, in a real
Prometheus scraping a real server.

The server is configured with a minimum free space larger than its disk, so the
free-space alerts, which follow ``recordings_min_free_mb``, must fire for it; families
are shut out by a key rotation done in the wrong order (joins signed with a key the
server does not know), so the refusal alert must fire with ``code="unknown_key"``; no
codec is ever created, so that alert must stay quiet while its metrics have series.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from auth.issuer import issue_token
from tests.support.binaries import need_binary
from tests.support.prometheus import DEPLOY, Prometheus, api, scraped_server, until
from tests.support.server import AUDIENCE, ISSUER, Server, visit_now

MIN_FREE_MB = 1 << 30  # 1 PiB: more than any test machine has free
NEW_PANELS = ("Token refusals in the last 10 minutes, by code",
              "Codec instances and decoder feeds (must stay 0)",
              "Free space on the recordings volume")
REFUSED_JOINS = 12


async def join_with_an_unpublished_key(server: Server) -> None:
    """Family joins signed by the booking system's new key, before the server has it."""
    rotated = Ed25519PrivateKey.generate()
    async with aiohttp.ClientSession() as http:
        for i in range(REFUSED_JOINS):
            visit = visit_now(f"rotation-{i}")
            token = issue_token(rotated, kid="records-2027", issuer=ISSUER, audience=AUDIENCE,
                                sub=f"family-{i}", role="family", name="Casey",
                                visit=visit, now=time.time())
            async with http.ws_connect(server.ws_url) as ws:
                await ws.send_json({"type": "join", "token": token, "visit": visit.id})
                reply = await ws.receive_json(timeout=10)
                assert (reply["type"], reply.get("code")) == ("error", "unknown_key"), reply


def panel_exprs() -> list[tuple[str, str]]:
    board = json.loads((DEPLOY / "grafana" / "visitbridge.json").read_text())
    return [(p["title"], t["expr"].replace('instance=~"$instance"', ""))
            for p in board["panels"] if p.get("title") in NEW_PANELS for t in p["targets"]]


async def test_refusal_free_space_and_codec_alerts_and_panels_in_prometheus(
        tmp_path: Path) -> None:
    need_binary("prometheus")
    with scraped_server(tmp_path,
                        VISITBRIDGE_RECORDINGS_MIN_FREE_MB=str(MIN_FREE_MB)) as (server, prom):
        await join_with_an_unpublished_key(server)
        async with aiohttp.ClientSession() as http:
            try:
                await check(http, prom)
            except BaseException:
                print("---- prometheus log ----\n" + prom.log_text()[-5000:])
                raise


async def check(http: aiohttp.ClientSession, prom: Prometheus) -> None:
    async def query(expr: str) -> list[dict[str, Any]]:
        body = await api(http, prom, "/api/v1/query", query=expr)
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    async def alerts() -> dict[str, str]:
        body = await api(http, prom, "/api/v1/alerts")
        return {a["labels"]["alertname"] + a["labels"].get("code", ""): a["state"]
                for a in body["data"]["alerts"]}

    async def raised() -> bool:
        states = await alerts()
        return {"VisitbridgeTokenRefusalSpikeunknown_key", "VisitbridgeRecordingsRefused",
                "VisitbridgeRecordingsVolumeFilling"} <= set(states)

    await until(raised, 30, "the refusal and free-space alerts")
    states = await alerts()
    assert states["VisitbridgeTokenRefusalSpikeunknown_key"] == "firing", states
    # Both have a "for": raised at once, pending until it has lasted.
    assert states["VisitbridgeRecordingsRefused"] == "pending", states
    assert states["VisitbridgeRecordingsVolumeFilling"] == "pending", states
    assert "VisitbridgeCodecInstantiated" not in states, states

    # The threshold is this server's configuration, not a number in the rules.
    minimum = await query("visitbridge_recordings_min_free_bytes")
    assert [float(r["value"][1]) for r in minimum] == [MIN_FREE_MB * 1024 * 1024]

    rules = (await api(http, prom, "/api/v1/rules", type="alert"))["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    spike = await query(loaded["VisitbridgeTokenRefusalSpike"]["query"])
    assert [(r["metric"]["code"], float(r["value"][1])) for r in spike] == [
        ("unknown_key", REFUSED_JOINS)], spike
    for name in ("VisitbridgeTokenRefusalSpike", "VisitbridgeRecordingsRefused",
                 "VisitbridgeRecordingsVolumeFilling", "VisitbridgeCodecInstantiated"):
        assert loaded[name]["health"] == "ok", loaded[name]
    # The codec alert is quiet because its counters are 0, not because they are missing.
    for name in ("visitbridge_codec_instances_total", "visitbridge_decoder_feeds_total"):
        assert [float(r["value"][1]) for r in await query(name)] == [0.0], name

    # Every new panel query returns series (as Grafana asks: a range, once scraped a few
    # times).
    async def scraped() -> bool:
        counts = await query('count_over_time(up{job="visitbridge"}[1m])')
        return bool(counts) and float(counts[0]["value"][1]) >= 5

    await until(scraped, 30, "5 scrapes")
    now = time.time()
    for title, expr in panel_exprs():
        body = await api(http, prom, "/api/v1/query_range", query=expr,
                         start=now - 10, end=now, step=1)
        assert body["status"] == "success" and body["data"]["result"], (title, expr, body)
