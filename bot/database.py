"""Database: the two engines the store runs on, behind one small connection interface.

SQLite (a file under THREADPILOT_DATA_DIR) is the embedded default for one machine;
PostgreSQL (THREADPILOT_DATABASE_URL) is for replicas. The store's SQL is written once,
with `?` placeholders, in what both engines understand; what differs lives here: how to
connect, placeholders, column types in the migrations, where the schema version is kept,
how a write transaction begins, JSON arrays, and which errors are the engine's.

PostgreSQL is reached with psycopg 3: its synchronous connection has the same shape as
sqlite3's, so the store's one database thread and its operations serve both engines.
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus

log = logging.getLogger(__name__)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the store's operations use: rows are read by column name or position."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def json_values(self, column: str) -> str:
        """An SQL expression for the texts of the JSON array in `column`, to use as
        `? IN (...)`."""
        ...

    def share_lock(self) -> str:
        """What to end a SELECT with so that its rows stay as read until the transaction
        ends (SQLite's write transactions exclude each other already)."""
        ...

    def notify(self, channel: str, payload: str) -> None:
        """Tell the other processes listening on `channel`, when the transaction commits
        (PostgreSQL; on SQLite there are none)."""
        ...


class Database(Protocol):
    name: str  # what to call it in messages: a file path, or the server
    errors: tuple[type[Exception], ...]  # the engine's own; the store translates them

    def connect(self) -> Connection: ...

    def schema_version(self, conn: Connection) -> int: ...

    def migrate(self, conn: Connection, number: int, script: str) -> None:
        """Apply migration `number` and record it, in one transaction."""
        ...

    def begin(self, conn: Connection) -> None: ...

    def in_transaction(self, conn: Connection) -> bool: ...

    def close(self, conn: Connection) -> None: ...

    def size_bytes(self, conn: Connection) -> int: ...

    def listen(self, channel: str, heard: Callable[[str], None]) -> Callable[[], None]:
        """Call `heard` (in a thread of its own) with each payload notified on `channel`
        by any process; returns what stops listening."""
        ...


class _SqliteConnection:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self.raw.execute(sql, params)

    def json_values(self, column: str) -> str:
        return f"SELECT value FROM json_each({column})"

    def share_lock(self) -> str:
        return ""

    def notify(self, channel: str, payload: str) -> None:
        pass


class SqliteDatabase:
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    def connect(self) -> Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: the store begins and commits transactions itself.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        return _SqliteConnection(conn)

    def schema_version(self, conn: Connection) -> int:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        return int(version)

    def migrate(self, conn: Connection, number: int, script: str) -> None:
        raw = _sqlite(conn)
        raw.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")

    def begin(self, conn: Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def in_transaction(self, conn: Connection) -> bool:
        return _sqlite(conn).in_transaction

    def close(self, conn: Connection) -> None:
        _sqlite(conn).close()

    def size_bytes(self, conn: Connection) -> int:
        files = [self.path, *(Path(f"{self.path}{tail}") for tail in ("-wal", "-shm"))]
        return sum(f.stat().st_size for f in files if f.exists())

    def listen(self, channel: str, heard: Callable[[str], None]) -> Callable[[], None]:
        return lambda: None  # one process: nobody else to hear from


def _sqlite(conn: Connection) -> sqlite3.Connection:
    assert isinstance(conn, _SqliteConnection)
    return conn.raw


class _Row(tuple[Any, ...]):
    """A row readable by position and by column name, as sqlite3.Row is."""

    names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self.names[key])
        return super().__getitem__(key)


def _rows(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    return _row_type(tuple(column.name for column in cursor.description or ()))


@functools.cache  # a class per statement shape, not per execution
def _row_type(names: tuple[str, ...]) -> type[_Row]:
    return type("Row", (_Row,), {"names": {name: i for i, name in enumerate(names)}})


class _PostgresConnection:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        # The store's SQL uses no `?` but as a placeholder; a `%` of its own (LIKE
        # 'user:%') is doubled, else psycopg takes it for the start of a placeholder.
        return self.raw.execute(sql.replace("%", "%%").replace("?", "%s"), params)

    def json_values(self, column: str) -> str:
        return f"SELECT jsonb_array_elements_text({column}::jsonb)"

    def share_lock(self) -> str:
        return " FOR SHARE"

    def notify(self, channel: str, payload: str) -> None:
        self.raw.execute("SELECT pg_notify(%s, %s)", (channel, payload))


# The migrations are written for SQLite; these make them PostgreSQL's.
_PG_TYPES = (
    (
        re.compile(r"\bINTEGER PRIMARY KEY\b"),
        "INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    ),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),  # REAL is 4 bytes there: times need 8
)
# Replicas may start at once: one migrates, the others wait for it.
_MIGRATION_LOCK = 7_245_317
_LISTEN_CHECK_S = 1.0  # how often a listener looks whether it is to stop


class PostgresDatabase:
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = re.sub(r"//[^@/]*@", "//", url)  # without credentials

    def connect(self) -> Connection:
        conn = psycopg.connect(self.url, autocommit=True, row_factory=_rows)
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);"
            "INSERT INTO schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version)"
        )
        return _PostgresConnection(conn)

    def schema_version(self, conn: Connection) -> int:
        (version,) = conn.execute("SELECT version FROM schema_version").fetchone()
        return int(version)

    def migrate(self, conn: Connection, number: int, script: str) -> None:
        raw = _postgres(conn)
        for pattern, replacement in _PG_TYPES:
            script = pattern.sub(replacement, script)
        with raw.transaction():
            raw.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            (current,) = raw.execute("SELECT version FROM schema_version").fetchone()  # type: ignore[misc]
            if current >= number:  # another replica got there first
                return
            raw.execute(script.encode())
            raw.execute("UPDATE schema_version SET version = %s", (number,))

    def begin(self, conn: Connection) -> None:
        conn.execute("BEGIN")

    def in_transaction(self, conn: Connection) -> bool:
        return _postgres(conn).info.transaction_status != TransactionStatus.IDLE

    def close(self, conn: Connection) -> None:
        _postgres(conn).close()

    def size_bytes(self, conn: Connection) -> int:
        (size,) = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(size)

    def listen(self, channel: str, heard: Callable[[str], None]) -> Callable[[], None]:
        stopping = threading.Event()
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute(f'LISTEN "{channel}"')

        def run() -> None:
            try:
                while not stopping.is_set():
                    for notice in conn.notifies(timeout=_LISTEN_CHECK_S):
                        heard(notice.payload)
            except psycopg.Error as exc:  # the server went away: waiters poll meanwhile
                if not stopping.is_set():
                    log.warning("listening on %s stopped: %s", channel, exc)
            finally:
                conn.close()

        threading.Thread(target=run, name=f"listen-{channel}", daemon=True).start()
        return stopping.set

    def clock(self, conn: Connection) -> float:
        """The server's time, as a Unix timestamp."""
        (now,) = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        return float(now)


def _postgres(conn: Connection) -> psycopg.Connection[Any]:
    assert isinstance(conn, _PostgresConnection)
    return conn.raw


def database(target: Path | str) -> Database:
    """The database at `target`: a PostgreSQL URL, or an SQLite file."""
    if isinstance(target, str) and target.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(target)
    return SqliteDatabase(Path(target))
