"""Session lifecycle on the real runtime: summarize+reset before the idle timeout and before
compaction, reset, restore, branch, housekeeping. The clock is advanced, never slept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App
from bot.replies import ErrorReply, FinalText
from bot.runtime import CopilotRuntime
from bot.runtime_pool import RuntimePool
from bot.store import Store
from bot.summary_reset import SUMMARY_PROMPT
from tests.conftest import AppFactory, Chat, FakeClock, make_settings, recording
from tests.fake_model import FakeModel, Reply, start_context, user_texts
from tests.postgres import new_database

IDLE_TIMEOUT, MARGIN = 1800, 120


def script_summary(fake_model: FakeModel, text: str) -> None:
    fake_model.script(SUMMARY_PROMPT[:40], Reply(text=text))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def chat(make_chat: AppFactory, clock: FakeClock) -> Chat:
    return await make_chat(clock=clock)


async def test_an_idle_session_is_summarized_and_reset_before_the_timeout(
    chat: Chat, clock: FakeClock, fake_model: FakeModel, runtime: CopilotRuntime
) -> None:
    await chat.say("idle", "my favourite colour is teal")
    await chat.say("idle", "and I live in Lisbon")
    before = await chat.thread("idle")
    script_summary(fake_model, "SUMMARY: likes teal, lives in Lisbon")

    clock.advance(IDLE_TIMEOUT - MARGIN - 1)
    assert await chat.app.scheduler.idle_sweep() == "0 of 0 idle sessions summarized and reset"
    clock.advance(2)
    assert await chat.app.scheduler.idle_sweep() == "1 of 1 idle sessions summarized and reset"

    after = await chat.thread("idle")
    assert after.generation == before.generation + 1 and after.session_state == "new"
    assert after.summary == "SUMMARY: likes teal, lives in Lisbon"
    assert not chat.app.sessions.is_live(after) and not chat.app.sessions.is_live(before)
    # The summary request went to the model but nothing of it to the thread: only a note.
    summary_request = fake_model.requests_with(SUMMARY_PROMPT[:40])[-1]
    assert user_texts(summary_request)[:2] == [
        "my favourite colour is teal",
        "and I live in Lisbon",
    ]
    notes = chat.platform.posted[chat.key("idle")]
    assert len(notes.events) == 1 and notes.notices[0].startswith("I summarized our conversation")
    assert "restore" in notes.notices[0]

    reply = await chat.say("idle", "where do I live?")
    assert reply.text == "echo: where do I live?"
    request = fake_model.requests_with("where do I live?")[-1]
    assert user_texts(request) == ["where do I live?"]  # none of the old turns
    assert "SUMMARY: likes teal, lives in Lisbon" in start_context(request)
    assert (await chat.app.store.lifecycle_counts()) == {"idle": 1}
    # The retired session is still in the runtime's state, for `restore`.
    assert (runtime.home / "session-state" / before.session_id / "events.jsonl").exists()


async def test_the_scheduler_runs_the_idle_sweep_by_itself(
    make_chat: AppFactory, clock: FakeClock, fake_model: FakeModel
) -> None:
    chat = await make_chat(clock=clock, reset_margin_s=2)  # sweeps every second
    await chat.say("scheduled", "hello scheduler")
    script_summary(fake_model, "SUMMARY: greeted the scheduler")
    clock.advance(IDLE_TIMEOUT)

    chat.app.scheduler.start()
    note = chat.platform.sink(chat.key("scheduled"))
    await asyncio.wait_for(note.done.wait(), 30)

    assert note.notices[0].startswith("I summarized our conversation")
    assert (await chat.thread("scheduled")).generation == 2
    sweep = next(job for job in chat.app.scheduler.jobs() if job.name == "idle sweep")
    assert sweep.last_run == clock.now and sweep.next_run is not None


async def test_a_thread_in_the_middle_of_a_turn_is_not_reset_by_the_sweep(
    chat: Chat, clock: FakeClock, fake_model: FakeModel
) -> None:
    await chat.say("busy", "first")
    gate = fake_model.hold("slow second")
    turn = asyncio.create_task(chat.say("busy", "slow second"))
    await fake_model.wait_for_request("slow second")

    clock.advance(IDLE_TIMEOUT)
    assert await chat.app.scheduler.idle_sweep() == "0 of 1 idle sessions summarized and reset"
    gate.set()
    assert (await turn).text == "echo: slow second"
    assert (await chat.thread("busy")).generation == 1


async def test_without_a_summary_nothing_is_reset_and_nothing_lost(
    chat: Chat, clock: FakeClock, fake_model: FakeModel
) -> None:
    await chat.say("no-summary", "the password hint is 'blue'")
    fake_model.script(SUMMARY_PROMPT[:40], Reply(status=400))

    clock.advance(IDLE_TIMEOUT)
    assert await chat.app.scheduler.idle_sweep() == "0 of 1 idle sessions summarized and reset"

    assert (await chat.thread("no-summary")).generation == 1
    assert chat.app.metrics.recent_errors[-1].where == "summary reset"
    await chat.say("no-summary", "what was the hint?")
    texts = user_texts(fake_model.requests_with("what was the hint?")[-1])
    assert texts[0] == "the password hint is 'blue'" and texts[-1] == "what was the hint?"


async def test_summary_reset_notes_can_be_turned_off(
    make_chat: AppFactory, clock: FakeClock, fake_model: FakeModel
) -> None:
    chat = await make_chat(clock=clock, summary_reset_notes=False)
    await chat.say("quiet", "hello")
    script_summary(fake_model, "SUMMARY: said hello")
    clock.advance(IDLE_TIMEOUT)
    assert await chat.app.scheduler.idle_sweep() == "1 of 1 idle sessions summarized and reset"
    assert chat.platform.posted == {}


@pytest.fixture
async def small_window(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> AsyncIterator[Chat]:
    """A runtime whose model has a 1,000-token window, to fill it quickly."""
    settings = make_settings(tmp_path, fake_model.base_url, provider_max_prompt_tokens=1000)
    chat = await Chat.on_own_runtimes(settings, cli_path, tmp_path / "db.sqlite")
    yield chat
    await chat.app.close()


async def test_filling_the_context_resets_at_the_end_of_the_turn(
    small_window: Chat, fake_model: FakeModel
) -> None:
    chat = small_window
    script_summary(fake_model, "SUMMARY: a long message about longness")
    reply = await chat.say("full", "long " * 720)  # ~780 of 1000 tokens: past 0.75

    assert reply.text.startswith("echo: long long")  # the turn itself was answered
    after = await chat.thread("full")
    assert after.generation == 2 and after.summary == "SUMMARY: a long message about longness"
    assert (
        chat.platform.posted[chat.key("full")]
        .notices[0]
        .startswith("I summarized our conversation")
    )
    await chat.say("full", "short follow-up")
    request = fake_model.requests_with("short follow-up")[-1]
    assert user_texts(request) == ["short follow-up"]
    assert "a long message about longness" in start_context(request)
    assert chat.app.metrics.compactions_total() == 0  # we came first
    assert await chat.app.store.lifecycle_counts() == {"context": 1}


async def test_a_compaction_by_the_runtime_is_recorded_and_the_turn_goes_on(
    small_window: Chat, fake_model: FakeModel
) -> None:
    chat = small_window
    counter = chat.app.metrics.compactions
    counted, count = asyncio.Event(), counter.inc

    def counting(amount: float = 1) -> None:
        count(amount)
        counted.set()

    counter.inc = counting  # type: ignore[method-assign]
    await chat.say("jump", "long " * 500)  # ~560 tokens: below our 750
    assert (await chat.thread("jump")).generation == 1
    # One message takes the prompt past the runtime's own threshold (875) at once.
    reply = await chat.say("jump", "long " * 400)

    assert reply.text.startswith("echo: long") and reply.errors == []
    # The runtime compacts in the background: it may finish after the answer.
    await asyncio.wait_for(counted.wait(), 30)
    compactions = chat.app.metrics.compactions_total()
    assert compactions >= 1  # the runtime may compact more than once for one turn
    exposition = chat.app.metrics.exposition().decode()
    assert f"threadpilot_compactions_total {compactions}.0" in exposition


async def test_reset_forgets_and_restore_brings_it_back(chat: Chat, fake_model: FakeModel) -> None:
    await chat.say("undo", "old topic: volcanoes")
    before = await chat.thread("undo")

    reply = await chat.say("undo", "reset", command="reset")
    assert "Started afresh" in reply.text
    await chat.say("undo", "new topic: rivers")
    assert user_texts(fake_model.requests_with("new topic: rivers")[-1]) == ["new topic: rivers"]
    after = await chat.thread("undo")
    assert after.generation == 2 and after.session_id == before.key.session_id(2)

    reply = await chat.say("undo", "/restore")
    assert "Restored" in reply.text
    await chat.say("undo", "back to volcanoes")
    request = fake_model.requests_with("back to volcanoes")[-1]
    assert user_texts(request) == ["old topic: volcanoes", "back to volcanoes"]
    restored = await chat.thread("undo")
    assert restored.session_id == before.session_id and restored.generation == 2
    assert await chat.app.store.lifecycle_counts() == {"reset": 1, "restore": 1}

    # A reset after the restore still gets a fresh id, never one already used.
    await chat.say("undo", "/reset")
    assert (await chat.thread("undo")).session_id == before.key.session_id(3)


async def test_restore_after_a_summary_reset_brings_back_the_full_conversation(
    chat: Chat, clock: FakeClock, fake_model: FakeModel
) -> None:
    await chat.say("full-again", "detail one")
    await chat.say("full-again", "detail two")
    script_summary(fake_model, "SUMMARY: two details")
    clock.advance(IDLE_TIMEOUT)
    await chat.app.scheduler.idle_sweep()

    await chat.say("full-again", "/restore")
    await chat.say("full-again", "all details?")
    request = fake_model.requests_with("all details?")[-1]
    assert user_texts(request)[:2] == ["detail one", "detail two"]
    assert "SUMMARY: two details" not in start_context(request)


async def test_restore_with_nothing_to_restore_says_so(chat: Chat) -> None:
    await chat.say("nothing", "hello")
    reply = await chat.say("nothing", "/restore")
    assert len(reply.errors) == 1 and "no earlier conversation" in reply.errors[0]


async def test_housekeeping_deletes_expired_sessions_and_prunes_the_journal(
    make_chat: AppFactory, clock: FakeClock
) -> None:
    chat = await make_chat(clock=clock, restore_period_s=3600, journal_retention_s=7200)
    first = await chat.say("tidy", "to be forgotten")
    retired = (await chat.thread("tidy")).session_id
    await chat.say("tidy", "/reset")
    state = chat.app.runtimes.home(chat.key("tidy")) / "session-state" / retired
    assert state.exists()

    clock.advance(3601)
    result = await chat.app.scheduler.housekeeping()
    assert result.startswith("1 retired sessions deleted, 0 journal entries pruned")
    assert not state.exists()
    assert "no earlier conversation" in (await chat.say("tidy", "/restore")).errors[0]

    workspace = chat.app.runtimes.workspace(chat.key("tidy"))
    (workspace / "notes.txt").write_text("the agent's scratch")
    clock.advance(7200)
    # Received before the cut-off: the first message and the reset (not the restore); and
    # the thread, quiet since, loses its working directory.
    result = await chat.app.scheduler.housekeeping()
    assert result.endswith("2 journal entries pruned, 1 working directories removed")
    assert await chat.journal_state(first) is None and not workspace.exists()
    # The thread itself and its current session are untouched.
    assert (await chat.say("tidy", "still here?")).text == "echo: still here?"


async def test_branch_copies_the_conversation_and_both_threads_diverge(
    chat: Chat, fake_model: FakeModel
) -> None:
    await chat.say("trunk", "shared beginning")
    reply = await chat.say("trunk", "/branch")
    assert "Branched into <thread" in reply.text
    child_key = reply.opened[0].key

    await chat.say(child_key, "only in the branch")
    await chat.say("trunk", "only in the trunk")

    child = fake_model.requests_with("only in the branch")[-1]
    assert user_texts(child) == ["shared beginning", "only in the branch"]
    trunk = fake_model.requests_with("only in the trunk")[-1]
    assert user_texts(trunk) == ["shared beginning", "only in the trunk"]
    child_thread = await chat.app.store.thread(child_key)
    trunk_thread = await chat.thread("trunk")
    assert child_thread is not None and child_thread.parent_id == trunk_thread.id


async def test_a_branch_at_an_earlier_message_leaves_out_the_later_turns(
    chat: Chat, fake_model: FakeModel
) -> None:
    first = await chat.say("story", "chapter one")
    second = await chat.say("story", "chapter two")
    await chat.say("story", "chapter three")

    # "Branch from here" on the user's first message, then on the bot's second answer.
    at_first = await chat.say("story", "", command="branch", target_ref=f"msg-{first.event_id}")
    at_second = await chat.say("story", "", command="branch", target_ref=second.refs[0])
    await chat.say(at_first.opened[0].key, "alternative to two")
    await chat.say(at_second.opened[0].key, "alternative to three")

    assert user_texts(fake_model.requests_with("alternative to two")[-1]) == [
        "chapter one",
        "alternative to two",
    ]
    assert user_texts(fake_model.requests_with("alternative to three")[-1]) == [
        "chapter one",
        "chapter two",
        "alternative to three",
    ]
    # The trunk is untouched by either.
    await chat.say("story", "chapter four")
    assert len(user_texts(fake_model.requests_with("chapter four")[-1])) == 4


async def test_a_branch_from_before_a_summary_reset_forks_the_retired_session(
    chat: Chat, clock: FakeClock, fake_model: FakeModel
) -> None:
    await chat.say("old-branch", "fact A")
    last_before = await chat.say("old-branch", "fact B")
    script_summary(fake_model, "SUMMARY: facts A and B")
    clock.advance(IDLE_TIMEOUT)
    await chat.app.scheduler.idle_sweep()
    await chat.say("old-branch", "fact C, after the summary reset")

    # The retired session's last turn: the summary request that came after it stays out.
    reply = await chat.say("old-branch", "", command="branch", target_ref=last_before.refs[0])
    await chat.say(reply.opened[0].key, "what came after A?")

    request = fake_model.requests_with("what came after A?")[-1]
    assert user_texts(request) == ["fact A", "fact B", "what came after A?"]
    assert "SUMMARY" not in start_context(request)


async def test_branching_from_an_unknown_message_or_an_empty_thread_is_refused(
    chat: Chat,
) -> None:
    empty = await chat.say("empty-branch", "/branch")
    assert "nothing to branch here" in empty.text and empty.opened == []
    assert await chat.app.store.thread(chat.key("empty-branch")) is None  # not joined either

    await chat.say("some-branch", "hello")
    unknown = await chat.say("some-branch", "", command="branch", target_ref="not-a-message")
    assert "can't branch from that message" in unknown.errors[0] and unknown.opened == []


async def test_status_is_for_admins_and_shows_the_fleet(
    make_chat: AppFactory, fake_model: FakeModel
) -> None:
    chat = await make_chat(admins=frozenset({"slack:UADMIN"}))
    await chat.say("fleet", "hello fleet")
    await chat.say("fleet", "/reset")
    chat.app.metrics.error("turn", "something broke")
    chat.app.scheduler.start()

    refused = await chat.say("fleet", "/status", user="U1")
    answer = refused.events[0]
    assert isinstance(answer, FinalText) and answer.private and "admins only" in answer.text

    reply = await chat.say("fleet", "status", command="status", user="UADMIN")
    status = reply.events[0]
    assert isinstance(status, FinalText) and status.private
    text = status.text
    for expected in (
        "runtimes: Copilot CLI 1.0.102 (protocol 3), 1 shared",
        "  0: up, pid ",
        ", 0 restarts, up ",
        "RSS ",
        "auth: BYOK openai at http://127.0.0.1:",
        "turns: 0 running, 0 queued",  # the status command is no thread's work
        "slack: 0 / 0 / 1",  # reset: nothing live or in the runtime for the current session
        "lifecycle: reset 1; runtime compactions 0",
        "idle sweep: next 20",
        "housekeeping: next 20",
        "turn: something broke",
        "store: ",
        "takeover: next 20",
        f"replicas: 1\n  {chat.app.leases.id} (this one): seen 0s ago, ",
    ):
        assert expected in text, (expected, text)
    assert not isinstance(reply.events[0], ErrorReply)


async def test_replicas_summarize_an_idle_thread_once(
    postgres: str,
    runtimes: RuntimePool,
    fake_model: FakeModel,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    """Every replica sweeps; the thread's lease lets one of them reset it, once."""
    url = new_database(postgres)
    settings = make_settings(tmp_path, fake_model.base_url)
    apps = [
        App(settings, runtimes, await Store.open(url, clock), platforms=recording, clock=clock)
        for _ in range(3)
    ]
    try:
        chat = Chat(apps[0])
        await chat.say("swept", "once only: remember 7")
        # Replicas have runtimes of their own; these share one, where a session must not
        # be live twice: the one that answered lets go of it.
        await apps[0].sessions.close()
        tag = f"SUMMARY of {chat.key('swept')}"
        script_summary(fake_model, tag)
        clock.advance(IDLE_TIMEOUT - MARGIN + 1)
        reports = await asyncio.gather(*(app.scheduler.idle_sweep() for app in apps))
        assert sum(report.startswith("1 of 1") for report in reports) == 1, reports
        assert (await apps[1].store.lifecycle_counts()).get("idle") == 1
        thread = await apps[2].store.thread(chat.key("swept"))
        assert thread is not None and thread.summary == tag
    finally:
        for app in apps:
            await app.sessions.close()
            await app.store.close()
