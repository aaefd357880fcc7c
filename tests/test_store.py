"""The SQLite store and journal: schema migrations, WAL, crash recovery."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.errors import StoreError
from bot.journal import Journal, TurnOutcome
from bot.migrations import MIGRATIONS
from bot.store import Store, statement
from bot.thread_key import ThreadKey
from tests.conftest import journal_state

KEY = ThreadKey("discord", "111", "222", "333")


async def test_opening_migrates_once_in_wal_mode(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    thread = await store.ensure_thread(KEY)
    await store.close()

    reopened = await Store.open(tmp_path / "db.sqlite")
    try:
        assert await reopened.schema_version() == len(MIGRATIONS)
        mode = await reopened.run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone())
        assert mode[0] == "wal"
        again = await reopened.ensure_thread(KEY)
        assert again == thread and again.session_id == "discord-111-222-333-g1"
    finally:
        await reopened.close()


async def test_a_write_waits_out_another_writer_instead_of_failing(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)  # e.g. a backup
    try:
        other.execute("BEGIN IMMEDIATE")  # holds the write lock
        write = asyncio.create_task(store.ensure_thread(KEY))
        done, _ = await asyncio.wait({write}, timeout=1.0)
        assert not done  # waiting on the busy timeout, not failed with "database is locked"
        other.execute("COMMIT")
        thread = await write
        assert await store.thread(KEY) == thread
    finally:
        other.close()
        await store.close()


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    await store.run(statement(f"PRAGMA user_version = {len(MIGRATIONS) + 1}"))
    await store.close()
    with pytest.raises(StoreError, match="newer than this threadpilot"):
        await Store.open(tmp_path / "db.sqlite")


async def test_unfinished_journal_entries_become_interrupted_at_start(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    journal = Journal(store)
    queued = await journal.claim("discord:1", KEY, "turn")
    running = await journal.claim("discord:2", KEY, "turn")
    finished = await journal.claim("discord:3", KEY, "turn", start=True)
    assert queued and running and finished
    assert await journal.claim("discord:3", KEY, "turn") is None
    assert await journal_state(store, "discord:3") == "running"
    thread = await journal.start(running.turn_id)
    assert thread.key == KEY == finished.thread.key
    await journal.finish(finished.turn_id, TurnOutcome(ok=True, reply_refs=["m1"]))
    await store.close()  # the process dies here

    store = await Store.open(tmp_path / "db.sqlite")
    journal = Journal(store)
    try:
        assert await journal.recover() == [KEY]  # two entries, one thread
        statuses = [await journal_state(store, f"discord:{n}") for n in (1, 2, 3)]
        assert statuses == ["interrupted", "interrupted", "done"]
        refs = await store.run(
            lambda conn: conn.execute(
                "SELECT reply_refs FROM turns WHERE event_id = 'discord:3'"
            ).fetchone()
        )
        assert refs[0] == '["m1"]'
    finally:
        await store.close()
