"""The store and journal on both engines (SQLite and a real PostgreSQL server): schema
migrations, every operation the bot uses, crash recovery; and SQLite's WAL and locking."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.app import App
from bot.approvals import ApprovalRequest, Approvals
from bot.budgets import Budgets, Spender
from bot.clock import system_clock
from bot.database import Connection
from bot.doctor import check_database
from bot.errors import StoreError
from bot.inbound import Decision
from bot.journal import Journal, TurnOutcome
from bot.metrics import Metrics
from bot.migrations import MIGRATIONS
from bot.profiles import Profiles
from bot.replies import ApprovalCard
from bot.runtime_pool import RuntimePool
from bot.store import Retirement, Store, statement
from bot.thread_key import ThreadKey
from tests.conftest import (
    Chat,
    FakeClock,
    RecordingSink,
    journal_state,
    make_settings,
    recording,
)
from tests.fake_model import FakeModel, user_texts
from tests.postgres import new_database

KEY = ThreadKey("discord", "111", "222", "333")


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a fresh database is: an SQLite file, or a new database on the server."""
    if request.param == "sqlite":
        return tmp_path / "db.sqlite"
    return new_database(request.getfixturevalue("postgres"))


async def test_opening_migrates_once(target: Path | str) -> None:
    store = await Store.open(target)
    thread = await store.ensure_thread(KEY)
    await store.close()

    reopened = await Store.open(target)
    try:
        assert await reopened.schema_version() == len(MIGRATIONS)
        again = await reopened.ensure_thread(KEY)
        assert again == thread and again.session_id == "discord-111-222-333-g1"
        assert await reopened.size_bytes() > 0
    finally:
        await reopened.close()


async def test_a_database_from_a_newer_version_is_refused(target: Path | str) -> None:
    store = await Store.open(target)
    newer = len(MIGRATIONS) + 1
    if isinstance(target, Path):
        await store.run(statement(f"PRAGMA user_version = {newer}"))
    else:
        await store.run(statement("UPDATE schema_version SET version = ?", (newer,)))
    await store.close()
    with pytest.raises(StoreError, match="newer than this threadpilot"):
        await Store.open(target)


async def test_a_sessions_life_reads_back_the_same_on_either_engine(target: Path | str) -> None:
    clock = FakeClock()
    store = await Store.open(target, clock)
    journal = Journal(store, clock)
    try:
        thread = await store.ensure_thread(KEY)
        await store.mark_active(thread.id)
        claim = await journal.claim("discord:1", KEY, "turn", "msg-1", start=True)
        assert claim is not None
        await journal.finish(
            claim.turn_id,
            TurnOutcome(ok=True, reply_refs=["reply-1", "reply-2"], session_id=thread.session_id,
                        user_event_id="ev-user", answer_event_id="ev-answer"),
        )  # fmt: skip
        clock.advance(0.125)  # times keep their fractions (8-byte floats on both)
        await store.touch(thread.id, 900, 1000, "ctx-1")
        active = await store.thread(KEY)
        assert active is not None and active.session_state == "active"
        assert (active.context_tokens, active.context_limit, active.context_ref) == (
            900,
            1000,
            "ctx-1",
        )
        assert active.last_activity == clock.now

        # A branch from one of the bot's replies (found in the turn's JSON list of them).
        point = await journal.fork_point(active, "reply-2")
        assert point is not None and point.session_id == thread.session_id
        child_key = ThreadKey("discord", "111", "222", "444")
        child = await store.create_branch(child_key, "child-g1", active, None, point.turn_id)
        assert child.parent_id == thread.id and child.session_state == "active"

        fresh = await store.retire_session(active, Retirement("reset", summary="we said hi"))
        assert fresh.generation == 2 and fresh.summary == "we said hi"
        restored = await store.restore_session(fresh, ("reset",), clock.now - 60)
        assert restored is not None and restored.session_id == thread.session_id
        assert await store.lifecycle_counts() == {"branch": 1, "reset": 1, "restore": 1}
        assert await store.thread_counts() == {"discord": (2, 2)}

        clock.advance(3600)
        quiet = await store.quiet_threads(clock.now - 60, active=True)
        assert {t.key for t in quiet} == {KEY, child_key}
        expired = await store.expired_sessions(clock.now)
        assert expired == [(KEY, fresh.session_id)]
        await store.mark_deleted(fresh.session_id)
        assert await store.expired_sessions(clock.now) == []
        assert await journal.prune(clock.now) == 1
    finally:
        await store.close()


async def test_unfinished_journal_entries_become_interrupted_at_start(
    target: Path | str,
) -> None:
    store = await Store.open(target)
    journal = Journal(store, replica="the last run")
    queued = await journal.claim("discord:1", KEY, "turn")
    running = await journal.claim("discord:2", KEY, "turn")
    finished = await journal.claim("discord:3", KEY, "turn", start=True)
    assert queued and running and finished
    assert await journal.claim("discord:3", KEY, "turn") is None
    assert await journal_state(store, "discord:3") == "running"
    thread = await journal.start(running.turn_id)
    assert thread is not None and thread.key == KEY == finished.thread.key  # type: ignore[union-attr]
    await journal.finish(finished.turn_id, TurnOutcome(ok=True, reply_refs=["m1"]))
    await store.close()  # the process dies here

    store = await Store.open(target)
    journal = Journal(store, replica="this run")
    try:
        assert await journal.recover(float("inf")) == [KEY]  # two entries, one thread
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


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db.sqlite")
    try:
        mode = await store.run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone())
        assert mode[0] == "wal"
    finally:
        await store.close()


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


async def test_the_bot_answers_resets_and_restores_on_postgresql(
    postgres: str, runtimes: RuntimePool, fake_model: FakeModel, tmp_path: Path
) -> None:
    url = new_database(postgres)
    settings = make_settings(
        tmp_path, fake_model.base_url, database_url=url, admins=frozenset({"slack:UADMIN"})
    )
    chat = Chat(App(settings, runtimes, await Store.open(settings.database), platforms=recording))
    try:
        await chat.say("pg", "remember the word quince")
        assert (await chat.say("pg", "/reset")).text.startswith("Started afresh")
        await chat.say("pg", "/restore")
        sink = await chat.say("pg", "which word?")
        assert sink.text == "echo: which word?"
        history = user_texts(fake_model.requests_with("which word?")[-1])
        assert history == ["remember the word quince", "which word?"]
        assert await chat.app.store.lifecycle_counts() == {"reset": 1, "restore": 1}
        status = (await chat.say("pg", "/status", user="UADMIN")).text
        assert "today's top spenders: slack:U1 2 turns" in status
    finally:
        await chat.app.sessions.close()
        await chat.app.store.close()


async def test_doctor_checks_the_database(postgres: str, tmp_path: Path) -> None:
    url = new_database(postgres)
    await (await Store.open(url)).close()

    found = await check_database(make_settings(tmp_path, "http://unused", database_url=url))
    assert [f.ok for f in found] == [True, True, True]
    assert f"schema version {len(MIGRATIONS)} of {len(MIGRATIONS)}" in found[1].text
    assert "clock is" in found[2].text

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        nowhere = f"postgresql://postgres@127.0.0.1:{closed.getsockname()[1]}/nothing"
        (unreachable,) = await check_database(
            make_settings(tmp_path, "http://unused", database_url=nowhere)
        )
    assert not unreachable.ok and "is not reachable" in unreachable.text


def test_a_database_url_must_be_postgresql(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be a postgresql:// URL"):
        make_settings(tmp_path, "http://unused", database_url="mysql://db/threadpilot")
    assert make_settings(tmp_path, "http://unused").database == tmp_path / "threadpilot.db"


async def test_an_operation_that_fails_takes_none_committed_with_it(target: Path | str) -> None:
    store = await Store.open(target)
    try:

        def half_done(conn: Connection) -> None:
            conn.execute("INSERT INTO lifecycle (thread_id, session_id, action, at) "
                         "VALUES (?, 'x', 'never', 0)", (thread.id,))  # fmt: skip
            raise ValueError("changed its mind")

        thread = await store.ensure_thread(KEY)
        # Issued together, so they share one transaction (group commit).
        failed, other = await asyncio.gather(
            store.run(half_done),
            store.ensure_thread(ThreadKey("discord", "111", "222", "555")),
            return_exceptions=True,
        )
        assert isinstance(failed, ValueError) and not isinstance(other, BaseException)
        assert await store.thread(other.key) == other
        assert await store.lifecycle_counts() == {}  # its own write rolled back
    finally:
        await store.close()


async def test_budgets_count_refuse_and_rank_spenders_on_either_engine(
    target: Path | str, tmp_path: Path
) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("default:\n  budgets:\n    per_user: {turns: 2}\n")
    settings = make_settings(tmp_path, "http://127.0.0.1:9/v1", profiles=profiles)
    clock = FakeClock()
    store = await Store.open(target, clock)
    budgets = Budgets(store, clock, Profiles(settings), Metrics(clock))
    try:
        await budgets.spend(KEY, "discord:U1", 10)
        await budgets.spend(KEY, "discord:U2", 50)
        await budgets.spend(KEY, "discord:U1", 20)
        refusal = await budgets.refusal(KEY, "discord:U1")
        assert refusal is not None and refusal.startswith("You have used your 2 turns")
        assert await budgets.refusal(KEY, "discord:U2") is None
        assert await budgets.top_spenders() == [
            Spender("discord:U2", 1, 50), Spender("discord:U1", 2, 30)
        ]  # fmt: skip
        clock.advance(86400)  # a new day
        assert await budgets.refusal(KEY, "discord:U1") is None
        assert await budgets.top_spenders() == []
    finally:
        await store.close()


async def test_an_approval_decided_on_one_replica_reaches_the_agent_waiting_on_another(
    target: Path | str, tmp_path: Path
) -> None:
    """Two replicas' approvals on one database: a press taken by either decides; a card
    of a replica that is gone is expired by another, and its agent told."""
    settings = make_settings(tmp_path, "http://127.0.0.1:9/v1")
    profile = Profiles(settings).resolve(KEY)
    request = ApprovalRequest("bash", "running commands", "run a command", "make test")
    stores = [await Store.open(target), await Store.open(target)]
    sinks = [RecordingSink(), RecordingSink()]
    asking, deciding = (
        Approvals(store, system_clock, name, Profiles(settings), lambda _key, s=sink: s)
        for store, sink, name in zip(stores, sinks, ("replica-a", "replica-b"), strict=True)
    )
    try:
        thread = await stores[0].ensure_thread(KEY)
        asked = asyncio.create_task(asking.ask(KEY, thread.id, "discord:U1", profile, request))
        card = await _card(sinks[0])
        press = Decision(card.approval_id, "discord", "U1", "thread")
        assert (await deciding.decide(press)).card.outcome is not None  # type: ignore[union-attr]
        async with asyncio.timeout(10):
            assert await asked is None  # approved
        # For the thread: asked again, approved without a card.
        sinks[0].cards.clear()
        assert await asking.ask(KEY, thread.id, "discord:U1", profile, request) is None
        assert sinks[0].cards == {}

        other = ApprovalRequest("edit", "writing files", "write to `a.txt`", "diff")
        asked = asyncio.create_task(asking.ask(KEY, thread.id, "discord:U1", profile, other))
        card = await _card(sinks[0])
        assert await deciding.expire_left() == 1  # replica-a is in no `replicas` row
        async with asyncio.timeout(10):
            assert await asked == "Nobody approved this in time, so it was not done."
        (shown,) = sinks[1].cards.values()
        assert shown.approval_id == card.approval_id and shown.outcome is not None
        assert (await deciding.decide(press)).private == "This request was decided already."
    finally:
        for store in stores:
            await store.close()


async def _card(sink: RecordingSink) -> ApprovalCard:
    """The first card posted to `sink` once there is one."""
    async with asyncio.timeout(10):
        while not sink.cards:
            sink.card_shown.clear()
            await sink.card_shown.wait()
    return next(iter(sink.cards.values()))
