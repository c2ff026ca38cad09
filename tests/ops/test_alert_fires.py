"""The recording alert fires, in a real Prometheus, when recording really fails."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.support.binaries import need_binary
from tests.support.prometheus import ALERTS, api, scraped_server, until
from tests.support.server import Participant, participants, visit_now


def recording_alert_expr() -> str:
    text = ALERTS.read_text()
    start = text.index("alert: VisitbridgeRecordingFailing")
    expr = text[start:].split("expr: >-", 1)[1].split("labels:", 1)[0]
    return " ".join(line.strip() for line in expr.strip().splitlines())


async def test_recording_failure_fires_the_recording_alert(
        tmp_path: Path, small_volume: Path) -> None:  # noqa: F811
    need_binary("prometheus")
    expr = recording_alert_expr()
    with scraped_server(tmp_path, VISITBRIDGE_RECORDINGS_PATH=str(small_volume),
                        VISITBRIDGE_RECORDINGS_MIN_FREE_MB="0") as (server, prom):
        async with aiohttp.ClientSession() as http:
            async def quiet() -> bool:
                body = await api(http, prom, "/api/v1/query", query="up")
                return bool(body.get("data", {}).get("result"))

            await until(quiet, 30, "the first scrape")
            body = await api(http, prom, "/api/v1/query", query=expr)
            assert body["status"] == "success" and body["data"]["result"] == [], body

            visit = visit_now("alert-1")
            people = [Participant(server, server.token(f"{r}-a", r, visit), noise=True)
                      for r in ("inmate", "family")]
            async with participants(*people):
                for p in people:
                    await p.join()
                await people[1].wait_for(
                    lambda: any(e["type"] == "ended" for e in people[1].events), 60)
                ended = next(e for e in people[1].events if e["type"] == "ended")
                assert ended["cause"] == "recording_failed"

            async def firing() -> bool:
                body = await api(http, prom, "/api/v1/query", query=expr)
                return any(r["metric"].get("reason") == "disk_full"
                           for r in body["data"]["result"])

            await until(firing, 30, "the recording alert expression to fire")

            async def alert_active() -> bool:
                body = await api(http, prom, "/api/v1/alerts")
                return any(a["labels"]["alertname"] == "VisitbridgeRecordingFailing"
                           and a["state"] in ("pending", "firing")
                           for a in body["data"]["alerts"])

            await until(alert_active, 30, "the VisitbridgeRecordingFailing alert")
