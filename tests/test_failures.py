"""What goes wrong: model errors and hangs, repeated deliveries, hostile thread ids, tools."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.config import Settings
from bot.replies import FinalText, TextRestart, ToolProgress
from bot.router import EMPTY_PROMPT
from bot.runtime import CopilotRuntime
from bot.thread_key import ThreadKey
from tests.conftest import AppFactory, Chat, make_settings
from tests.fake_model import FakeModel, Reply, ToolCall, user_texts


async def test_a_model_500_becomes_an_error_and_the_thread_recovers(
    chat: Chat, fake_model: FakeModel
) -> None:
    fake_model.script("fail with 500", Reply(status=500), times=None)

    sink = await chat.say("flaky", "fail with 500")

    assert len(sink.errors) == 1 and "HTTP 500" in sink.errors[0]
    assert not any(isinstance(e, FinalText) for e in sink.events)
    assert len(fake_model.requests_with("fail with 500")) > 1  # the CLI retried first
    after = await chat.say("flaky", "are you back?")
    assert after.errors == [] and after.text == "echo: are you back?"
    assert await chat.journal_state(sink) == "failed"
    assert await chat.journal_state(after) == "done"


async def test_a_stream_that_breaks_off_is_retried_and_the_half_answer_withdrawn(
    chat: Chat, fake_model: FakeModel
) -> None:
    answer = "The whole answer, which streams in several pieces."
    fake_model.script("drop then answer", Reply(text=answer, chunks=5, drop_after=2), times=2)
    fake_model.script("drop then answer", Reply(text=answer, chunks=5))

    sink = await chat.say("dropped", "drop then answer")

    assert sink.errors == [] and sink.text == answer
    assert sum(isinstance(e, TextRestart) for e in sink.events) == 2
    assert sink.streamed == answer  # no half attempt left in what the reader saw
    assert len(fake_model.requests_with("drop then answer")) == 3


async def test_a_stream_that_keeps_breaking_off_ends_in_a_clear_error(
    chat: Chat, fake_model: FakeModel
) -> None:
    broken = Reply(text="never finished", chunks=4, drop_after=1)
    fake_model.script("always drop", broken, times=None)

    sink = await chat.say("dropping", "always drop")

    assert len(sink.errors) == 1 and "connection failed or broke off" in sink.errors[0]
    assert sink.streamed == ""  # the last attempt's half answer was withdrawn too
    after = await chat.say("dropping", "still there?")
    assert after.errors == [] and after.text == "echo: still there?"
    assert user_texts(fake_model.requests_with("still there?")[-1]) == [
        "always drop",
        "still there?",
    ]


async def test_a_hanging_model_times_out_and_the_thread_answers_afterwards(
    make_chat: AppFactory, fake_model: FakeModel
) -> None:
    chat = await make_chat(turn_timeout_s=1.5)
    fake_model.script("never answer", Reply(hang=True))

    sink = await chat.say("hang", "never answer")

    assert len(sink.errors) == 1 and "longer than 1.5 seconds" in sink.errors[0]
    after = await chat.say("hang", "and now?")
    assert after.errors == [] and after.text == "echo: and now?"
    # The aborted turn's question stays in the history; nothing was lost or duplicated.
    assert user_texts(fake_model.requests_with("and now?")[-1]) == ["never answer", "and now?"]


async def test_a_repeated_delivery_is_answered_once(chat: Chat, fake_model: FakeModel) -> None:
    gate = fake_model.hold("only once please")

    first = asyncio.create_task(chat.say("dupes", "only once please", event_id="Ev-dup"))
    await fake_model.wait_for_request("only once please")
    retry = await chat.say("dupes", "only once please", event_id="Ev-dup")  # while running
    gate.set()
    original = await first
    replay = await chat.say("dupes", "only once please", event_id="Ev-dup")  # afterwards

    assert original.text == "echo: only once please"
    assert await chat.journal_state(original) == "done"
    assert retry.rendered == replay.rendered == 0
    assert len(fake_model.requests_with("only once please")) == 1


async def test_an_empty_message_gets_a_polite_answer_without_a_model_call(chat: Chat) -> None:
    sink = await chat.say("empty", "   ")
    assert sink.errors == [EMPTY_PROMPT]


HOSTILE = [
    "../../etc/passwd",
    "..",
    "a b c",
    "ümlaut-ß-日本語",
    "x" * 500,
    "1714900000.123456",
    "1714900000_123456",
    "",
    "-g1",
    "\x00\n\t",
    "a/b",
    "a-b",
]


def test_hostile_thread_ids_give_safe_distinct_session_ids() -> None:
    keys = [ThreadKey("slack", "T01", "C02", thread) for thread in HOSTILE]
    keys += [ThreadKey("slack", "T01-C02", "x", "y"), ThreadKey("slack", "T01", "C02-x", "y")]
    ids = [key.session_id(1) for key in keys]

    assert len(set(ids)) == len(ids)
    for session_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", session_id), session_id
        assert len(session_id) < 200
    assert ThreadKey("slack", "T01", "C02", "1714900000.123456").session_id(3) == (
        "slack-T01-C02-1714900000_123456-g3"
    )


@pytest.mark.parametrize("thread", ["../../escape", "ümlaut 日本 a b", "y" * 500])
async def test_hostile_thread_ids_work_end_to_end_inside_the_data_dir(
    chat: Chat, runtime: CopilotRuntime, fake_model: FakeModel, thread: str
) -> None:
    sink = await chat.say(thread, f"hello from {thread[:20]}")
    assert sink.text == f"echo: hello from {thread[:20]}"
    record = await chat.app.store.thread(chat.key(thread))
    assert record is not None
    home = chat.app.runtimes.home(record.key)
    state = home / "session-state" / record.session_id
    assert state.is_dir() and state.resolve().is_relative_to(home.resolve())
    workspace = chat.app.runtimes.workspace(record.key)
    assert workspace.is_relative_to(runtime.workspaces.resolve())


async def test_tools_are_off_unless_enabled_and_file_access_stays_in_the_workspace(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, fake_model.base_url, tools=("view",))
    chat = await Chat.on_own_runtimes(settings, cli_path, tmp_path / "db.sqlite")
    try:
        key = chat.key("tools")
        workspace = chat.app.runtimes.workspace(key)
        (workspace / "notes.txt").write_text("the workspace note")
        outside = tmp_path / "outside.txt"
        outside.write_text("a secret outside the workspace")
        fake_model.script(
            "read both",
            Reply(
                tool_calls=[
                    ToolCall("view", {"path": str(workspace / "notes.txt")}),
                    ToolCall("view", {"path": str(outside)}),
                ]
            ),
        )

        sink = await chat.say(key, "read both")

        tools = [e for e in sink.events if isinstance(e, ToolProgress)]
        started = [e for e in tools if e.state == "running"]
        finished = {e.call_id: e.state == "done" for e in tools if e.state != "running"}
        assert [e.name for e in started] == ["view", "view"]
        # Text before and after the tool calls: the streamed pieces add up to the answer.
        assert sink.text == "echo: read both\n\necho: read both" == sink.streamed
        assert [finished[e.call_id] for e in started] == [True, False]
        follow_up = fake_model.requests[-1]
        tool_results = [m["content"] for m in follow_up["messages"] if m["role"] == "tool"]
        assert "the workspace note" in str(tool_results[0])
        assert "a secret" not in str(tool_results)
        assert [t["function"]["name"] for t in follow_up["tools"]] == ["view"]
        denials = [r.getMessage() for r in caplog.records if "denied" in r.getMessage()]
        assert len(denials) == 1 and str(outside) in denials[0]  # each refusal is logged
    finally:
        await chat.app.close()


async def test_without_credentials_a_turn_fails_fast_with_a_clear_message(
    tmp_path: Path, cli_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No BYOK provider and no GitHub token: the runtime fails the message before it is
    # even recorded, so the error comes before any user message event.
    monkeypatch.setenv("HOME", str(tmp_path))  # no logged-in GitHub user either
    for name in ("GITHUB_TOKEN", "COPILOT_GITHUB_TOKEN", "GH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None, data_dir=tmp_path, turn_timeout_s=60)  # type: ignore[call-arg]
    chat = await Chat.on_own_runtimes(settings, cli_path, tmp_path / "db.sqlite")
    try:
        async with asyncio.timeout(30):  # well inside the 60 s turn timeout
            sink = await chat.say("no-credentials", "hello?")
        assert len(sink.errors) == 1 and "no model credentials" in sink.errors[0]
        assert await chat.journal_state(sink) == "failed"
    finally:
        await chat.app.close()
