"""Journal: every inbound event, recorded once, with what became of it.

A delivery's id is claimed before anything else happens, so a retry, a redelivery or a
replay after a restart finds its id taken and is never answered twice. Each entry moves
received -> running -> done | failed, or to interrupted when the process died under it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from bot.clock import Clock, system_clock
from bot.database import Connection
from bot.errors import UnknownMessage
from bot.store import (
    Store,
    ThreadRecord,
    select_thread,
    select_thread_by_id,
    statement,
    upsert_thread,
)
from bot.thread_key import ThreadKey


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    """What a finished entry records."""

    ok: bool
    reply_refs: Sequence[str] = ()
    session_id: str | None = None
    user_event_id: str | None = None
    answer_event_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    turn_id: int
    thread: ThreadRecord | None  # as it was when the event was claimed


@dataclass(frozen=True, slots=True)
class HandedOver:
    """An entry another replica handed to this one: deliver it again from `redo`, on
    `platform`."""

    turn_id: int
    platform: str
    redo: str


# Where a replica is told (its id) that another handed it an entry.
HANDED_OVER = "threadpilot_handed_over"


@dataclass(frozen=True, slots=True)
class ForkPoint:
    """Where a branch is cut: after `turn_id`, a turn of `session_id`. The fork keeps the
    runtime events before `to_event_id` (all of them when None)."""

    turn_id: int
    session_id: str
    to_event_id: str | None


class Journal:
    """The journal as one replica keeps it: the entries it claims are its own until they
    finish, or until it is counted dead (`recover`)."""

    def __init__(self, store: Store, clock: Clock = system_clock, replica: str = "") -> None:
        self._store = store
        self._clock = clock
        self._replica = replica

    async def claim(
        self,
        event_id: str,
        key: ThreadKey | None,
        kind: str,
        user_ref: str | None = None,
        *,
        start: bool = False,
        joins: bool = True,
        handed: bool = False,
    ) -> Claim | None:
        """Record a new inbound event of the thread `key` (with `joins`, the thread is
        recorded too if new: the bot takes part in it from now on); None if the event id
        was seen before. With `start` (nothing queued ahead of it in the thread) the entry
        is recorded running at once, saving `start()`'s round trip. `handed`: the event
        was claimed by another replica and handed over to this one, which takes it up."""
        now = self._clock()

        def work(conn: Connection) -> Claim | None:
            thread = None
            if key is not None:
                thread = upsert_thread(conn, key, now) if joins else select_thread(conn, key)
            if handed:
                row = conn.execute(
                    "UPDATE turns SET redo = NULL, state = ?, started_at = ? WHERE event_id = ? "
                    "AND replica = ? AND state = 'received' AND redo IS NOT NULL RETURNING id",
                    ("running" if start else "received", now if start else None, event_id,
                     self._replica),
                ).fetchone()  # fmt: skip
                return Claim(int(row[0]), thread) if row else None
            row = conn.execute(
                "INSERT INTO turns (event_id, thread_id, kind, state, user_ref, received_at, "
                "started_at, replica) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING id",
                (
                    event_id,
                    thread.id if thread else None,
                    kind,
                    "running" if start else "received",
                    user_ref,
                    now,
                    now if start else None,
                    self._replica,
                ),
            ).fetchone()
            return Claim(int(row[0]), thread) if row else None

        return await self._store.run(work)

    async def hand_over(self, turn_id: int, replica: str, redo: str) -> None:
        """Give the entry to `replica`, which holds its thread's session live, to deliver
        again from `redo` and answer (bot/router.py); it is told at once."""

        def work(conn: Connection) -> None:
            conn.execute(
                "UPDATE turns SET replica = ?, redo = ?, state = 'received', started_at = NULL "
                "WHERE id = ?",
                (replica, redo, turn_id),
            )
            conn.notify(HANDED_OVER, replica)

        await self._store.run(work)

    async def hand_back(self, seen_since: float) -> int:
        """Shutting down: what was handed to this replica and not taken up goes to another
        live replica (which is told); how many."""

        def work(conn: Connection) -> int:
            rows = conn.execute(
                "UPDATE turns SET replica = (SELECT id FROM replicas WHERE id <> ? "
                "AND leaving = 0 AND seen_at >= ? ORDER BY id LIMIT 1) "
                "WHERE replica = ? AND state = 'received' AND redo IS NOT NULL "
                "AND EXISTS (SELECT 1 FROM replicas WHERE id <> ? AND leaving = 0 "
                "AND seen_at >= ?) RETURNING replica",
                (self._replica, seen_since, self._replica, self._replica, seen_since),
            ).fetchall()
            for replica in {row[0] for row in rows}:
                conn.notify(HANDED_OVER, replica)
            return len(rows)

        return await self._store.run(work)

    async def handed_over(self) -> list[HandedOver]:
        """The entries other replicas handed to this one that it has not taken up yet,
        oldest first."""
        rows = await self._store.run(
            lambda conn: conn.execute(
                "SELECT t.id, th.platform, t.redo FROM turns t JOIN threads th "
                "ON th.id = t.thread_id WHERE t.replica = ? AND t.state = 'received' "
                "AND t.redo IS NOT NULL ORDER BY t.id",
                (self._replica,),
            ).fetchall()
        )
        return [HandedOver(row[0], row[1], row[2]) for row in rows]

    async def heard(self, event_id: str, thread_id: int, user_ref: str | None) -> None:
        """Record a message of the thread that was not for the bot (kind 'context'): the
        agent reads it with its next turn there, which this entry tells it to look for."""
        now = self._clock()
        await self._store.run(
            statement(
                "INSERT INTO turns (event_id, thread_id, kind, state, user_ref, received_at, "
                "finished_at) VALUES (?, ?, 'context', 'done', ?, ?, ?) "
                "ON CONFLICT (event_id) DO NOTHING",
                (event_id, thread_id, user_ref, now, now),
            )
        )

    async def quiet_between(self, thread_id: int, after: int, before: int) -> bool:
        """Whether the thread has no entries between entries `after` and `before`."""
        row = await self._store.run(
            lambda conn: conn.execute(
                "SELECT 1 FROM turns WHERE thread_id = ? AND id > ? AND id < ? LIMIT 1",
                (thread_id, after, before),
            ).fetchone()
        )
        return row is None

    async def start(self, turn_id: int) -> ThreadRecord | None:
        """Mark the entry running; return its thread as it is now (if it has one)."""
        now = self._clock()

        def work(conn: Connection) -> ThreadRecord | None:
            (thread_id,) = conn.execute(
                "UPDATE turns SET state = 'running', started_at = ? WHERE id = ? "
                "RETURNING thread_id",
                (now, turn_id),
            ).fetchone()
            return None if thread_id is None else select_thread_by_id(conn, thread_id)

        return await self._store.run(work)

    async def finish(self, turn_id: int, outcome: TurnOutcome) -> None:
        """Record how the entry ended, unless it was counted interrupted meanwhile."""
        await self._store.run(
            statement(
                "UPDATE turns SET state = ?, finished_at = ?, reply_refs = ?, session_id = ?, "
                "user_event_id = ?, answer_event_id = ?, error = ? "
                "WHERE id = ? AND state IN ('received', 'running')",
                (
                    "done" if outcome.ok else "failed",
                    self._clock(),
                    json.dumps(list(outcome.reply_refs)),
                    outcome.session_id,
                    outcome.user_event_id,
                    outcome.answer_event_id,
                    outcome.error,
                    turn_id,
                ),
            )
        )

    async def interrupt(self, turn_id: int) -> None:
        """The entry was stopped before it finished (the bot is shutting down)."""
        await self._store.run(
            statement(
                "UPDATE turns SET state = 'interrupted', finished_at = ? WHERE id = ?",
                (self._clock(), turn_id),
            )
        )

    async def fork_point(self, thread: ThreadRecord, message_ref: str | None) -> ForkPoint | None:
        """The branch point for a platform message of the thread: its latest turn at or
        before that message, in whichever session it was; without a message, the latest
        turn of the current session. None when there is no such turn. Raises
        UnknownMessage for a message it has no record of."""

        def work(conn: Connection) -> ForkPoint | None:
            if message_ref is None:
                point = conn.execute(
                    "SELECT id, session_id FROM turns WHERE thread_id = ? AND session_id = ? "
                    "AND kind = 'turn' AND user_event_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                    (thread.id, thread.session_id),
                ).fetchone()
            else:
                (anchor,) = conn.execute(
                    "SELECT MIN(id) FROM turns WHERE thread_id = ? AND (user_ref = ? OR "
                    f"? IN ({conn.json_values('reply_refs')}))",
                    (thread.id, message_ref, message_ref),
                ).fetchone()
                if anchor is None:
                    raise UnknownMessage(message_ref)
                point = conn.execute(
                    "SELECT id, session_id FROM turns WHERE thread_id = ? AND id <= ? "
                    "AND kind = 'turn' AND user_event_id IS NOT NULL ORDER BY id DESC LIMIT 1",
                    (thread.id, anchor),
                ).fetchone()
            if point is None:
                return None
            # Cut before the next request made of that session: its next turn, or the
            # summary request that retired it.
            after = (
                conn.execute(
                    "SELECT user_event_id FROM turns WHERE session_id = ? AND id > ? "
                    "AND user_event_id IS NOT NULL ORDER BY id LIMIT 1",
                    (point["session_id"], point["id"]),
                ).fetchone()
                or conn.execute(
                    "SELECT summary_event_id FROM sessions WHERE session_id = ? "
                    "AND summary_event_id IS NOT NULL",
                    (point["session_id"],),
                ).fetchone()
            )
            return ForkPoint(point["id"], point["session_id"], after[0] if after else None)

        return await self._store.run(work)

    async def prune(self, received_before: float) -> int:
        """Forget finished entries received before the given time; returns how many."""
        return await self._store.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM turns WHERE received_at < ? "
                    "AND state NOT IN ('received', 'running')",
                    (received_before,),
                ).rowcount
            )
        )

    async def recover(self, seen_before: float) -> list[ThreadKey]:
        """Entries left unfinished by replicas not seen since `seen_before` (dead, or gone
        with a previous run) become interrupted, and those replicas are forgotten.
        Returns the threads they were in, each once, to be told (by the one replica whose
        update found them)."""
        now = self._clock()

        def work(conn: Connection) -> list[ThreadKey]:
            conn.execute(
                "DELETE FROM replicas WHERE seen_at < ? AND id <> ?", (seen_before, self._replica)
            )
            rows = conn.execute(
                "UPDATE turns SET state = 'interrupted', finished_at = ? "
                "WHERE state IN ('received', 'running') AND (replica IS NULL OR ("
                "replica <> ? AND replica NOT IN (SELECT id FROM replicas))) RETURNING thread_id",
                (now, self._replica),
            ).fetchall()
            ids = sorted({row[0] for row in rows if row[0] is not None})
            return [select_thread_by_id(conn, thread_id).key for thread_id in ids]

        return await self._store.run(work)
