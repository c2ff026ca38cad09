"""Operations: deploy/prometheus and deploy/grafana against a real Prometheus and server.

A real Prometheus (Debian's package) scrapes a real server twice a second while a visit
runs. Every Grafana panel query and every alert expression must evaluate without error,
every ``visitbridge_*`` metric they use must have series scraped from the server, and
each panel must return data during the visit. Static checks: ``promtool check config``,
``promtool check rules``, ``promtool test rules`` (alerts_test.yml), the dashboard's
provisioning shape, and docs/operations.md (every configuration key, every metric the
deploy files use, a runbook section per alert).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.config import Config
from tests.support.binaries import need_binary
from tests.support.prometheus import (
    ALERTS,
    DEPLOY,
    Prometheus,
    WebhookSink,
    api,
    scraped_server,
    until,
)
from tests.support.server import (
    ROOT,
    Participant,
    Server,
    participants,
    visit_now,
)

DASHBOARD = DEPLOY / "grafana" / "visitbridge.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# Grafana's variables, as they would be expanded for a 1 s scrape interval. $instance is
# the dashboard's "All" value.
GRAFANA_VARS = {"__rate_interval": "6s", "__interval": "1s", "__range": "5m",
                "instance": ".*"}

METRIC = re.compile(r"\b((?:visitbridge|process)_[a-z0-9_]+)")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p.get("type") != "row"]


def substitute(expr: str) -> str:
    def var(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in GRAFANA_VARS, f"unknown Grafana variable ${name} in {expr}"
        return GRAFANA_VARS[name]
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)", var, expr)
    assert "$" not in out, out
    return out


def alert_rules_text() -> list[tuple[str, str]]:
    """(alert name, runbook_url) from alerts.yml, read as text (no YAML parser needed)."""
    text = ALERTS.read_text()
    names = re.findall(r"^\s*- alert:\s*(\w+)\s*$", text, re.M)
    urls = re.findall(r"^\s*runbook_url:\s*(\S+)\s*$", text, re.M)
    assert len(names) == len(urls), "every alert needs exactly one runbook_url"
    return list(zip(names, urls, strict=True))


def doc_anchors() -> set[str]:
    """GitHub-style anchors of docs/operations.md's headings."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", OPERATIONS.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# -- static checks ----------------------------------------------------------------------------

def test_promtool_accepts_the_config_and_rules_and_the_rule_tests_pass() -> None:
    promtool = need_binary("promtool")
    for args in (["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                 ["check", "rules", str(ALERTS)],
                 ["test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml")]):
        done = subprocess.run([promtool, *args], capture_output=True, text=True,
                              cwd=DEPLOY / "prometheus", timeout=60)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_dashboard_is_ready_for_provisioning() -> None:
    board = dashboard()
    assert board["uid"] == "visitbridge" and board["title"] and board["schemaVersion"] >= 36
    assert "${DS_" not in DASHBOARD.read_text()  # no import-time placeholders
    assert "__inputs" not in board
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Visits", "Quality", "Recording", "Security", "Capacity"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_every_alert_has_a_runbook_section() -> None:
    anchors = doc_anchors()
    rules = alert_rules_text()
    assert {name for name, _ in rules} >= {
        "VisitbridgeRecordingFailing", "VisitbridgeRecordingsVolumeFilling",
        "VisitbridgeVisitsEndingAbnormally", "VisitbridgeEventLoopLag",
        "VisitbridgeWebhookBacklog", "VisitbridgeDown"}
    for name, url in rules:
        assert url == f"docs/operations.md#{name.lower()}", (name, url)
        assert name.lower() in anchors, f"docs/operations.md has no section '{name}'"


def test_operations_doc_lists_every_config_key() -> None:
    text = OPERATIONS.read_text()
    for f in fields(Config):
        assert re.search(rf"^\|\s*`{f.name}`\s*\|\s*`VISITBRIDGE_{f.name.upper()}`\s*\|",
                         text, re.M), f"docs/operations.md: no row for config key {f.name}"


def test_operations_doc_lists_every_metric_the_deploy_files_use() -> None:
    text = OPERATIONS.read_text()
    used = set()
    for panel in panels():
        for target in panel["targets"]:
            used |= set(METRIC.findall(target["expr"]))
    used |= set(METRIC.findall(ALERTS.read_text()))
    for name in sorted(used):
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f"`{family}" in text, f"docs/operations.md does not describe {name}"


# -- a real Prometheus scraping a real visit ---------------------------------------------------


def exposed(text: str) -> tuple[set[str], set[str]]:
    """(metric families declared in /metrics, sample names with at least one series)."""
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
               if line and not line.startswith("#")}
    return declared, samples


def family_declared(name: str, declared: set[str]) -> bool:
    candidates = {name, re.sub(r"_(bucket|sum|count|total)$", "", name)}
    return bool(candidates & declared) or f"{name}_total" in declared


@contextlib.asynccontextmanager
async def a_visit(server: Server, visit_id: str) -> AsyncIterator[tuple[Participant, ...]]:
    visit = visit_now(visit_id)
    inmate = Participant(server, server.token(f"inmate-{visit_id}", "inmate", visit),
                         colour=(200, 30, 30))
    family = Participant(server, server.token(f"family-{visit_id}", "family", visit),
                         colour=(30, 30, 200))
    async with participants(inmate, family) as people:
        for p in people:
            joined = await p.join()
            assert joined["type"] == "joined", joined
        for p in people:
            await p.wait_for(lambda p=p: any(r.frames >= 10 for r in p.video.values())
                             and any(r.frames >= 10 for r in p.audio.values()), 20)
        yield people


async def provoke_refusals(server: Server) -> None:
    """A join with a malformed token and an API call with one: token refusals by code."""
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.ws_url) as ws:
            await ws.send_json({"type": "join", "token": "not-a-jwt"})
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] == "error", reply
        async with http.get(server.url + "/api/visits",
                            headers={"Authorization": "Bearer not-a-jwt"}) as resp:
            assert resp.status == 401


async def test_prometheus_evaluates_every_panel_and_alert_during_a_visit(
        tmp_path: Path) -> None:
    need_binary("prometheus")
    need_binary("promtool")
    async with WebhookSink() as sink:
        with scraped_server(
                tmp_path, VISITBRIDGE_WEBHOOK_URL=f"http://127.0.0.1:{sink.port}/hooks",
                VISITBRIDGE_WEBHOOK_SECRET="ops-test-webhook-secret") as (server, prom):
            try:
                await scrape_a_visit_and_check(server, prom)
            except BaseException:
                print("---- prometheus log ----\n" + prom.log_text()[-10000:])
                print("---- server log ----\n" + server.log_text()[-10000:])
                raise


async def scrape_a_visit_and_check(server: Server, prom: Prometheus) -> None:
    async with aiohttp.ClientSession() as http:
        async def scraped(minimum: int) -> bool:
            body = await api(http, prom, "/api/v1/query",
                             query='count_over_time(up{job="visitbridge"}[1m])')
            result = body.get("data", {}).get("result", [])
            return bool(result) and float(result[0]["value"][1]) >= minimum

        await provoke_refusals(server)
        # A visit an officer ends: ends and disconnects by cause.
        officer = server.token("officer-ops", "officer", None)
        async with a_visit(server, "ops-ended"):
            async with http.post(f"{server.url}/api/visits/ops-ended/end",
                                 headers={"Authorization": f"Bearer {officer}"},
                                 json={"reason": "operations test"}) as resp:
                assert resp.status == 200, await resp.text()

        # The visit that runs while Prometheus is queried.
        async with a_visit(server, "ops-live") as (inmate, family):
            # Six scrapes, 0.5 s apart: every 6 s rate window the panels use holds several
            # samples, and the rules have been evaluated on them.
            await until(lambda: scraped(6), 60, "6 scrapes by Prometheus")
            async with http.get(server.url + "/metrics") as resp:
                metrics_text = await resp.text()
            await check_everything(http, prom, metrics_text)


async def check_everything(http: aiohttp.ClientSession, prom: Prometheus,
                           metrics_text: str) -> None:
    problems: list[tuple[str, set[str]]] = []  # (what failed, metric names involved)
    now = time.time()

    # Every panel query: no error, and data during the visit (as Grafana asks: a range).
    panel_exprs = [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]
    for title, expr in panel_exprs:
        body = await api(http, prom, "/api/v1/query_range", query=substitute(expr),
                         start=now - 20, end=now, step=1)
        names = set(METRIC.findall(expr))
        if body.get("status") != "success":
            problems.append((f"panel {title!r}: {expr}: {body.get('error')}", names))
        elif not body["data"]["result"]:
            problems.append((f"panel {title!r} returns no data: {expr}", names))

    # Every alert rule: loaded, evaluated by Prometheus without error, and its
    # expression runs through the query API.
    rules = (await api(http, prom, "/api/v1/rules", type="alert"))["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert set(loaded) == {name for name, _ in alert_rules_text()}, loaded.keys()
    alert_exprs = []
    for name, rule in loaded.items():
        assert rule["annotations"].get("summary") and rule["annotations"].get("description")
        assert rule["annotations"]["runbook_url"] == f"docs/operations.md#{name.lower()}"
        if rule["health"] != "ok":
            problems.append((f"alert {name}: {rule.get('lastError')}",
                             set(METRIC.findall(rule["query"]))))
        body = await api(http, prom, "/api/v1/query", query=rule["query"])
        if body.get("status") != "success":
            problems.append((f"alert {name}: {body.get('error')}",
                             set(METRIC.findall(rule["query"]))))
        alert_exprs.append(rule["query"])
    assert loaded["VisitbridgeDown"]["state"] == "inactive"

    # Every metric they reference: scraped from the server, with at least one series.
    declared, with_series = exposed(metrics_text)
    referenced = set()
    for expr in [e for _, e in panel_exprs] + alert_exprs:
        referenced |= set(METRIC.findall(expr))
    undeclared, unseen = set(), set()
    for name in sorted(referenced):
        body = await api(http, prom, "/api/v1/series", **{"match[]": f'{{__name__="{name}"}}'},
                         start=now - 60, end=now)
        if body.get("status") == "success" and body["data"]:
            continue
        if not family_declared(name, declared):
            undeclared.add(name)
        elif name not in with_series:
            unseen.add(name)
        else:
            problems.append((f"{name} is in /metrics but Prometheus has no series", {name}))

    missing = undeclared | unseen
    unexplained = [what for what, names in problems if not names & missing]
    assert not unexplained, "\n".join(unexplained)
    if missing:
        # Every name the dashboard and alerts use must have series from the server.
        pytest.fail(
            "the server does not export: " + ", ".join(sorted(undeclared) or ["-"])
            + "; exported without any series during a visit (labels never created): "
            + ", ".join(sorted(unseen) or ["-"])
            + "\nchecks failing only because of them:\n"
            + "\n".join(what for what, names in problems if names & missing))
