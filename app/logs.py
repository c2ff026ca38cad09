"""Logging set-up: one JSON object per line, with the visit and participant ids.

Tokens never reach a log: no code logs one, and join links carry them in the URL
fragment, which browsers do not send to servers.
"""

from __future__ import annotations

import json
import logging
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aioice and aiortc are chatty at INFO about every candidate pair.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.Formatter.converter = time.gmtime
