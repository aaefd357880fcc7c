"""Faults a production bot meets: killed mid-turn, its runtime dying, SIGTERM, a full disk,
the model dropping a stream. Each against the real runtime and the fakes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import uuid
from pathlib import Path

from bot.router import STORE_FAILING
from bot.store import statement
from bot.turns import RUNTIME_STOPPED_MESSAGE
from tests.conftest import AppFactory, Chat, make_settings, reap, start_bot, stop_bot
from tests.fake_model import FakeModel, Reply, user_texts
from tests.fake_slack import FakeSlack

LONG_LEASES = {"THREADPILOT_LEASE_TTL_S": "300"}


def slack_env(fake_slack: FakeSlack, tmp_path: Path, **more: str) -> dict[str, str]:
    return {**fake_slack.env, "THREADPILOT_DATA_DIR": str(tmp_path / "data"), **more}


async def connected(fake_slack: FakeSlack, process_start: int) -> None:
    await fake_slack.wait_for(lambda: fake_slack.connections > process_start)


def journal_state_on_disk(tmp_path: Path, event_id: str) -> str:
    with sqlite3.connect(tmp_path / "data" / "threadpilot.db") as db:
        row = db.execute(
            "SELECT state FROM turns WHERE event_id = ?", (f"slack:{event_id}",)
        ).fetchone()
    return str(row[0])


async def test_killed_mid_turn_the_thread_is_told_after_the_restart_and_never_answered_twice(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    gate = fake_model.hold("killed while answering")
    before = fake_slack.connections
    first = await start_bot(
        tmp_path, fake_model, cli_path, **slack_env(fake_slack, tmp_path, **LONG_LEASES)
    )
    try:
        await connected(fake_slack, before)
        ts, events = fake_slack.user_message(channel, "<@UBOT> killed while answering")
        for event in events:
            await fake_slack.push("events_api", event)
        await fake_model.wait_for_request("killed while answering")
    finally:
        first.kill()  # SIGKILL: no chance to clean up
        await first.wait()
        gate.set()

    before = fake_slack.connections
    second = await start_bot(
        tmp_path, fake_model, cli_path, **slack_env(fake_slack, tmp_path, **LONG_LEASES)
    )
    try:
        await connected(fake_slack, before)
        notice = await fake_slack.wait_for(lambda: fake_slack.replies(channel, ts))
        assert notice[0].text.startswith("ℹ️ I was restarted while answering")
        assert journal_state_on_disk(tmp_path, events[-1]["event_id"]) == "interrupted"

        # Slack redelivers the mention: it is not answered a second time.
        await fake_slack.push("events_api", events[-1], retry_attempt=1)
        dm = "D" + channel[1:]
        ping_ts, ping = fake_slack.user_message(dm, "ping after the restart")
        await fake_slack.push("events_api", ping[0])
        await fake_slack.wait_for(lambda: fake_slack.replies(dm, ping_ts))
        assert len(fake_slack.replies(channel, ts)) == 1
        assert len(fake_model.requests_with("killed while answering")) == 1

        # The thread is answered again at once: the lease the killed run held is free
        # (with leases of 300 s, waiting for it to lapse would time this out).
        _, again = fake_slack.user_message(channel, "<@UBOT> and now?", thread_ts=ts)
        for event in again:
            await fake_slack.push("events_api", event)
        await fake_slack.wait_for(
            lambda: "echo: and now?" in [m.text for m in fake_slack.replies(channel, ts)]
        )
    finally:
        await stop_bot(second)


async def test_when_the_cli_dies_mid_turn_the_thread_is_told_and_it_comes_back(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    settings = make_settings(tmp_path, fake_model.base_url)
    chat = await Chat.on_own_runtimes(settings, cli_path, tmp_path / "db.sqlite")
    (runtime,) = chat.app.runtimes.runtimes()
    try:
        await chat.say("crash", "before the crash: remember 99")
        gate = fake_model.hold("during the crash")
        turn = asyncio.create_task(chat.say("crash", "during the crash"))
        await fake_model.wait_for_request("during the crash")
        old_pid = runtime.load().pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)

        sink = await asyncio.wait_for(turn, 30)  # told at once, not at the turn timeout
        gate.set()
        assert sink.errors == [RUNTIME_STOPPED_MESSAGE]
        assert chat.app.metrics.recent_errors[-1].where == "turn"

        # Asked while the CLI restarts: it waits for the runtime, and is answered.
        assert not runtime.up
        after = await chat.say("crash", "after the crash: what number?")
        assert after.text == "echo: after the crash: what number?" and after.errors == []
        assert runtime.load().pid != old_pid
        request = fake_model.requests_with("after the crash")[-1]
        assert user_texts(request)[0] == "before the crash: remember 99"  # resumed from disk
    finally:
        await chat.app.close()


async def test_sigterm_finishes_what_it_can_stops_the_rest_and_exits_cleanly(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    quick, slow = asyncio.Event(), asyncio.Event()
    fake_model.script("finishes in the grace period", Reply(gate=quick))
    fake_model.script("outlasts the grace period", Reply(gate=slow))
    before = fake_slack.connections
    assert fake_slack.open_connections == 0
    env = slack_env(fake_slack, tmp_path, THREADPILOT_SHUTDOWN_GRACE_S="3")
    process = await start_bot(tmp_path, fake_model, cli_path, **env)
    threads = {}
    try:
        await connected(fake_slack, before)
        for text in ("finishes in the grace period", "outlasts the grace period"):
            ts, events = fake_slack.user_message(channel, f"<@UBOT> {text}")
            threads[text] = (ts, events[-1]["event_id"])
            for event in events:
                await fake_slack.push("events_api", event)
            await fake_model.wait_for_request(text)

        process.send_signal(signal.SIGTERM)
        # It takes no new message while it drains: its Socket Mode connection closes at
        # once, so Slack delivers what comes next to another replica, or again later.
        await fake_slack.wait_for(lambda: fake_slack.open_connections == 0)
        quick.set()
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        slow.set()
        log = await reap(process)
    assert "Traceback" not in log

    done_ts, done_event = threads["finishes in the grace period"]
    assert [m.text for m in fake_slack.replies(channel, done_ts)] == [
        "echo: finishes in the grace period"
    ]
    stopped_ts, stopped_event = threads["outlasts the grace period"]
    assert fake_slack.replies(channel, stopped_ts)[-1].text.startswith(
        "ℹ️ I had to stop before finishing this answer"
    )
    assert journal_state_on_disk(tmp_path, done_event) == "done"
    assert journal_state_on_disk(tmp_path, stopped_event) == "interrupted"


async def test_a_full_disk_is_reported_in_the_thread_and_nothing_is_corrupted(
    make_chat: AppFactory, fake_model: FakeModel
) -> None:
    chat = await make_chat()
    kept = await chat.say("kept", "remember the number 42")
    assert kept.text == "echo: remember the number 42"
    store = chat.app.store
    # What a full disk does to SQLite: the database may not grow past its present pages.
    (pages,) = await store.run(lambda conn: conn.execute("PRAGMA page_count").fetchone())
    await store.run(statement(f"PRAGMA max_page_count = {pages}"))

    refused = None
    for n in range(200):  # new threads fill the free pages until a write is refused
        sink = await chat.say(f"new-{n}", "/help")
        if sink.errors:
            refused = sink
            break
    assert refused is not None, "the database never filled up"
    assert refused.errors == [STORE_FAILING]
    later = await chat.say("kept", "said while the disk is full")
    assert later.errors == [STORE_FAILING]
    assert fake_model.requests_with("said while the disk is full") == []  # stopped first

    with sqlite3.connect(store.name) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    await store.run(statement("PRAGMA max_page_count = 1000000"))  # space freed
    after = await chat.say("kept", "what number did I mention?")
    assert after.errors == [] and after.text == "echo: what number did I mention?"
    request = fake_model.requests_with("what number did I mention?")[-1]
    assert user_texts(request) == ["remember the number 42", "what number did I mention?"]
