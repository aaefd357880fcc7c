"""Store: the database holding threads and the sessions they have had: SQLite (WAL) on one
machine, PostgreSQL for replicas (bot/database.py says what differs).

Every operation is a small synchronous function run in the store's one database thread
as one transaction (`Store.run`). Operations that arrive while a commit is in progress are
committed together with the next one (group commit): one round trip to the database
thread for many turns instead of several per turn. The turn journal lives in the same
database; its queries are in bot/journal.py. The engine's errors become StoreError here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.clock import Clock, system_clock
from bot.database import Connection, Database, database
from bot.errors import StoreError
from bot.migrations import MIGRATIONS
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[Connection], T]


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    id: int
    key: ThreadKey
    session_id: str
    generation: int
    session_state: str  # 'new': not yet created in the runtime; 'active'
    last_activity: float
    summary: str | None
    parent_id: int | None
    context_tokens: int
    context_limit: int
    context_ref: str | None  # the thread's position up to which the agent has been told it
    redaction_told: bool  # the thread knows its profile redacts what the model is sent
    model: str | None = None  # switched to with `model NAME`; None: its profile's

    @property
    def first_contact(self) -> bool:
        """Never had a session, nor been told of its thread: read it from the start."""
        return self.session_state == "new" and self.generation == 1 and self.context_ref is None


# A thread's summary is the one its current session was seeded with.
_SELECT_THREAD = (
    "SELECT t.id, t.platform, t.workspace, t.channel, t.thread, t.session_id, t.generation, "
    "t.session_state, t.last_activity, s.seed_summary AS summary, t.parent_id, t.context_tokens, "
    "t.context_limit, t.context_ref, t.redaction_told, t.model "
    "FROM threads t LEFT JOIN sessions s ON s.session_id = t.session_id"
)
_BY_KEY = "t.platform = ? AND t.workspace = ? AND t.channel = ? AND t.thread = ?"


@dataclass(frozen=True, slots=True)
class Retirement:
    """Why a thread's session is retired (reset, idle, context), and what its next one
    starts from: `summary` is kept with the retired session and seeds the next one;
    `summary_event_id` is the runtime event that asked for it (a branch never copies it);
    `context_ref` moves the thread's context cursor there, so nothing said before it
    reaches the next session."""

    cause: str
    summary: str | None = None
    summary_event_id: str | None = None
    context_ref: str | None = None


def _key_params(key: ThreadKey) -> tuple[str, str, str, str]:
    return (key.platform, key.workspace, key.channel, key.thread)


def _thread(row: Any) -> ThreadRecord:
    return ThreadRecord(
        id=row["id"],
        key=ThreadKey(row["platform"], row["workspace"], row["channel"], row["thread"]),
        session_id=row["session_id"],
        generation=row["generation"],
        session_state=row["session_state"],
        last_activity=row["last_activity"],
        summary=row["summary"],
        parent_id=row["parent_id"],
        context_tokens=row["context_tokens"],
        context_limit=row["context_limit"],
        context_ref=row["context_ref"],
        redaction_told=bool(row["redaction_told"]),
        model=row["model"],
    )


def select_thread(conn: Connection, key: ThreadKey) -> ThreadRecord | None:
    row = conn.execute(f"{_SELECT_THREAD} WHERE {_BY_KEY}", _key_params(key)).fetchone()
    return _thread(row) if row else None


def select_thread_by_id(conn: Connection, thread_id: int) -> ThreadRecord:
    row = conn.execute(f"{_SELECT_THREAD} WHERE t.id = ?", (thread_id,)).fetchone()
    if row is None:
        raise KeyError(f"no thread {thread_id}")
    return _thread(row)


def upsert_thread(conn: Connection, key: ThreadKey, now: float) -> ThreadRecord:
    """The thread's record, created (generation 1, no runtime session yet) if new."""
    existing = select_thread(conn, key)
    if existing is not None:
        return existing
    session_id = key.session_id(1)
    (thread_id,) = conn.execute(
        "INSERT INTO threads (platform, workspace, channel, thread, session_id, "
        "created_at, last_activity) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (*_key_params(key), session_id, now, now),
    ).fetchone()
    conn.execute(
        "INSERT INTO sessions (session_id, thread_id, generation, created_at) VALUES (?, ?, 1, ?)",
        (session_id, thread_id, now),
    )
    return select_thread_by_id(conn, thread_id)


def _record(conn: Connection, thread_id: int, session_id: str, action: str, now: float) -> None:
    conn.execute(
        "INSERT INTO lifecycle (thread_id, session_id, action, at) VALUES (?, ?, ?, ?)",
        (thread_id, session_id, action, now),
    )


def statement(sql: str, params: tuple[Any, ...] = ()) -> Work[None]:
    """A work that runs one statement."""

    def work(conn: Connection) -> None:
        conn.execute(sql, params)

    return work


def _translated(exc: BaseException, db: Database) -> BaseException:
    if isinstance(exc, db.errors):
        error = StoreError(f"the database refused it: {exc}")
        error.__cause__ = exc
        return error
    return exc


def _settle(
    db: Database, batch: list[tuple[Work[Any], asyncio.Future[Any]]], outcomes: list[Any]
) -> None:
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():  # the caller gave up waiting
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(_translated(value, db))


def _migrate(db: Database, conn: Connection) -> None:
    """Apply the migrations the database has not had yet, each with its version number
    in one transaction."""
    version = db.schema_version(conn)
    if version > len(MIGRATIONS):
        raise StoreError(
            f"{db.name} has schema version {version}, newer than this threadpilot "
            f"({len(MIGRATIONS)}); upgrade threadpilot or restore an older backup"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        db.migrate(conn, number, script)
        log.info("store migrated to schema version %d", number)


def _open(db: Database) -> Connection:
    conn = db.connect()
    try:
        _migrate(db, conn)
    except BaseException:
        db.close(conn)
        raise
    return conn


def _transaction(db: Database, conn: Connection, works: list[Work[Any]]) -> list[Any]:
    """Run `works` in one transaction and commit it; on any failure roll back and raise."""
    db.begin(conn)
    try:
        results = [work(conn) for work in works]
        conn.execute("COMMIT")
    except BaseException:
        if db.in_transaction(conn):
            conn.execute("ROLLBACK")
        raise
    return results


def _alone(db: Database, conn: Connection, work: Work[Any]) -> tuple[bool, Any]:
    try:
        return True, _transaction(db, conn, [work])[0]
    except Exception as exc:
        if isinstance(exc, db.errors):
            log.error("database write failed: %s", exc)
        return False, exc


def _apply(
    db: Database,
    conn: Connection,
    batch: list[tuple[Work[Any], asyncio.Future[Any]]],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """In the database thread: every work in one transaction, one commit for all; if one
    fails, each again in a transaction of its own, so that only it fails (a savepoint
    around each would cost two more round trips per work on PostgreSQL). Then wake every
    waiter at once (straight from here saves the loop a round trip)."""
    works = [work for work, _ in batch]
    outcomes: list[tuple[bool, Any]]
    try:
        outcomes = [(True, result) for result in _transaction(db, conn, works)]
    except Exception:
        outcomes = [_alone(db, conn, work) for work in works]
    loop.call_soon_threadsafe(_settle, db, batch, outcomes)


class Store:
    """One connection to the database, used only from the store's own thread. Open with
    `await Store.open(target)`: an SQLite file's path, or a PostgreSQL URL."""

    def __init__(
        self, db: Database, conn: Connection, thread: ThreadPoolExecutor, clock: Clock
    ) -> None:
        self._db = db
        self._conn = conn
        self._thread = thread
        self._clock = clock
        self._pending: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._open = True
        self._listening: list[Callable[[], None]] = []

    @classmethod
    async def open(cls, target: Path | str, clock: Clock = system_clock) -> Store:
        db = database(target)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="threadpilot-store")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(thread, _open, db)
        except BaseException as exc:
            thread.shutdown(wait=False)
            raise _translated(exc, db) from exc
        return cls(db, conn, thread, clock)

    @property
    def name(self) -> str:
        """The database, in words: its file, or its server (without credentials)."""
        return self._db.name

    @property
    def is_open(self) -> bool:
        return self._open

    async def listen(self, channel: str, heard: Callable[[str], None]) -> None:
        """Call `heard` with each payload any process notifies on `channel` (from now
        until the store closes); on SQLite, there is no other process."""
        loop = asyncio.get_running_loop()

        def relay(payload: str) -> None:  # in the listener's own thread
            loop.call_soon_threadsafe(heard, payload)

        stop = await loop.run_in_executor(None, self._db.listen, channel, relay)
        self._listening.append(stop)

    async def close(self) -> None:
        self._open = False
        for stop in self._listening:
            stop()
        if self._flusher is not None:
            await self._flusher
        await asyncio.get_running_loop().run_in_executor(self._thread, self._db.close, self._conn)
        self._thread.shutdown(wait=False)

    async def run(self, work: Work[T]) -> T:
        """Run `work` in the database thread as one transaction; return its result.

        Its writes are committed (with those of concurrent operations) before this
        returns; if it raises, its writes are rolled back and the error is raised here
        (the engine's as StoreError).
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            await loop.run_in_executor(self._thread, _apply, self._db, self._conn, batch, loop)

    async def schema_version(self) -> int:
        return await self.run(self._db.schema_version)

    # --- threads ---------------------------------------------------------------------

    async def thread(self, key: ThreadKey) -> ThreadRecord | None:
        return await self.run(lambda conn: select_thread(conn, key))

    async def thread_by_id(self, thread_id: int) -> ThreadRecord:
        return await self.run(lambda conn: select_thread_by_id(conn, thread_id))

    async def ensure_thread(self, key: ThreadKey) -> ThreadRecord:
        """The thread's record, created (generation 1, no runtime session yet) if new."""
        now = self._clock()
        return await self.run(lambda conn: upsert_thread(conn, key, now))

    async def mark_active(self, thread_id: int) -> None:
        """The thread's current session now exists in the runtime: resume it from now on."""
        await self.run(
            statement("UPDATE threads SET session_state = 'active' WHERE id = ?", (thread_id,))
        )

    async def set_model(self, thread_id: int, model: str | None) -> None:
        """The model the thread's agent answers with from now on (None: its profile's)."""
        await self.run(statement("UPDATE threads SET model = ? WHERE id = ?", (model, thread_id)))

    async def tell_redaction(self, thread_id: int) -> bool:
        """Note that the thread is told its profile redacts; whether it was not yet (only
        one turn, on one replica, tells it)."""

        def work(conn: Connection) -> bool:
            cursor = conn.execute(
                "UPDATE threads SET redaction_told = 1 WHERE id = ? AND redaction_told = 0",
                (thread_id,),
            )
            return bool(cursor.rowcount)

        return await self.run(work)

    async def touch(
        self, thread_id: int, context_tokens: int, context_limit: int, context_ref: str | None
    ) -> None:
        """A turn finished; `context_ref`, if given, is where the agent now knows the
        thread up to."""
        now = self._clock()
        await self.run(
            statement(
                "UPDATE threads SET last_activity = ?, context_tokens = ?, context_limit = ?, "
                "context_ref = COALESCE(?, context_ref) WHERE id = ?",
                (now, context_tokens, context_limit, context_ref, thread_id),
            )
        )

    async def retire_session(self, thread: ThreadRecord, why: Retirement) -> ThreadRecord:
        """End the thread's current session; the next message starts generation + 1.
        The retired session's runtime state stays on disk until housekeeping."""
        now = self._clock()
        cause, summary, summary_event_id = why.cause, why.summary, why.summary_event_id
        generation = thread.generation + 1
        session_id = thread.key.session_id(generation)

        def work(conn: Connection) -> ThreadRecord:
            conn.execute(
                "UPDATE sessions SET retired_at = ?, retire_cause = ?, summary = ?, "
                "summary_event_id = ? WHERE session_id = ?",
                (now, cause, summary, summary_event_id, thread.session_id),
            )
            conn.execute(
                "INSERT INTO sessions (session_id, thread_id, generation, seed_summary, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (session_id, thread.id, generation, summary, now),
            )
            conn.execute(
                "UPDATE threads SET session_id = ?, generation = ?, session_state = 'new', "
                "context_tokens = 0, context_limit = 0, last_activity = ?, "
                "context_ref = COALESCE(?, context_ref) WHERE id = ?",
                (session_id, generation, now, why.context_ref, thread.id),
            )
            _record(conn, thread.id, thread.session_id, cause, now)
            return select_thread_by_id(conn, thread.id)

        return await self.run(work)

    async def restore_session(
        self, thread: ThreadRecord, causes: tuple[str, ...], since: float
    ) -> ThreadRecord | None:
        """Make the session most recently retired for one of `causes` (after `since`, and
        still in the runtime) current again; the current one is retired as 'restore'.
        None if there is none."""
        now = self._clock()

        def work(conn: Connection) -> ThreadRecord | None:
            marks = ", ".join("?" * len(causes))
            row = conn.execute(
                "SELECT session_id FROM sessions WHERE thread_id = ? AND deleted_at IS NULL "
                f"AND retired_at >= ? AND retire_cause IN ({marks}) "
                "ORDER BY retired_at DESC, generation DESC LIMIT 1",
                (thread.id, since, *causes),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE sessions SET retired_at = ?, retire_cause = 'restore' WHERE session_id = ?",
                (now, thread.session_id),
            )
            conn.execute(
                "UPDATE sessions SET retired_at = NULL, retire_cause = NULL, summary = NULL "
                "WHERE session_id = ?",
                (row[0],),
            )
            conn.execute(
                "UPDATE threads SET session_id = ?, session_state = 'active', context_tokens = 0, "
                "context_limit = 0, last_activity = ? WHERE id = ?",
                (row[0], now, thread.id),
            )
            _record(conn, thread.id, row[0], "restore", now)
            return select_thread_by_id(conn, thread.id)

        return await self.run(work)

    async def create_branch(
        self,
        key: ThreadKey,
        session_id: str,
        parent: ThreadRecord,
        seed_summary: str | None,
        branch_turn_id: int | None,
    ) -> ThreadRecord:
        """Record a thread whose session was forked from `parent`'s (already in the runtime)."""
        now = self._clock()

        def work(conn: Connection) -> ThreadRecord:
            (thread_id,) = conn.execute(
                "INSERT INTO threads (platform, workspace, channel, thread, session_id, "
                "session_state, created_at, last_activity, parent_id, branch_turn_id) "
                "VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?) RETURNING id",
                (*_key_params(key), session_id, now, now, parent.id, branch_turn_id),
            ).fetchone()
            conn.execute(
                "INSERT INTO sessions (session_id, thread_id, generation, seed_summary, "
                "created_at) VALUES (?, ?, 1, ?, ?)",
                (session_id, thread_id, seed_summary, now),
            )
            _record(conn, parent.id, parent.session_id, "branch", now)
            return select_thread_by_id(conn, thread_id)

        return await self.run(work)

    async def session_seed(self, session_id: str) -> str | None:
        """The summary a session's system message carries."""
        row = await self.run(
            lambda conn: conn.execute(
                "SELECT seed_summary FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        )
        return row[0] if row else None

    async def quiet_threads(self, before: float, *, active: bool) -> list[ThreadRecord]:
        """Threads whose last activity was before `before`, oldest first; with `active`,
        only those whose session exists in the runtime (live or evicted)."""
        state = " AND t.session_state = 'active'" if active else ""
        return await self.run(
            lambda conn: [
                _thread(row)
                for row in conn.execute(
                    f"{_SELECT_THREAD} WHERE t.last_activity < ?{state} ORDER BY t.last_activity",
                    (before,),
                ).fetchall()
            ]
        )

    async def expired_sessions(self, retired_before: float) -> list[tuple[ThreadKey, str]]:
        """Retired sessions past the restore period whose runtime state is still there,
        with their threads."""
        rows = await self.run(
            lambda conn: conn.execute(
                "SELECT t.platform, t.workspace, t.channel, t.thread, s.session_id "
                "FROM sessions s JOIN threads t ON t.id = s.thread_id "
                "WHERE s.retired_at < ? AND s.deleted_at IS NULL",
                (retired_before,),
            ).fetchall()
        )
        return [(ThreadKey(row[0], row[1], row[2], row[3]), row[4]) for row in rows]

    async def mark_deleted(self, session_id: str) -> None:
        await self.run(
            statement(
                "UPDATE sessions SET deleted_at = ? WHERE session_id = ?",
                (self._clock(), session_id),
            )
        )

    async def lifecycle_counts(self) -> dict[str, int]:
        """How often each lifecycle action (reset, idle, context, restore, branch) happened."""
        rows = await self.run(
            lambda conn: conn.execute(
                "SELECT action, COUNT(*) FROM lifecycle GROUP BY action ORDER BY action"
            ).fetchall()
        )
        return {row[0]: row[1] for row in rows}

    async def thread_counts(self) -> dict[str, tuple[int, int]]:
        """Per platform: (threads, threads whose session exists in the runtime)."""
        rows = await self.run(
            lambda conn: conn.execute(
                "SELECT platform, COUNT(*), "
                "SUM(CASE WHEN session_state = 'active' THEN 1 ELSE 0 END) "
                "FROM threads GROUP BY platform"
            ).fetchall()
        )
        return {row[0]: (row[1], row[2] or 0) for row in rows}

    async def size_bytes(self) -> int:
        """The database's size in bytes (an SQLite file with its write-ahead log)."""
        return await self.run(self._db.size_bytes)
