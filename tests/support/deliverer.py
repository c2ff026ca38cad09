"""A webhook deliverer as a process of its own: ``python -m tests.support.deliverer
DATABASE_URL WEBHOOK_URL`` runs one ``WebhookSender`` on the outbox of that database until
it is stopped, as each server sharing a PostgreSQL database does."""

from __future__ import annotations

import asyncio
import signal
import sys

from records.store import connect
from records.webhooks import Outbox, Pacing, WebhookSender
from tests.support.webhooks import SECRET

PACING = Pacing(min_backoff_s=0.05, max_backoff_s=0.2, idle_poll_s=0.02, lease_poll_s=0.05)


async def main(database: str, url: str) -> None:
    db = connect(database)
    sender = WebhookSender(Outbox(db), url, SECRET.encode(), PACING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sender.start()
    print("ready", flush=True)
    await stop.wait()
    await sender.close()
    db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
