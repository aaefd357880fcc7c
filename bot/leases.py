"""Leases: which replica runs a thread's turns, one at a time across the fleet.

Every `threadpilot run` process is a replica with an id of its own, alive while its
heartbeat is recent. A replica runs a thread's turn only while it holds the thread's
lease (owner, epoch, expiry): it takes the lease when the thread's earlier journal
entries are done, renews it with every heartbeat while it holds it, and lets go when it
has nothing more to do there. Letting go keeps it as the last owner: taking the lease
back, with nobody in between, keeps the epoch, and so its live session. When another
replica takes the lease, the epoch goes up, and the session state the old owner would
write (bot/session_files.py) is refused for the old epoch.

A replica that stalls (a long pause, a frozen VM) may find, when it runs again, that its
leases lapsed and were taken: `confirm` tells it so before it posts anything, from the
time of its last renewal, so a stale owner never answers. On one machine (SQLite) there
is one replica; the same rules hold and cost a write or two per turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.clock import Clock
from bot.database import Connection
from bot.errors import LeaseLost
from bot.store import Store

log = logging.getLogger(__name__)

_POLL_S = 1.0  # how often a replica waiting for a lease asks again, should it hear nothing
CHANNEL = "threadpilot_leases"  # where replicas say they let go of a thread (its id)


def new_replica_id() -> str:
    """An id for this process, never reused: a restarted replica is a new one."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Fence:
    """A held lease: writes made under it are refused once `epoch` has passed."""

    thread_id: int
    owner: str
    epoch: int


@dataclass(frozen=True, slots=True)
class ReplicaSeen:
    """A replica of the fleet, for `status`."""

    id: str
    seen_s: float  # since its last heartbeat
    leases: int  # threads it holds now
    this: bool  # the replica asked


def fenced(conn: Connection, fence: Fence) -> bool:
    """Whether `fence` still holds, inside a transaction about to write under it; on
    PostgreSQL the lease row stays locked until that transaction ends, so nobody takes
    it over halfway."""
    row = conn.execute(
        f"SELECT 1 FROM leases WHERE thread_id = ? AND owner = ? AND epoch = ?{conn.share_lock()}",
        (fence.thread_id, fence.owner, fence.epoch),
    ).fetchone()
    return row is not None


def _release(conn: Connection, thread_id: int, owner: str) -> None:
    """Let go of the thread's lease, if `owner` holds it, and tell the replicas waiting."""
    released = conn.execute(
        "UPDATE leases SET expires_at = 0 WHERE thread_id = ? AND owner = ? AND expires_at > 0",
        (thread_id, owner),
    ).rowcount
    if released:
        conn.notify(CHANNEL, str(thread_id))


class Leases:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ttl_s: float = 15.0,
        replica_id: str = "",
        poll_s: float = _POLL_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self.ttl_s = ttl_s
        self.id = replica_id or new_replica_id()
        self._held: dict[int, Fence] = {}
        self._last: dict[int, int] = {}  # thread id -> the epoch this replica last held
        self._renewed_at = float("-inf")
        self._poll_s = poll_s
        self._let_go = asyncio.Event()  # set when some replica let go of some lease
        self._beating: asyncio.Task[None] | None = None

    @property
    def interval_s(self) -> float:
        """How often to beat the heart: three times per lease (THREADPILOT_LEASE_TTL_S)."""
        return self.ttl_s / 3

    def held(self, thread_id: int) -> Fence | None:
        return self._held.get(thread_id)

    def alive_since(self) -> float:
        """A replica whose last heartbeat is older than this is counted dead."""
        return self._clock() - self.ttl_s

    async def start(self) -> None:
        """Join the fleet and keep beating, from before this replica takes any event:
        the others count a replica dead whose heartbeat is older than a lease."""
        await self._store.listen(CHANNEL, lambda _thread: self._let_go.set())
        await self.heartbeat()
        self._beating = asyncio.create_task(self._beat())

    async def free_the_left(self) -> None:
        """On one machine, where this is the only replica: the leases an earlier run left
        held (killed before it let go) are free now, not once they lapse."""
        await self._store.run(
            lambda conn: conn.execute(
                "UPDATE leases SET expires_at = 0 WHERE owner <> ?", (self.id,)
            )
        )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.heartbeat()
            except Exception as exc:  # the database is unreachable: try again next beat
                log.warning("heartbeat failed: %s", exc)

    async def leaving(self) -> None:
        """Shutting down: the others hand this replica nothing more."""
        await self._store.run(
            lambda conn: conn.execute("UPDATE replicas SET leaving = 1 WHERE id = ?", (self.id,))
        )

    async def leave(self) -> None:
        """Shutting down: let go of every lease and leave the fleet."""
        if self._beating is not None:
            self._beating.cancel()
        self._held.clear()
        await self._store.run(
            lambda conn: (
                conn.execute("DELETE FROM leases WHERE owner = ?", (self.id,)),
                conn.execute("DELETE FROM replicas WHERE id = ?", (self.id,)),
            )
        )

    async def heartbeat(self) -> None:
        """Say this replica is alive (the first beat registers it) and renew the leases it
        holds; forget those another replica took meanwhile."""
        now = self._clock()
        ids = list(self._held)

        def work(conn: Connection) -> set[int]:
            # Back in, should the others have counted it dead during a stall.
            conn.execute(
                "INSERT INTO replicas (id, started_at, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at",
                (self.id, now, now),
            )
            conn.execute(
                "UPDATE leases SET expires_at = ? WHERE owner = ? AND expires_at > 0",
                (now + self.ttl_s, self.id),
            )
            return {
                row[0]
                for row in conn.execute(
                    "SELECT thread_id FROM leases WHERE owner = ?", (self.id,)
                ).fetchall()
            }

        still = await self._store.run(work)
        for thread_id in ids:
            if thread_id not in still:
                log.warning("another replica took over thread %d", thread_id)
                self._held.pop(thread_id, None)
        self._renewed_at = now

    async def owner_elsewhere(self, thread_id: int) -> str | None:
        """The live replica other than this one that last held the thread's lease (and
        so holds its session live), if there is one."""
        seen_since = self.alive_since()
        row = await self._store.run(
            lambda conn: conn.execute(
                "SELECT l.owner FROM leases l JOIN replicas r ON r.id = l.owner "
                "WHERE l.thread_id = ? AND l.owner <> ? AND r.seen_at >= ? AND r.leaving = 0",
                (thread_id, self.id, seen_since),
            ).fetchone()
        )
        return None if row is None else str(row[0])

    async def fleet(self) -> list[ReplicaSeen]:
        """The replicas alive (this one first), each with the leases it holds."""
        now = self._clock()
        rows = await self._store.run(
            lambda conn: conn.execute(
                "SELECT r.id, r.seen_at, COUNT(l.thread_id) FROM replicas r "
                "LEFT JOIN leases l ON l.owner = r.id AND l.expires_at > ? "
                "WHERE r.seen_at >= ? GROUP BY r.id, r.seen_at ORDER BY r.id",
                (now, self.alive_since()),
            ).fetchall()
        )
        seen = [ReplicaSeen(row[0], now - row[1], row[2], row[0] == self.id) for row in rows]
        return sorted(seen, key=lambda replica: not replica.this)

    async def take(self, thread_id: int, entry_id: int | None = None) -> Fence | None:
        """The thread's lease, if it is free, lapsed or already this replica's, and no
        journal entry of the thread before `entry_id` waits on another replica; else None."""
        now = self._clock()
        me, expires = self.id, now + self.ttl_s

        def work(conn: Connection) -> int | None:
            if entry_id is not None:
                ahead = conn.execute(
                    "SELECT 1 FROM turns WHERE thread_id = ? AND id < ? "
                    "AND state IN ('received', 'running') AND replica <> ? LIMIT 1",
                    (thread_id, entry_id, me),
                ).fetchone()
                if ahead is not None:
                    # Its turn first: should this replica hold the lease, it lets go.
                    _release(conn, thread_id, me)
                    return None
            row = conn.execute(
                "SELECT owner, epoch, expires_at FROM leases WHERE thread_id = ?", (thread_id,)
            ).fetchone()
            if row is None:
                taken = conn.execute(
                    "INSERT INTO leases (thread_id, owner, epoch, expires_at) VALUES (?, ?, 1, ?) "
                    "ON CONFLICT (thread_id) DO NOTHING",
                    (thread_id, me, expires),
                ).rowcount
                return 1 if taken else None
            owner, epoch, expires_at = row
            if owner != me and expires_at >= now:
                return None
            epoch = epoch if owner == me else epoch + 1
            # Compare and set, on all three: of two replicas taking a lapsed lease, one
            # wins, also when the other is its last owner taking it back (same epoch).
            taken = conn.execute(
                "UPDATE leases SET owner = ?, epoch = ?, expires_at = ? "
                "WHERE thread_id = ? AND owner = ? AND epoch = ? AND expires_at = ?",
                (me, epoch, expires, thread_id, owner, row[1], expires_at),
            ).rowcount
            return epoch if taken else None

        epoch = await self._store.run(work)
        if epoch is None:
            self._held.pop(thread_id, None)
            return None
        self._last[thread_id] = epoch
        fence = self._held[thread_id] = Fence(thread_id, me, epoch)
        return fence

    async def hold(
        self, thread_id: int, entry_id: int | None, waiting: Callable[[], Awaitable[None]]
    ) -> bool:
        """Take the thread's lease, waiting for it as long as it takes (the owner lets go
        when it is done, or its lease lapses); `waiting` is called once if it must wait.
        Returns whether the thread may have changed since this replica last held it."""
        last = self._last.get(thread_id)
        waited = False
        while True:
            self._let_go.clear()  # before asking: a lease let go meanwhile wakes it
            fence = await self.take(thread_id, entry_id)
            if fence is not None:
                return waited or fence.epoch != last
            if not waited:
                waited = True
                await waiting()
            # Woken when a replica lets go of a lease (NOTIFY); polled should that be missed.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._let_go.wait(), self._poll_s)

    async def let_go(self, thread_id: int) -> None:
        """Nothing more to do in the thread for now: any replica may take it over."""
        fence = self._held.pop(thread_id, None)
        if fence is None:
            return
        # Owned by this replica, the lease is at the epoch it holds: only a change of
        # owner moves the epoch on.
        await self._store.run(lambda conn: _release(conn, fence.thread_id, fence.owner))
        self._let_go.set()

    async def confirm(self, fence: Fence) -> None:
        """Raise LeaseLost unless `fence` still holds. Free while the last renewal is
        recent; after a stall, the database is asked."""
        if self._held.get(fence.thread_id) != fence:
            raise LeaseLost(f"thread {fence.thread_id} was taken over")
        if self._clock() < self._renewed_at + self.ttl_s * 2 / 3:
            return
        await self.heartbeat()
        if self._held.get(fence.thread_id) != fence:
            raise LeaseLost(f"thread {fence.thread_id} was taken over")
