"""TURN REST credentials: the pure function, the offer hook, and real Chromium through coturn.

The browser test starts a real coturn (Debian's ``turnserver``) on loopback, forces both
pages to relay-only ICE (``/join?relay=1``) and checks that each decodes the other's media
over a relay candidate pair. Only the browser is forced to relay; the server (aiortc) uses
whatever pair ICE finds, which here is the coturn relay address.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from app.config import Config, ConfigError, load
from signaling.turn import credentials, ice_servers, offer_hook, with_turn
from tests.support.binaries import need_binary
from tests.support.browser import chromium, decoded, open_page
from tests.support.process import free_port, read_log, stop_process, wait_listening
from tests.support.server import running_server, visit_now

SECRET = "north-wing-turn-secret"


# -- the pure parts -----------------------------------------------------------------------

def test_credentials_known_vector() -> None:
    # Computed independently:
    #   printf '%s' "1700003600:family-1" \
    #     | openssl dgst -sha1 -hmac "north-wing-turn-secret" -binary | base64
    username, password = credentials(SECRET, "family-1", now=1_700_000_000.7, ttl_s=3600)
    assert username == "1700003600:family-1"
    assert password == "wPjgxoB0N+dQEvl/zCX/sDXregw="


def test_credentials_match_hmac_sha1() -> None:
    username, password = credentials("s", "inmate-7", now=100.0, ttl_s=60)
    assert username == "160:inmate-7"
    expected = hmac.new(b"s", b"160:inmate-7", hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


def turn_config(**kw: Any) -> Config:
    return Config(**{"turn_urls": ("turn:turn.example:3478?transport=udp",
                                   "turns:turn.example:5349?transport=tcp"),
                     "turn_secret": SECRET, **kw})


def test_ice_servers_from_config() -> None:
    servers = ice_servers(turn_config(turn_ttl_s=600), "family-1", now=1000)
    assert servers == [{"urls": ["turn:turn.example:3478?transport=udp",
                                 "turns:turn.example:5349?transport=tcp"],
                        "username": "1600:family-1",
                        "credential": credentials(SECRET, "family-1", 1000, 600)[1]}]
    assert ice_servers(Config(), "family-1", now=1000) == []


def test_offers_get_turn_appended_and_nothing_else_changes() -> None:
    stun = {"urls": "stun:stun.example:3478"}
    offer = {"type": "offer", "sdp": "v=0", "ice_servers": [stun]}
    out = with_turn(offer, turn_config(), "family-1", now=1000)
    assert out["ice_servers"][0] == stun
    assert out["ice_servers"][1]["username"] == "4600:family-1"
    assert offer["ice_servers"] == [stun]  # the input is untouched
    joined = {"type": "joined", "you": {}}
    assert with_turn(joined, turn_config(), "family-1", now=1000) is joined
    assert with_turn(offer, Config(), "family-1", now=1000) is offer
    assert offer_hook(None, "family-1") is None
    assert offer_hook(Config(), "family-1") is None
    hook = offer_hook(turn_config(), "family-1", clock=lambda: 2000.0)
    assert hook is not None
    assert hook({"type": "offer"})["ice_servers"][0]["username"] == "5600:family-1"


def test_config_keys_and_validation() -> None:
    config = load(environ={"VISITBRIDGE_TURN_URLS": "turn:a:3478?transport=udp,turn:b:3478",
                           "VISITBRIDGE_TURN_SECRET": SECRET,
                           "VISITBRIDGE_TURN_TTL_S": "120"})
    assert config.turn_urls == ("turn:a:3478?transport=udp", "turn:b:3478")
    assert (config.turn_secret, config.turn_ttl_s) == (SECRET, 120)
    assert (Config().turn_urls, Config().turn_secret, Config().turn_ttl_s) == ((), "", 3600)
    with pytest.raises(ConfigError, match="turn_secret"):
        load(environ={"VISITBRIDGE_TURN_URLS": "turn:a:3478"})
    with pytest.raises(ConfigError, match="turn_urls"):
        load(environ={"VISITBRIDGE_TURN_URLS": "stun:a:3478", "VISITBRIDGE_TURN_SECRET": "x"})
    with pytest.raises(ConfigError, match="turn_ttl_s"):
        load(environ={"VISITBRIDGE_TURN_TTL_S": "0"})


# -- a real coturn --------------------------------------------------------------------------

@dataclass
class Coturn:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def log_text(self) -> str:
        return read_log(self.log_path)


def coturn_conf(tmp: Path, port: int, min_port: int, secrets: tuple[str, ...]) -> str:
    # The least coturn needs to relay between peers on loopback: shared-secret (REST API)
    # credentials, loopback peers allowed, no TLS/DTLS listeners and no CLI.
    return "\n".join([
        "listening-ip=127.0.0.1", f"listening-port={port}", "relay-ip=127.0.0.1",
        f"min-port={min_port}", f"max-port={min_port + 99}", "realm=visitbridge.test",
        "use-auth-secret", *(f"static-auth-secret={s}" for s in secrets),
        "allow-loopback-peers",
        "no-cli", "no-tls", "no-dtls", "fingerprint", f"pidfile={tmp / 'turnserver.pid'}",
        f"userdb={tmp / 'turndb'}", "log-file=stdout", "simple-log", "verbose", ""])


@contextlib.contextmanager
def running_coturn(tmp: Path, *secrets: str) -> Iterator[Coturn]:
    binary = need_binary("turnserver")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()  # a separate port per test: two turnservers on one port split traffic
    conf = tmp / "turnserver.conf"
    conf.write_text(coturn_conf(tmp, port, random.randrange(20000, 29900, 100), secrets))
    log_path = tmp / "turnserver.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=log,
                                   stderr=subprocess.STDOUT, cwd=tmp)
    turn = Coturn(port, log_path, process)
    try:
        # It listens on TCP and UDP on the same port: TCP answering means it is up.
        wait_listening(process, port, 10, "turnserver", turn.log_text)
        yield turn
    finally:
        stop_process(process, 5)


def test_coturn_accepts_the_old_and_the_new_secret_during_a_rotation(tmp_path: Path) -> None:
    """docs/operations.md's rotation: two static-auth-secret lines, both accepted."""
    need_binary("turnserver")
    uclient, peer_bin = need_binary("turnutils_uclient"), need_binary("turnutils_peer")
    old, new = "old-turn-secret-1", "new-turn-secret-2"
    with running_coturn(tmp_path / "coturn", old, new) as turn:
        peer_port = free_port()
        peer = subprocess.Popen([peer_bin, "-L", "127.0.0.1", "-p", str(peer_port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def allocate(secret: str) -> subprocess.CompletedProcess[str]:
                username, password = credentials(secret, "family-rot", time.time(), 600)
                return subprocess.run(
                    [uclient, "-u", username, "-w", password, "-e", "127.0.0.1",
                     "-r", str(peer_port), "-p", str(turn.port), "-n", "3", "-m", "1",
                     "127.0.0.1"], capture_output=True, text=True, timeout=30)
            # Side by side: each run spends about 3.5 s in the client's own waits.
            secrets = (old, new, "some-other-secret")
            with ThreadPoolExecutor(len(secrets)) as pool:
                *accepted, refused = pool.map(allocate, secrets)
            for secret, done in zip((old, new), accepted, strict=True):
                assert done.returncode == 0, (secret, done.stdout[-2000:], turn.log_text())
                assert "Total lost packets 0" in done.stdout, done.stdout[-2000:]
            assert refused.returncode != 0
            assert "Cannot complete Allocation" in refused.stdout + refused.stderr
        finally:
            peer.terminate()
            peer.wait(5)


async def selected_pair(page: Page) -> dict[str, Any]:
    """The page's selected candidate pair, with its local and remote candidates."""
    stats = {s["id"]: s for s in await page.evaluate("window.visitStats()")}
    transport = next((s for s in stats.values() if s.get("type") == "transport"), {})
    pair = stats.get(transport.get("selectedCandidatePairId", ""))
    if pair is None:  # older stats: the nominated, succeeded pair
        pair = next((s for s in stats.values() if s.get("type") == "candidate-pair"
                     and s.get("nominated") and s.get("state") == "succeeded"), {})
    return {"pair": pair, "local": stats.get(pair.get("localCandidateId", ""), {}),
            "remote": stats.get(pair.get("remoteCandidateId", ""), {}),
            "all_local": [s for s in stats.values() if s.get("type") == "local-candidate"]}


async def wait_two_way(page: Page, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = await decoded(page)
        if got["video_streams"] >= 1 and got["samples"] > 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no media decoded through the relay: {got}")
        await asyncio.sleep(0.1)


@pytest.mark.solo  # real Chromium's media, relayed
async def test_chromium_relays_media_through_coturn(tmp_path: Path) -> None:
    with running_coturn(tmp_path / "coturn", SECRET) as turn, running_server(
            tmp_path / "server", VISITBRIDGE_TURN_URLS=turn.url,
            VISITBRIDGE_TURN_SECRET=SECRET, VISITBRIDGE_TURN_TTL_S="600") as server:
        visit = visit_now("turn-1")
        links = [f"{server.url}/join?relay=1#token=" + server.token(sub, role, visit)
                 for sub, role in (("inmate-t1", "inmate"), ("family-t1", "family"))]
        try:
            async with chromium() as browser:
                pages: list[Page] = []
                offers: list[dict[str, Any]] = []
                for link in links:
                    page = await open_page(browser, "about:blank")

                    def on_ws(ws: Any) -> None:
                        def on_frame(payload: str | bytes) -> None:
                            message = json.loads(payload)
                            if message.get("type") == "offer":
                                offers.append(message)
                        ws.on("framereceived", on_frame)

                    page.on("websocket", on_ws)
                    await page.goto(link)
                    await page.get_by_role("button", name="Join the visit").click()
                    pages.append(page)
                for page in pages:
                    await wait_two_way(page, 20)
                first = [await decoded(p) for p in pages]
                await asyncio.sleep(1.0)
                for before, page in zip(first, pages, strict=True):
                    assert (await decoded(page))["frames"] > before["frames"]  # still flowing

                for page in pages:
                    chosen = await selected_pair(page)
                    assert chosen["local"].get("candidateType") == "relay", chosen
                    # relay-only: the page gathered nothing but relay candidates
                    assert {c.get("candidateType") for c in chosen["all_local"]} == {"relay"}

                # Each join got its own short-lived credentials for its own participant.
                assert len(offers) == 2
                users = set()
                for offer in offers:
                    turn_entry = [s for s in offer["ice_servers"] if "username" in s]
                    assert len(turn_entry) == 1 and turn_entry[0]["urls"] == [turn.url]
                    expiry, user = turn_entry[0]["username"].split(":", 1)
                    assert 0 < int(expiry) - time.time() <= 600
                    assert turn_entry[0]["credential"] == credentials(
                        SECRET, user, int(expiry) - 600, 600)[1]
                    users.add(user)
                assert users == {"inmate-t1", "family-t1"}
                # Never logged: neither the secret nor a handed-out password.
                log = server.log_text()
                assert SECRET not in log
                for offer in offers:
                    for entry in offer["ice_servers"]:
                        if "credential" in entry:
                            assert entry["credential"] not in log
        except BaseException:
            print("---- coturn log ----\n" + turn.log_text()[-20000:])
            print("---- server log ----\n" + server.log_text()[-20000:])
            raise
        assert "ALLOCATE" in turn.log_text() or "allocation" in turn.log_text().lower()
