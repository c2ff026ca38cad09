"""The aiohttp application: pages, WebSocket signaling, health and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial
from typing import TYPE_CHECKING

from aiohttp import web
from aiortc import RTCIceServer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.compliance import Compliance
from api.records import Api
from app import health
from app.atrest import open_vault
from app.config import Config, ConfigError
from app.pages import add_pages
from auth.jti_memory import JtiMemory
from auth.keys import (
    DEVELOPMENT_KEY_TRUSTED,
    ChainedKeyStore,
    JwksKeyStore,
    PemDirKeyStore,
    development_keys,
)
from auth.tokens import KeyStore, TokenVerifier
from recorder.anchored import visit_anchors
from recorder.archiver import ArchiveJob
from recorder.bucket import Bucket, BucketError, BucketSettings
from recorder.keystore import shred as shred_data_keys
from recorder.retention import RetentionJob
from recorder.session import Recordings
from recorder.signing import RecordingKey, load_or_create
from records import store as sqlite_store
from records.anchoring import Anchorer, AnchorPacing
from records.archive import Archive
from records.audit import AuditLog
from records.dialect import Connection, is_url
from records.refusals import RefusalAudit, RefusalLimits
from records.timestamp import load_roots
from records.visits import VisitRecords
from records.webhooks import Outbox, Pacing, WebhookSender
from sfu import aiortc_glue
from sfu.candidates import CandidatePolicy
from sfu.limits import MediaLimits
from sfu.metrics import QUALITY_ALERT_RATIO
from sfu.peer import PeerSettings
from sfu.rooms import Rooms
from signaling.session import Session
from visit.lifecycle import Policy
from visit.quality import QualityPolicy

if TYPE_CHECKING:
    from app.node import NodeGate

log = logging.getLogger(__name__)

# Pages never send the token anywhere but the WebSocket; keep it out of referrers too.
# connect-src 'self' covers the page's own ws:/wss: origin (CSP Level 3), and no page
# may be framed (clickjacking an officer's mute or end button).
SHUTDOWN_DRAIN_S = 5.0  # a stopping server delivers the visits' ends for this long at most
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "camera=(self), microphone=(self)",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}

CONFIG_KEY: web.AppKey[Config] = web.AppKey("config", Config)
ROOMS_KEY: web.AppKey[Rooms] = web.AppKey("rooms", Rooms)


def refusal_audit(config: Config, audit: AuditLog) -> RefusalAudit:
    """Refusals written the one bounded way (the front's and every worker's)."""
    return RefusalAudit(audit, RefusalLimits(
        window_s=config.audit_refusal_window_s, max_sources=config.audit_refusal_max_sources,
        max_field_chars=config.audit_refusal_field_chars,
        trusted_proxies=config.trusted_proxies))


def key_store(config: Config) -> KeyStore:
    production: KeyStore = (JwksKeyStore(config.token_jwks_url) if config.token_jwks_url
                            else PemDirKeyStore(config.keys_dir))
    if not config.demo:
        return production
    return ChainedKeyStore(production, PemDirKeyStore(config.demo_keys_dir / "public"))


def trusted_development_keys(config: Config) -> list[str]:
    """Where a development key is trusted: the demo folder (``serve --demo``) and any
    copy of one in the production keys folder. Sets the metric that alerts on it."""
    found = [str(config.demo_keys_dir / "public")] if config.demo else []
    if not config.token_jwks_url:
        found += [str(p) for p in development_keys(config.keys_dir,
                                                   config.demo_keys_dir / "public")]
    DEVELOPMENT_KEY_TRUSTED.set(1 if found else 0)
    return found


def create_app(config: Config) -> web.Application:
    aiortc_glue.check_aiortc()
    aiortc_glue.install_codec_guard()
    aiortc_glue.install_lazy_bitrate_estimators()
    aiortc_glue.offer_opus_repair()
    aiortc_glue.offer_transport_cc()
    aiortc_glue.offer_stream_ids()
    if config.ice_loopback:
        aiortc_glue.allow_loopback_ice()
    settings = PeerSettings(
        ice_servers=tuple(RTCIceServer(urls=url) for url in config.ice_servers),
        max_video_bitrate_bps=config.max_video_bitrate,
        candidates=CandidatePolicy(config.max_ice_candidates, config.ice_loopback,
                                   config.ice_private_candidates),
        limits=MediaLimits(max_ssrcs=config.max_ssrcs_per_connection,
                           nack_max_seqs=config.nack_max_seqs,
                           rtx_packets_per_s=config.rtx_max_packets_per_s,
                           remb_floor_bps=config.remb_floor_bps),
        media_timeout_s=config.media_timeout_s,
        media_idle_s=config.media_idle_s,
    )
    db = sqlite_store.connect(config.database)
    outbox = Outbox(db, enabled=bool(config.webhook_url))
    # With several workers, worker 0 alone delivers webhooks (and polls the shared outbox
    # for the others' events), recovers recordings and runs retention. On PostgreSQL
    # other servers add to the outbox too, and the one holding its lease delivers.
    first = config.worker_index == 0
    shared = config.workers > 1 or not first or is_url(config.database)
    pacing = Pacing(idle_poll_s=1.0 if shared else None,
                    max_attempts=config.webhook_max_attempts,
                    keep_delivered_s=config.webhook_keep_delivered_days * 86400.0)
    sender = (WebhookSender(outbox, config.webhook_url, config.webhook_secret.encode(), pacing)
              if config.webhook_url and first else None)
    store = sqlite_store.Store(db)
    audit = AuditLog(db)
    refusals = refusal_audit(config, audit)
    keys_dir = config.data_dir / "keys"
    recording_key = load_or_create(keys_dir / "recording.private.pem",
                                   keys_dir / "recording.public.pem")
    anchorer = anchorer_for(config, db, recording_key) if first else None
    archive = Archive(db)
    vault = open_vault(config)
    gate: NodeGate | None = None  # with a Redis: set below, once the rooms exist
    shared = bool(config.redis_url)  # the recorder asks the gate about the visit's lease
    recordings = Recordings(config.recordings_dir, recording_key, archive, store, audit,
                            segment_s=config.segment_s, vault=vault,
                            served_by=(lambda v: gate.served_by(v) if gate else None)
                            if shared else None,
                            holds=(lambda v: gate is not None and gate.holds(v))
                            if shared else None)
    records = VisitRecords(store, audit, outbox, sender, on_ended=recordings.visit_ended)
    bucket = archive_bucket(config)
    archive_job = ArchiveJob(archive, config.recordings_dir, bucket, recording_key.public_pem,
                             config.retention_days, audit.record,
                             interval_s=config.s3_archive_interval_s) \
        if bucket is not None and first else None
    retention_job = RetentionJob(archive, config.recordings_dir, config.retention_days,
                                 audit.record, interval_s=3600,
                                 shred=partial(shred_data_keys, config.data_keys_dir))
    policy = Policy(early_entry_s=config.early_entry_s,
                    warnings_s=tuple(float(w) for w in config.warnings),
                    all_left_grace_s=config.all_left_grace_s,
                    reconnect_grace_s=config.reconnect_grace_s,
                    media_gap_s=config.media_idle_s,
                    quality=QualityPolicy(interval_s=config.stats_interval_s))
    QUALITY_ALERT_RATIO.set(config.quality_alert_percent / 100)
    rooms = Rooms(settings, config.max_visitors, policy, records, tap_factory=recordings.tap)
    keys = key_store(config)
    development = trusted_development_keys(config)
    if development:
        log.warning("DEVELOPMENT TOKEN KEY TRUSTED: anyone holding its private key can sign "
                    "any token. Never run like this in production; remove it from the keys "
                    "folder and do not use --demo", extra={"keys": development})
    verifier = TokenVerifier(keys, config.token_issuer, config.token_audience,
                             leeway_s=config.token_leeway_s,
                             max_lifetime_s=config.token_max_lifetime_s,
                             jti_memory=JtiMemory(config.token_jti_memory))
    def recording_available() -> bool:
        return health.free_bytes(config.recordings_dir) >= config.recordings_min_free_mb << 20

    gate = node_gate(config, verifier, rooms, refusals, recordings)
    rooms.holds = gate.holds if gate else None
    # TURN credentials go into each offer (turn=config).
    session = Session(verifier, rooms, records, recording_available, refusals, turn=config,
                      max_message_bytes=config.max_message_bytes,
                      route=gate.route if gate else None, fence=gate.fence if gate else None)

    app = web.Application()
    app.on_response_prepare.append(add_security_headers)
    app[CONFIG_KEY] = config
    app[ROOMS_KEY] = rooms

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        problems = []
        if (not config.token_jwks_url and not config.demo
                and not any(config.keys_dir.glob("*.pem"))):
            problems.append(f"no token keys in {config.keys_dir}")
        warnings = [f"development token key trusted: {where}"
                    for where in trusted_development_keys(config)]
        status = 503 if problems else 200
        return web.json_response({"status": "not ready" if problems else "ready",
                                  "problems": problems, "warnings": warnings}, status=status)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    background: list[asyncio.Task[None]] = []

    async def start_background(app: web.Application) -> None:
        now = time.time()
        if first:
            # Before serving: blocking is fine here. Visits other nodes hold on a shared
            # volume are theirs: their open segments are not orphans.
            running = await gate.cluster.leased() if gate else set()
            recovered = recordings.recover(now, running)
            if recovered:
                log.warning("recordings recovered after a crash", extra={"visits": recovered})
            records.close_stale(now)
            retention_job.start()
            if archive_job is not None:
                archive_job.start()
            if anchorer is not None:
                anchorer.start()
        if sender is not None:
            sender.start()
        background.append(asyncio.ensure_future(
            health.watch(config.recordings_dir, config.recordings_min_free_mb << 20)))

    async def close_rooms(app: web.Application) -> None:
        for room in rooms:
            await room.end("server_shutdown", "The server is restarting.")

    async def close_resources(app: web.Application) -> None:
        for task in background:
            task.cancel()
        close = getattr(keys, "close", None)
        if close is not None:
            await close()
        await retention_job.close()
        if archive_job is not None:
            await archive_job.close()
        await recordings.close()
        if anchorer is not None:  # after the last seals
            await anchorer.close(drain_s=SHUTDOWN_DRAIN_S)
        if sender is not None:
            await sender.close(drain_s=SHUTDOWN_DRAIN_S)
        refusals.close()
        db.close()

    app.on_startup.append(start_background)
    app.on_shutdown.append(close_rooms)
    app.on_cleanup.append(close_resources)
    if gate is not None:
        app.on_startup.append(gate.start)
        app.on_cleanup.append(gate.close)
    add_pages(app)
    app.router.add_routes(Api(verifier, rooms, records, refusals).routes())
    app.router.add_routes(Compliance(verifier, archive, audit, config.recordings_dir,
                                     recording_key,
                                     refusals=refusals, vault=vault, bucket=bucket,
                                     anchors=lambda visit: visit_anchors(
                                         db, visit, config.tsa_ca_file)).routes())
    app.router.add_get("/ws", session.run)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


def archive_bucket(config: Config) -> Bucket | None:
    """The write-once archive's bucket; None when none is configured (local files only)."""
    if not config.s3_bucket:
        return None
    assert config.s3_credentials_file is not None  # app.config checks it
    try:
        return Bucket(BucketSettings(config.s3_endpoint, config.s3_bucket, config.s3_region,
                                     config.s3_credentials_file))
    except BucketError as exc:
        raise ConfigError(f"s3_credentials_file: {exc}") from None


def node_gate(config: Config, verifier: TokenVerifier, rooms: Rooms,
              refusals: RefusalAudit, recordings: Recordings) -> NodeGate | None:
    """With a Redis, nodes share the visits: the gate places, relays and fences joins.
    Imported only then: the Redis client costs a sixth of a second at every start."""
    if not config.redis_url:
        return None
    from app.node import NodeGate
    from app.redis_cluster import RedisCluster

    return NodeGate(config, RedisCluster(config.redis_url), verifier, rooms, refusals,
                    recordings)


def anchorer_for(config: Config, db: Connection, key: RecordingKey) -> Anchorer | None:
    """The job that time-stamps audit checkpoints; None when no authority is configured."""
    if not config.tsa_url or config.tsa_ca_file is None:
        return None
    roots = load_roots(config.tsa_ca_file.read_bytes())
    return Anchorer(db, config.tsa_url, roots, key,
                    AnchorPacing(interval_s=config.anchor_interval_s,
                                 max_backoff_s=config.tsa_max_backoff_s))


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: unlike a middleware it also sees the answers aiohttp
    makes from raised errors (404, 405, the APIs' 401/403, 500) and static files."""
    response.headers.update(SECURITY_HEADERS)
