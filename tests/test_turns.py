"""Turns against the real Copilot CLI and the fake model: replies, history, isolation."""

from __future__ import annotations

import asyncio
import base64
import json

from bot.inbound import InboundFile
from bot.replies import FinalText, TextDelta, Usage
from bot.router import FILES_ONLY_PROMPT
from tests.conftest import AppFactory, Chat
from tests.fake_model import FakeModel, Reply, system_text, user_texts


async def test_a_turn_streams_and_returns_the_models_answer(
    chat: Chat, fake_model: FakeModel
) -> None:
    fake_model.script("tell me a story", Reply(text="Once upon a time, there was a bot.", chunks=4))

    sink = await chat.say("1714900000.123456", "tell me a story")

    assert sink.text == "Once upon a time, there was a bot."
    deltas = [e.text for e in sink.events if isinstance(e, TextDelta)]
    assert len(deltas) >= 2 and "".join(deltas) == sink.text
    assert isinstance(sink.events[-1], FinalText)
    usage = [e for e in sink.events if isinstance(e, Usage)]
    assert usage and 0 < usage[-1].context_tokens < usage[-1].context_limit
    # The bot's own system prompt replaces the CLI's coding-agent prompt, and no tools.
    request = fake_model.requests_with("tell me a story")[-1]
    assert system_text(request).startswith("You are threadpilot")
    assert "tools" not in request


async def test_history_of_the_thread_reaches_the_model(chat: Chat, fake_model: FakeModel) -> None:
    await chat.say("history", "my name is Ada")
    sink = await chat.say("history", "what is my name?")

    assert sink.text == "echo: what is my name?"
    request = fake_model.requests_with("what is my name?")[-1]
    assert user_texts(request) == ["my name is Ada", "what is my name?"]
    assistant = [m["content"] for m in request["messages"] if m["role"] == "assistant"]
    assert assistant == ["echo: my name is Ada"]


async def test_two_threads_never_see_each_others_history(chat: Chat, fake_model: FakeModel) -> None:
    await chat.say("thread-a", "secret of A: 1234")
    await chat.say("thread-b", "hello from B")
    await chat.say("thread-a", "A again")
    await chat.say("thread-b", "B again")

    b_request = fake_model.requests_with("B again")[-1]
    assert user_texts(b_request) == ["hello from B", "B again"]
    a_request = fake_model.requests_with("A again")[-1]
    assert user_texts(a_request) == ["secret of A: 1234", "A again"]


async def test_same_thread_runs_in_order_while_threads_run_in_parallel(
    chat: Chat, fake_model: FakeModel
) -> None:
    gate = fake_model.hold("ordered-1")

    a = [asyncio.create_task(chat.say("lane-a", f"ordered-{n}")) for n in (1, 2, 3)]
    # Thread B answers while thread A's first turn is held by the model.
    await fake_model.wait_for_request("ordered-1")
    b = await chat.say("lane-b", "independent")
    assert b.text == "echo: independent"
    assert not fake_model.requests_with("ordered-2"), "A's 2nd turn must wait for its 1st"
    assert chat.app.sessions.lanes.queued == 2

    gate.set()
    sinks = await asyncio.gather(*a)

    assert [s.text for s in sinks] == [f"echo: ordered-{n}" for n in (1, 2, 3)]
    order = [user_texts(r)[-1] for r in fake_model.requests if "ordered-" in user_texts(r)[-1]]
    assert order == ["ordered-1", "ordered-2", "ordered-3"]
    # Each turn saw the answers of the ones before it.
    assert user_texts(fake_model.requests_with("ordered-3")[-1]) == [
        "ordered-1",
        "ordered-2",
        "ordered-3",
    ]
    assert chat.app.sessions.lanes.queued == chat.app.sessions.lanes.running == 0


DOWNLOADED: list[str] = []


def file(name: str, mime_type: str, data: bytes, size: int | None = None) -> InboundFile:
    async def fetch() -> bytes:
        DOWNLOADED.append(name)
        return data

    return InboundFile(name, mime_type, len(data) if size is None else size, fetch)


PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


async def test_text_files_and_images_reach_the_model_and_others_get_a_note(
    make_chat: AppFactory, fake_model: FakeModel
) -> None:
    chat = await make_chat(max_attachment_bytes=1000)
    sink = await chat.say(
        "files",
        "what is in these?",
        files=(
            file("notes.txt", "text/plain", b"the launch code is 0000"),
            file("dot.png", "image/png", PNG),
            file("archive.zip", "application/zip", b"PK\x03\x04"),
            file("huge.log", "text/plain", b"x" * 2000),
            file("latin1.txt", "text/plain", "café".encode("latin-1")),
            file("broken.png", "image/png", b"not an image at all"),
        ),
    )

    assert sink.text == "echo: what is in these?"
    downloaded = ["notes.txt", "dot.png", "latin1.txt", "broken.png"]
    assert DOWNLOADED[-4:] == downloaded  # never the others
    notes = sink.notices
    assert len(notes) == 4
    assert "can't read `archive.zip` (application/zip)" in notes[0]
    assert "`huge.log` is 2 kB; I take files up to 1 kB" in notes[1]
    assert "`latin1.txt` is not UTF-8 text" in notes[2]
    assert "`broken.png` is not a PNG, JPEG, GIF or WebP image" in notes[3]
    content = fake_model.requests_with("what is in these?")[-1]["messages"][-1]["content"]
    parts = json.dumps(content)
    assert "the launch code is 0000" in parts and "notes.txt" in parts
    assert "data:image/png;base64," in parts
    assert "PK" not in parts and "xxxx" not in parts


async def test_files_without_text_are_answered_and_a_rejected_file_alone_gets_its_note(
    chat: Chat, fake_model: FakeModel
) -> None:
    only_text_file = await chat.say(
        "files-only", "", files=(file("a.md", "text/markdown", b"# hi"),)
    )
    assert only_text_file.text == f"echo: {FILES_ONLY_PROMPT}"

    only_binary = await chat.say(
        "files-only", "", files=(file("a.bin", "application/octet-stream", b"\0"),)
    )
    assert only_binary.errors == [] and len(only_binary.notices) == 1
    assert "can't read `a.bin`" in only_binary.notices[0]
    assert len(fake_model.requests_with(FILES_ONLY_PROMPT)) == 1


async def test_status_answers_at_once_and_counts_only_the_threads_work(
    make_chat: AppFactory, fake_model: FakeModel
) -> None:
    chat = await make_chat(admins=frozenset({"slack:UADMIN"}))
    gate = fake_model.hold("st held")
    held = asyncio.create_task(chat.say("st", "st held"))
    await fake_model.wait_for_request("st held")

    # Asked in the very thread whose turn is under way: it does not wait for that turn,
    # and it is not a turn itself.
    status = (await chat.say("st", "/status", user="UADMIN")).text
    assert "turns: 1 running, 0 queued" in status
    gate.set()
    assert (await held).text == "echo: st held"
    status = (await chat.say("st", "/status", user="UADMIN")).text
    assert "turns: 0 running, 0 queued" in status
