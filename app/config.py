"""Configuration: defaults, then a TOML file, then ``VISITBRIDGE_<KEY>`` variables.

Invalid values stop start-up with a message naming the key, before anything listens.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.cluster import NODE_ID
from auth.keys import jwks_url_problem
from records.dialect import is_url
from records.refusals import networks


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how users reach the server; links are printed with it
    data_dir: Path = Path("data")
    database_url: str = ""  # "" = SQLite in data_dir; postgresql://... selects PostgreSQL
    token_keys_dir: Path | None = None  # default: <data_dir>/keys/public
    token_jwks_url: str = ""
    token_issuer: str = "visitbridge-dev"
    token_audience: str = "visitbridge"
    token_leeway_s: int = 30
    token_max_lifetime_s: int = 86400  # longest nbf (or iat) to exp a token may span
    token_jti_memory: int = 100_000  # token ids remembered (until they expire) per process
    max_visitors: int = 4
    max_video_bitrate: int = 800_000
    # Media limits on one participant's RTP/RTCP (sfu.limits; docs/security.md)
    max_ssrcs_per_connection: int = 8  # RTP streams (SSRCs) one peer connection may start
    nack_max_seqs: int = 64  # sequence numbers of one subscriber NACK that are resent
    rtx_max_packets_per_s: int = 200  # retransmissions per subscriber connection per second
    remb_floor_bps: int = 150_000  # a subscriber REMB under this is counted as remb_floor
    ice_loopback: bool = False  # tests and sandboxes only
    demo: bool = False  # trust the development key (serve --demo); never in production
    ice_servers: tuple[str, ...] = ()  # STUN URLs handed to aiortc, e.g. stun:host:3478
    max_ice_candidates: int = 32  # remote candidates one connection may trickle
    ice_private_candidates: bool = True  # accept RFC 1918 / ULA remote candidates (kiosks)
    max_message_bytes: int = 262_144  # largest signaling message a page may send
    log_level: str = "info"
    warnings: tuple[int, ...] = (300, 60)  # seconds before the end when pages are warned
    early_entry_s: int = 900  # how long before the start the waiting room opens
    all_left_grace_s: int = 120  # a live visit with nobody connected this long ends
    reconnect_grace_s: int = 60  # a dropped participant's seat waits this long (0: none)
    media_timeout_s: int = 5  # a connected peer silent this long has dropped (0: off)
    media_idle_s: int = 3  # a publisher sending no RTP this long stops counting time (0: off)
    stats_interval_s: int = 5  # pages report their connection statistics this often
    quality_alert_percent: int = 25  # weak or lost participants above this share: alert
    workers: int = 1  # SFU worker processes (one per core); >1 starts a front process
    worker_max_participants: int = 40  # admission threshold per worker (see BENCHMARKS.md)
    front_max_placements: int = 10_000  # visits the front holds placed (until booked end)
    worker_index: int = 0  # set by the front for each worker; 0 runs the once-only jobs
    redis_url: str = ""  # nodes share placement through this Redis ("" = one node alone)
    node_id: str = ""  # this node's name in Redis (letters, digits, . _ -)
    node_url: str = ""  # where other nodes relay signaling to this one (default: base_url)
    node_capacity: int = 40  # participants this node takes before refusing new visits
    node_ttl_s: int = 6  # a node that stops refreshing leaves the registry after this
    lease_ttl_s: int = 8  # a visit's lease lapses this long after its owner stops renewing
    drain: bool = False  # start drained: take no new visits (running ones finish)
    recordings_path: Path | None = None  # default: <data_dir>/recordings (its own volume)
    recordings_min_free_mb: int = 1024  # below this, new visits are refused
    segment_s: int = 10  # recording segment length (seconds)
    retention_days: int = 180  # recordings older than this are deleted unless on hold
    recordings_key_file: Path | None = None  # key-encryption keyring: set = encrypted at rest
    # The wrapped data keys of encrypted recordings (default <data_dir>/keys/...); nodes
    # sharing visits must share it, or a moved visit's earlier segments cannot be read.
    recordings_data_keys_path: Path | None = None
    webhook_url: str = ""  # records system endpoint for signed events ("" = none)
    webhook_secret: str = ""  # HMAC-SHA256 key for webhook signatures
    webhook_max_attempts: int = 20  # failed answers before an event is dead-lettered
    webhook_keep_delivered_days: int = 7  # delivered events are deleted after this
    trusted_proxies: tuple[str, ...] = ()  # proxies whose X-Forwarded-For is believed
    audit_refusal_window_s: int = 60  # one audit row per source, action and code per window
    audit_refusal_max_sources: int = 1000  # windows held; beyond, counted under source "*"
    audit_refusal_field_chars: int = 100  # request fields in refusal rows are cut to this
    turn_urls: tuple[str, ...] = ()  # TURN URLs for browsers, e.g. turn:host:3478?transport=udp
    turn_secret: str = ""  # coturn static-auth-secret: per-join TURN REST credentials
    turn_ttl_s: int = 3600  # how long handed-out TURN credentials stay valid
    tsa_url: str = ""  # RFC 3161 time-stamp authority for audit checkpoints ("" = none)
    tsa_ca_file: Path | None = None  # the authority's root certificate(s), PEM
    anchor_interval_s: int = 3600  # a checkpoint at least this often while the log moves
    tsa_max_backoff_s: int = 300  # longest wait between attempts while the authority fails
    # The write-once archive (S3 Object Lock); off while s3_bucket is "" (local files only)
    s3_endpoint: str = ""  # e.g. https://s3.example.org (no credentials in it)
    s3_bucket: str = ""  # a bucket created with Object Lock enabled
    s3_region: str = "us-east-1"
    s3_credentials_file: Path | None = None  # INI [default] aws_access_key_id/_secret_access_key
    s3_archive_interval_s: int = 60  # how often sealed recordings are archived

    @property
    def keys_dir(self) -> Path:
        return self.token_keys_dir or self.data_dir / "keys" / "public"

    @property
    def demo_keys_dir(self) -> Path:
        """The development key pair of ``serve --demo``, apart from the production keys."""
        return self.data_dir / "demo-keys"

    @property
    def recordings_dir(self) -> Path:
        return self.recordings_path or self.data_dir / "recordings"

    @property
    def data_keys_dir(self) -> Path:
        """The wrapped data keys of encrypted recordings, apart from the media."""
        return self.recordings_data_keys_path or self.data_dir / "keys" / "recording-data-keys"

    @property
    def database(self) -> Path | str:
        """Where the records are: a PostgreSQL URL, or by default a SQLite file."""
        return self.database_url or self.data_dir / "visitbridge.db"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def _convert(name: str, kind: str, raw: Any) -> Any:
    """Parse one value; ``kind`` is the field's annotation as written above."""
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            value = str(raw).strip().lower()
            if value in ("1", "true", "yes", "on"):
                return True
            if value in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            if isinstance(raw, (bool, float)):
                raise ValueError(raw)
            return int(raw)
        if kind.startswith("Path"):
            return Path(str(raw)) if str(raw) else None
        if kind.startswith("tuple["):
            items = raw if isinstance(raw, (list, tuple)) else [
                x.strip() for x in str(raw).split(",") if x.strip()]
            if kind == "tuple[int, ...]":
                return tuple(int(x) for x in items)
            return tuple(str(x) for x in items)
        if not isinstance(raw, str):
            raise ValueError(raw)
        return raw
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: invalid value {raw!r} (expected {kind})") from None


def load(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration: environment over file over defaults."""
    env = os.environ if environ is None else environ
    known = {f.name: f for f in fields(Config)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"{key}: unknown configuration key in {path}")
            values[key] = _convert(key, str(known[key].type), raw)
    for key, f in known.items():
        env_name = f"VISITBRIDGE_{key.upper()}"
        if env_name in env:
            values[key] = _convert(env_name, str(f.type), env[env_name])
    config = dataclasses.replace(Config(), **values)
    if config.data_dir is None:
        raise ConfigError("data_dir: must not be empty")
    _validate(config)
    return config


def _validate(c: Config) -> None:
    if not 0 <= c.port <= 65535:
        raise ConfigError(f"port: {c.port} is not a TCP port")
    if c.workers < 1 or c.worker_max_participants < 1:
        raise ConfigError("workers and worker_max_participants: must be at least 1")
    if c.front_max_placements < 1:
        raise ConfigError("front_max_placements: must be at least 1")
    if c.max_visitors < 1:
        raise ConfigError("max_visitors: must be at least 1")
    if c.max_video_bitrate < 100_000:
        raise ConfigError("max_video_bitrate: must be at least 100000 (bits per second)")
    if not 3 <= c.max_ssrcs_per_connection <= 31:
        raise ConfigError("max_ssrcs_per_connection: must be 3 to 31 (audio, video and RTX "
                          "need 3; a receiver report holds at most 31)")
    if c.nack_max_seqs < 1 or c.rtx_max_packets_per_s < 1:
        raise ConfigError("nack_max_seqs and rtx_max_packets_per_s: must be at least 1")
    if not 0 <= c.remb_floor_bps <= c.max_video_bitrate:
        raise ConfigError("remb_floor_bps: must be 0 to max_video_bitrate (bits per second)")
    if not c.token_issuer or not c.token_audience:
        raise ConfigError("token_issuer and token_audience: must not be empty")
    if c.token_max_lifetime_s <= 0 or c.token_jti_memory < 1:
        raise ConfigError("token_max_lifetime_s and token_jti_memory: must be positive")
    if any(w <= 0 for w in c.warnings):
        raise ConfigError("warnings: every warning must be a positive number of seconds")
    if min(c.early_entry_s, c.all_left_grace_s, c.reconnect_grace_s, c.media_timeout_s) < 0:
        raise ConfigError("early_entry_s, all_left_grace_s, reconnect_grace_s and "
                          "media_timeout_s: must not be negative")
    if c.media_idle_s < 0 or c.stats_interval_s < 1:
        raise ConfigError("media_idle_s: must not be negative; stats_interval_s: at least 1")
    if not 0 <= c.quality_alert_percent <= 100:
        raise ConfigError("quality_alert_percent: must be 0 to 100")
    if c.webhook_url and len(c.webhook_secret) < 16:
        raise ConfigError("webhook_secret: set at least 16 characters when webhook_url is set")
    if c.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level: {c.log_level!r} is not debug, info, warning or error")
    if c.turn_urls and not c.turn_secret:
        raise ConfigError("turn_secret: must be set when turn_urls is set")
    if any(not u.startswith(("turn:", "turns:")) for u in c.turn_urls):
        raise ConfigError("turn_urls: every URL must start with turn: or turns:")
    if c.max_ice_candidates < 1:
        raise ConfigError("max_ice_candidates: must be at least 1")
    if c.max_message_bytes < 65_536:
        raise ConfigError("max_message_bytes: must be at least 65536 (an answer SDP must fit)")
    if c.token_jwks_url and (problem := jwks_url_problem(c.token_jwks_url)):
        raise ConfigError(f"token_jwks_url: {problem}")
    if c.webhook_max_attempts < 1 or c.webhook_keep_delivered_days < 1:
        raise ConfigError("webhook_max_attempts and webhook_keep_delivered_days: must be at "
                          "least 1")
    try:
        networks(c.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"trusted_proxies: {exc}") from None
    if c.audit_refusal_window_s < 1 or c.audit_refusal_max_sources < 1:
        raise ConfigError("audit_refusal_window_s and audit_refusal_max_sources: must be at "
                          "least 1")
    if c.audit_refusal_field_chars < 16:
        raise ConfigError("audit_refusal_field_chars: must be at least 16")
    if c.turn_ttl_s <= 0:
        raise ConfigError("turn_ttl_s: must be a positive number of seconds")
    if c.database_url and not is_url(c.database_url):  # never echoed: it may hold a password
        raise ConfigError("database_url: must be empty (SQLite in data_dir) or a "
                          "postgresql:// URL")
    if c.tsa_url and not c.tsa_url.startswith(("http://", "https://")):
        raise ConfigError("tsa_url: must be an http:// or https:// URL")
    if c.tsa_url and c.tsa_ca_file is None:
        raise ConfigError("tsa_ca_file: must be set when tsa_url is set (tokens are checked "
                          "against it)")
    if c.redis_url and not c.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis_url: must be a redis://, rediss:// or unix:// URL")
    if c.redis_url and not NODE_ID.match(c.node_id):
        raise ConfigError("node_id: set 1 to 64 letters, digits, '.', '_' or '-' when "
                          "redis_url is set")
    if c.redis_url and c.recordings_key_file and c.recordings_data_keys_path is None:
        raise ConfigError("recordings_data_keys_path: nodes sharing a Redis must share the "
                          "data keys of encrypted recordings (a folder every node mounts, "
                          "off the recordings volume), or a visit moved to another node "
                          "could not read what was recorded before")
    if c.redis_url and c.workers > 1:
        raise ConfigError("redis_url: run one node per process (workers = 1) with Redis")
    if c.node_capacity < 1 or c.node_ttl_s < 1 or c.lease_ttl_s < 1:
        raise ConfigError("node_capacity, node_ttl_s and lease_ttl_s: must be at least 1")
    if c.s3_bucket and (problem := _bucket_problem(c)):
        raise ConfigError(problem)
    if c.anchor_interval_s < 1 or c.tsa_max_backoff_s < 1:
        raise ConfigError("anchor_interval_s and tsa_max_backoff_s: must be at least 1")


def _bucket_problem(c: Config) -> str | None:
    """What is wrong with the archive bucket's settings, naming the key; None if usable."""
    url = urlsplit(c.s3_endpoint)
    if url.scheme not in ("http", "https") or not url.hostname:
        return "s3_endpoint: must be an http:// or https:// URL when s3_bucket is set"
    if url.username or url.password or url.query:
        return ("s3_endpoint: must not carry credentials or a query; put the keys in "
                "s3_credentials_file")
    if not 3 <= len(c.s3_bucket) <= 63:
        return "s3_bucket: a bucket name has 3 to 63 characters"
    if c.s3_credentials_file is None:
        return "s3_credentials_file: must be set when s3_bucket is set"
    if c.s3_archive_interval_s < 1:
        return "s3_archive_interval_s: must be at least 1"
    return None
