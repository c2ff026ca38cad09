"""``visitbridge`` command line: serve, drain, keys, token, audit verify, recordings
verify|export|kek."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import sys
import time
from datetime import datetime
from pathlib import Path

from aiohttp import web

from app.config import Config, ConfigError, load
from auth.issuer import issue_token
from auth.keys import DEV_KID, load_private_key, write_keypair
from auth.tokens import ALGORITHMS, ROLES, VISIT_ROLES, VisitClaim
from records.audit import verify_file
from records.dialect import is_url


def _database(text: str) -> Path | str:
    """A database named on the command line: a ``postgresql://`` URL kept as it is (a
    path would fold its ``//``), anything else a SQLite file."""
    return text if is_url(text) else Path(text)


def _when(text: str) -> int:
    """A time given as unix seconds or ISO 8601 (``2026-11-25T14:00:00+00:00``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not unix seconds nor ISO 8601: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. +00:00): {text!r}")
    return int(moment.timestamp())


def dev_private_key_path(config: Config) -> Path:
    return config.demo_keys_dir / f"{DEV_KID}.private.pem"


def ensure_dev_keys(config: Config) -> Path:
    """Create the development key pair on first run; return the private key's path.

    It lives in its own folder, trusted only by ``serve --demo``: never in the production
    keys folder, where it would outlive the demo and let anyone holding it sign tokens.
    """
    private = dev_private_key_path(config)
    public_dir = config.demo_keys_dir / "public"
    if not private.exists():
        write_keypair(DEV_KID, public_dir, private)
        print(f"Generated a development key pair: {private} (private), "
              f"{public_dir / (DEV_KID + '.pem')} (public)")
    return private


def demo_links(config: Config, now: float) -> list[tuple[str, str]]:
    """Join links for a demo visit (one inmate, one family member) that starts now."""
    key = load_private_key(ensure_dev_keys(config))
    start = int(now)
    visit = VisitClaim(id=f"demo-{start}", starts_at=start, ends_at=start + 30 * 60)
    people = [("inmate-demo", "Alex Inmate", "inmate"), ("family-demo", "Sam Family", "family")]
    links = []
    for sub, name, role in people:
        token = issue_token(key, kid=DEV_KID, issuer=config.token_issuer,
                            audience=config.token_audience, sub=sub, role=role, name=name,
                            visit=visit, now=now)
        links.append((f"{name} ({role})", f"{config.base_url}/join#token={token}"))
    return links


def console_link(config: Config, now: float, role: str) -> str:
    """The officer or compliance console with a development staff token (12 hours)."""
    key = load_private_key(ensure_dev_keys(config))
    token = issue_token(key, kid=DEV_KID, issuer=config.token_issuer,
                        audience=config.token_audience, sub=f"{role}-demo",
                        role=role, name=f"Demo {role.title()}", now=now)
    return f"{config.base_url}/{role}#token={token}"


def _serve(args: argparse.Namespace) -> int:
    from app.logs import setup_logging
    from app.server import create_app

    config = load(args.config)
    if args.workers:
        config = dataclasses.replace(config, workers=args.workers)
    setup_logging(config.log_level)
    if args.demo:
        config = dataclasses.replace(config, demo=True)
        os.environ["VISITBRIDGE_DEMO"] = "1"  # the workers, if any, trust the key too
        print("Demo visit, open each link in its own browser window:")
        for who, link in demo_links(config, time.time()):
            print(f"  {who}:\n    {link}")
        for role in ("officer", "compliance"):
            link = console_link(config, time.time(), role)
            print(f"{role.title()} console (development {role} token):\n    {link}")
    if config.workers > 1 and "VISITBRIDGE_WORKER_INDEX" not in os.environ:
        from app.front import serve_front

        return serve_front(config, config.workers)
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    app = create_app(config)
    # What start-up built lives as long as the process: out of the collector's walks,
    # so a full collection (which stalls every visit's media) only walks what visits make.
    gc.freeze()
    web.run_app(app, host=config.host, port=config.port,
                print=lambda _: print(f"Serving on {config.base_url}", flush=True),
                access_log=None)
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    config = load(args.config)
    public_dir = args.public_dir or config.keys_dir
    private = args.private_out or config.data_dir / "keys" / f"{args.kid}.private.pem"
    try:
        write_keypair(args.kid, public_dir, private, alg=args.alg)
    except FileExistsError as exc:
        print(f"refusing to overwrite {exc.filename}", file=sys.stderr)
        return 1
    print(f"private key: {private}\npublic key:  {public_dir / (args.kid + '.pem')}")
    return 0


def _token(args: argparse.Namespace) -> int:
    config = load(args.config)
    visit = None
    if args.role in VISIT_ROLES:
        if not (args.visit_id and args.starts_at and args.ends_at):
            print(f"role {args.role} needs --visit-id, --starts-at and --ends-at",
                  file=sys.stderr)
            return 2
        visit = VisitClaim(id=args.visit_id, starts_at=args.starts_at, ends_at=args.ends_at,
                           privileged=args.privileged)
    key_path = args.key or dev_private_key_path(config)
    try:
        token = issue_token(load_private_key(key_path), kid=args.kid,
                            issuer=args.issuer or config.token_issuer,
                            audience=args.audience or config.token_audience, sub=args.sub,
                            role=args.role, name=args.name, visit=visit, now=time.time(),
                            ttl_s=args.ttl)
    except (OSError, ValueError) as exc:
        print(f"cannot issue the token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from app.anchors import check_anchors

    config = load(args.config)
    path = args.db or config.database
    result = verify_file(path)
    if not result.ok:
        print(f"AUDIT LOG TAMPERED: {result.problem}", file=sys.stderr)
        return 1
    anchored = check_anchors(path, config, args.tsa_ca)
    if anchored.exit_code:
        print(anchored.text, file=sys.stderr)
        return anchored.exit_code
    print(f"audit log intact: {result.checked} entries verified")
    if anchored.text:
        print(anchored.text)
    return 0


def _recording_files(config: Config, visit: str) -> tuple[Path, bytes, str | None]:
    """The visit's folder, the recording public key and the seal kept in the database."""
    from recorder.session import visit_folder
    from records.dialect import ERRORS, is_url, open_database

    folder = visit_folder(config.recordings_dir, visit)
    public = (config.data_dir / "keys" / "recording.public.pem").read_bytes()
    seal = None
    if is_url(config.database) or Path(config.database).exists():
        db = open_database(config.database, readonly=True)
        try:
            row = db.execute("SELECT seal FROM recordings WHERE visit = ?", (visit,)).fetchone()
        except ERRORS:
            row = None
        db.close()
        seal = row[0] if row else None
    return folder, public, seal


def _recordings_verify(args: argparse.Namespace) -> int:
    from recorder.verify import format_report, verify_visit
    from recorder.verify import main as verify_main

    if args.dir:
        return verify_main(["--dir", str(args.dir)]
                           + (["--public-key", str(args.public_key)] if args.public_key else []))
    if not args.visit:
        print("give a VISIT id or --dir FOLDER", file=sys.stderr)
        return 2
    config = load(args.config)
    try:
        folder, public, seal = _recording_files(config, args.visit)
    except (OSError, ValueError) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    if not folder.is_dir():
        print(f"no recording for visit {args.visit!r} in {config.recordings_dir}",
              file=sys.stderr)
        return 2
    report = verify_visit(folder, public, seal, allow_unsealed=args.allow_unsealed)
    print(format_report(report, folder))
    return 0 if report.ok else 1


def _recordings_export(args: argparse.Namespace) -> int:
    from recorder.export import export_visit
    from recorder.signing import load_existing

    config = load(args.config)
    folder, _, seal = _recording_files(config, args.visit)
    keys = config.data_dir / "keys"
    try:  # the export's list of files is signed with the server's own key
        key = load_existing(keys / "recording.private.pem", keys / "recording.public.pem")
    except (OSError, ValueError) as exc:
        print(f"cannot export: {exc}", file=sys.stderr)
        return 2
    finals = sorted((folder / "final").glob("*.*")) if (folder / "final").is_dir() else []
    custody = [{"action": "export", "actor": os.environ.get("USER", "operator"),
                "role": "operator", "at": time.time(), "via": "visitbridge recordings export"}]
    from app.atrest import open_vault
    from recorder.anchored import visit_anchors
    from records import store
    from records.audit import AuditLog

    db = store.connect(config.database)
    path = export_visit(folder, key, args.out, custody, seal, finals,
                        visit_anchors(db, args.visit, config.tsa_ca_file), open_vault(config))
    AuditLog(db).record(action="recording_export", actor=custody[0]["actor"], role="operator",
                        visit=args.visit, now=time.time(),
                        detail={"via": "visitbridge recordings export", "file": str(path)})
    db.close()
    print(f"exported {args.visit} to {path}")
    return 0


def _drain(args: argparse.Namespace) -> int:
    """Mark a node of a Redis cluster drained (or open again): read at its next refresh."""
    from app.redis_cluster import set_drain

    config = load(args.config)
    node = args.node or config.node_id
    if not config.redis_url or not node:
        raise ConfigError("redis_url and node_id (or --node): drain needs the nodes' Redis")
    asyncio.run(set_drain(config.redis_url, node, not args.undo))
    print(f"node {node}: {'open to new visits' if args.undo else 'drained'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visitbridge", description=__doc__)
    p.add_argument("--config", type=Path, help="TOML configuration file")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="N SFU worker processes, one per core (default: config workers)")
    serve.add_argument("--demo", action="store_true",
                       help="trust a development key (created in <data_dir>/demo-keys if "
                            "missing) and print demo join links; never in production")
    serve.set_defaults(func=_serve)

    drain = sub.add_parser("drain", help="a node takes no new visits; running ones finish")
    drain.add_argument("--node", help="node id (default: the configured node_id)")
    drain.add_argument("--undo", action="store_true", help="take new visits again")
    drain.set_defaults(func=_drain)

    keys = sub.add_parser("keys", help="manage token signing keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    gen = keys_sub.add_parser("generate", help="write a new key pair")
    gen.add_argument("--kid", required=True, help="key id; the public key is <kid>.pem")
    gen.add_argument("--alg", choices=ALGORITHMS, default="EdDSA")
    gen.add_argument("--public-dir", type=Path, help="default: the configured keys folder")
    gen.add_argument("--private-out", type=Path,
                     help="default: <data_dir>/keys/<kid>.private.pem")
    gen.set_defaults(func=_keys_generate)

    tok = sub.add_parser("token", help="issue a booking token (reference issuer)")
    tok.add_argument("--key", type=Path,
                     help="private key PEM (default: the development key of serve --demo)")
    tok.add_argument("--kid", default=DEV_KID)
    tok.add_argument("--issuer", help="default: configured token_issuer")
    tok.add_argument("--audience", help="default: configured token_audience")
    tok.add_argument("--sub", required=True, help="participant id")
    tok.add_argument("--role", required=True, choices=sorted(ROLES))
    tok.add_argument("--name", required=True, help="display name")
    tok.add_argument("--visit-id")
    tok.add_argument("--starts-at", type=_when, help="unix seconds or ISO 8601")
    tok.add_argument("--ends-at", type=_when, help="unix seconds or ISO 8601")
    tok.add_argument("--privileged", action="store_true", help="attorney visit: never recorded")
    tok.add_argument("--ttl", type=float, help="staff tokens: lifetime in seconds")
    tok.set_defaults(func=_token)

    audit = sub.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    check = audit_sub.add_parser("verify", help="check the chain; exit 1 if tampered")
    check.add_argument("--db", type=_database,
                       help="a SQLite file or a postgresql:// URL (default: the configured "
                            "database)")
    check.add_argument("--tsa-ca", type=Path,
                       help="time-stamp authority root certificate(s) (default: tsa_ca_file)")
    check.set_defaults(func=_audit_verify)

    rec = sub.add_parser("recordings", help="verify and export visit recordings")
    rec_sub = rec.add_subparsers(dest="recordings_command", required=True)
    rverify = rec_sub.add_parser("verify", help="check a recording; exit 1 if not intact")
    rverify.add_argument("visit", nargs="?", help="visit id (recording on this server)")
    rverify.add_argument("--dir", type=Path, help="an unzipped export (offline check)")
    rverify.add_argument("--public-key", type=Path, help="recording public key for --dir")
    rverify.add_argument("--allow-unsealed", action="store_true",
                         help="the visit is still being recorded")
    rverify.set_defaults(func=_recordings_verify)
    rexport = rec_sub.add_parser("export", help="zip a recording with its evidence")
    rexport.add_argument("visit")
    rexport.add_argument("--out", type=Path, required=True, help="zip file to write")
    rexport.set_defaults(func=_recordings_export)
    from app.atrest import kek_create, kek_rotate

    kek = rec_sub.add_parser("kek", help="the key-encryption key of recordings at rest")
    kek_sub = kek.add_subparsers(dest="kek_command", required=True)
    kek_sub.add_parser("create", help="write a new keyring at recordings_key_file"
                       ).set_defaults(func=kek_create)
    kek_sub.add_parser("rotate", help="new key; re-wrap every data key; drop the old key"
                       ).set_defaults(func=kek_rotate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
