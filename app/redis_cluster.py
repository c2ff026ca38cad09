"""The node registry and the visit leases in Redis (the I/O edge of ``app.cluster``).

Keys: ``node:<id>`` (a hash, expiring unless its node refreshes it), ``node-drain:<id>``
(set by ``visitbridge drain``; kept until undone), ``visit:<id>`` (the lease,
``<node>:<epoch>``) and ``visit-epoch:<id>`` (the fencing counter). Taking, renewing
and releasing a lease are Lua scripts, so each check and its write are one step: an
owner whose lease lapsed (even for a moment, and was taken by another node) can never
renew it, because the value it renews names its own older epoch.
"""

from __future__ import annotations

from redis.asyncio import Redis

from app.cluster import Lease, Node, choose

EPOCH_KEEP_MS = 2 * 86400 * 1000  # longer than any visit: the counter outlives its leases
# A burst of first joins races for the least loaded node: each loser chooses again on the
# counts the winners left, so a burst of N settles within N rounds. The last attempt
# takes its choice whatever the count then is.
PLACE_ATTEMPTS = 32

# KEYS: lease, epoch, the chosen node; ARGV: node, ttl ms, epoch keep ms, and the node's
# participants as the choice saw them ('' to skip the check). Returns {the lease held
# after, 1 when this call placed it}, or nil when the node's count moved since the choice.
# A placement counts one participant on its node at once (a registered one only: never
# recreates one), so joins arriving together spread before the next refresh.
ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held then return {held, 0} end
if ARGV[4] ~= '' and redis.call('HGET', KEYS[3], 'participants') ~= ARGV[4] then
  return nil
end
local epoch = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local value = ARGV[1] .. ':' .. epoch
redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'participants', 1)
end
return {value, 1}
"""
# KEYS: lease; ARGV: the value held, ttl ms. 1 when renewed, 0 when the lease is not ours.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: lease; ARGV: the value held. Deletes only our own lease.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisCluster:
    def __init__(self, url: str) -> None:
        self.redis = Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self._acquire = self.redis.register_script(ACQUIRE)
        self._renew = self.redis.register_script(RENEW)
        self._release = self.redis.register_script(RELEASE)

    async def close(self) -> None:
        await self.redis.aclose()

    async def publish(self, node: Node, ttl_ms: int) -> None:
        """Register or refresh this node; it disappears ``ttl_ms`` after the last call."""
        key = f"node:{node.id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=node.fields())
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()

    async def leave(self, node_id: str) -> None:
        await self.redis.delete(f"node:{node_id}")

    async def nodes(self) -> list[Node]:
        """Every registered node with a complete record."""
        ids = [key.removeprefix("node:") async for key in self.redis.scan_iter("node:*")]
        async with self.redis.pipeline(transaction=False) as pipe:
            for node_id in ids:
                pipe.hgetall(f"node:{node_id}")
            records = await pipe.execute()
        found = (Node.from_fields(node_id, raw) for node_id, raw in zip(ids, records, strict=True))
        return [n for n in found if n is not None]

    async def draining(self, node_id: str) -> bool:
        return bool(await self.redis.exists(f"node-drain:{node_id}"))

    async def set_drain(self, node_id: str, drain: bool) -> None:
        if drain:
            await self.redis.set(f"node-drain:{node_id}", "1")
        else:
            await self.redis.delete(f"node-drain:{node_id}")

    async def owner(self, visit_id: str) -> Lease | None:
        return Lease.parse(await self.redis.get(f"visit:{visit_id}"))

    async def leased(self) -> set[str]:
        """Every visit some node holds now."""
        return {key.removeprefix("visit:") async for key in self.redis.scan_iter("visit:*")}

    async def place(self, visit_id: str, ttl_ms: int,
                    here: str | None = None) -> tuple[Lease, bool]:
        """The visit's lease, and whether this call placed it: the lease that holds it
        already (a join elsewhere won the race), or a new one, on ``here`` when given,
        else on the least loaded open node (``choose``; ``ServerFull`` when none is)."""
        for attempt in range(PLACE_ATTEMPTS):
            node_id, seen = here, None
            if here is None:
                node = choose(await self.nodes())
                node_id = node.id
                seen = node.participants if attempt < PLACE_ATTEMPTS - 1 else None
            assert node_id is not None
            taken = await self._take(visit_id, node_id, ttl_ms, seen)
            if taken is not None:
                return taken
        raise AssertionError("the last attempt takes its choice unconditionally")

    async def acquire(self, visit_id: str, node_id: str, ttl_ms: int) -> Lease:
        """Place the visit on ``node_id`` with the next epoch, unless it is held already:
        then the lease that holds it."""
        taken = await self._take(visit_id, node_id, ttl_ms, None)
        assert taken is not None  # only a compared count refuses
        return taken[0]

    async def _take(self, visit_id: str, node_id: str, ttl_ms: int,
                    seen: int | None) -> tuple[Lease, bool] | None:
        """``ACQUIRE``: None when ``node_id``'s participants are no longer ``seen``."""
        reply = await self._acquire(
            keys=[f"visit:{visit_id}", f"visit-epoch:{visit_id}", f"node:{node_id}"],
            args=[node_id, ttl_ms, EPOCH_KEEP_MS, "" if seen is None else seen])
        if reply is None:
            return None
        lease = Lease.parse(reply[0])
        if lease is None:
            raise ValueError(f"malformed lease for visit {visit_id!r}: {reply[0]!r}")
        return lease, bool(reply[1])

    async def renew(self, visit_id: str, lease: Lease, ttl_ms: int) -> bool:
        """Extend our lease; False when it lapsed or another node holds the visit now."""
        return bool(await self._renew(keys=[f"visit:{visit_id}"], args=[lease.value, ttl_ms]))

    async def release(self, visit_id: str, lease: Lease) -> None:
        await self._release(keys=[f"visit:{visit_id}"], args=[lease.value])


async def set_drain(url: str, node_id: str, drain: bool) -> None:
    cluster = RedisCluster(url)
    try:
        await cluster.set_drain(node_id, drain)
    finally:
        await cluster.close()
