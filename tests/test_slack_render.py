"""SlackSink: reply streams rendered into the fake Slack by the real AsyncWebClient."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import SlackClient
from adapters.slack.sink import SlackSink, StreamingSupport, Target
from bot.replies import (
    ErrorReply,
    FinalText,
    Notice,
    ReplyEvent,
    TextDelta,
    TextRestart,
    ToolProgress,
)
from tests.fake_slack import BOT_TOKEN, FakeSlack, Scripted

FENCED = "```python\n" + "\n".join(f"value_{i} = {i}" for i in range(300)) + "\n```"


@pytest.fixture
def client(fake_slack: FakeSlack) -> AsyncWebClient:
    return SlackClient(BOT_TOKEN, fake_slack.api_url)  # the adapter's


def target(client: AsyncWebClient, channel: str | None = None) -> Target:
    """A thread of a channel of its own, started by a question of its own."""
    channel = channel or f"C{uuid.uuid4().hex[:8].upper()}"
    ts = f"1700000000.{uuid.uuid4().int % 10**6:06d}"
    return Target(client, "T01", channel, ts, "U1", ts)


async def stream(events: Sequence[ReplyEvent], every: float = 0.0) -> AsyncIterator[ReplyEvent]:
    for event in events:
        if every:
            await asyncio.sleep(every)  # the model's pace, not synchronisation
        yield event


def answer(text: str, pieces: int = 10) -> list[ReplyEvent]:
    size = max(1, len(text) // pieces + 1)
    deltas: list[ReplyEvent] = [TextDelta(text[i : i + size]) for i in range(0, len(text), size)]
    return [*deltas, FinalText(text)]


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_long_answer_is_split_at_paragraphs_and_code_fences_stay_whole(
    client: AsyncWebClient, fake_slack: FakeSlack, streaming: bool
) -> None:
    text = "Intro paragraph.\n\n" + FENCED + "\n\nClosing words."
    assert 4_000 < len(text) < 12_000
    where = target(client)
    await SlackSink(where, StreamingSupport(streaming), 0.01).render(stream(answer(text)))

    replies = fake_slack.replies(where.channel, str(where.thread_ts))
    assert len(replies) >= 2 and all(len(m.text) <= 4_000 for m in replies)
    for message in replies:
        assert message.text.count("```") % 2 == 0  # every part opens and closes its fences
    code = "".join(m.text for m in replies)
    assert all(f"value_{i} = {i}" in code for i in range(300))
    assert replies[0].text.startswith("Intro paragraph.") and "Closing words." in replies[-1].text


async def test_a_very_long_answer_goes_up_as_a_file(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    text = "\n\n".join(f"Paragraph {i}: " + "word " * 50 for i in range(60))
    assert len(text) > 12_000
    where = target(client)
    refs = await SlackSink(where, StreamingSupport(), 0.01).render(stream(answer(text)))

    replies = fake_slack.replies(where.channel, str(where.thread_ts))
    assert "so here it is as a file" in replies[-2].text  # after what was shown meanwhile
    assert replies[-1].file == text.encode()  # exactly the answer
    assert refs[-1].startswith("file:F")


async def test_streamed_or_edited_in_the_same_markdown_reaches_slack_the_same(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    text = "# Result\n\n**Bold** and *italic*, see [docs](https://example.com).\n\n- one\n- two"
    shown = []
    for streaming in (True, False):
        where = target(client)
        sink = SlackSink(where, StreamingSupport(available=streaming), 0.01)
        await sink.render(stream(answer(text)))
        (reply,) = fake_slack.replies(where.channel, str(where.thread_ts))
        shown.append(reply.text)
    assert shown == [text, text]  # Markdown both ways: Slack renders it one way
    # (Approval cards are Block Kit, whose `text` is only the notification's.)
    answers = [
        c for c in fake_slack.calls if c.method.startswith("chat.") and "blocks" not in c.args
    ]
    assert not any("text" in c.args for c in answers)


async def test_edits_come_at_most_once_a_second_and_the_final_text_is_exact(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    text = " ".join(f"token{i}" for i in range(60))
    where = target(client)
    # 60 deltas over ~3 seconds.
    sink = SlackSink(where, StreamingSupport(available=False), edit_interval_s=1.0)
    await sink.render(stream(answer(text, pieces=60), every=0.05))

    edits = [
        c.at
        for c in fake_slack.calls
        if c.method in ("chat.postMessage", "chat.update") and c.args["channel"] == where.channel
    ]
    gaps = [b - a for a, b in itertools.pairwise(edits)]
    assert 3 <= len(edits) <= 6 and min(gaps) >= 0.99
    assert fake_slack.replies(where.channel, str(where.thread_ts))[0].text == text


async def test_a_429_on_an_edit_delays_it_and_loses_no_text(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    fake_slack.script("chat.appendStream", Scripted(retry_after=1, times=2))
    text = "one two three four five six seven eight nine ten"
    where = target(client)
    await SlackSink(where, StreamingSupport(), 0.05).render(stream(answer(text), every=0.05))

    (reply,) = fake_slack.replies(where.channel, str(where.thread_ts))
    assert reply.text == text and not reply.streaming
    appends = [c.at for c in fake_slack.calls_to("chat.appendStream")][-3:]
    assert appends[-1] - appends[0] >= 1.9  # waited out both Retry-Afters


async def test_tool_activity_is_shown_while_it_runs(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    where = target(client)
    events: list[ReplyEvent] = [
        ToolProgress("call-1", "view", "running"),
        ToolProgress("call-1", "view", "done"),
        *answer("Done looking."),
    ]
    await SlackSink(where, StreamingSupport(), 0.01).render(stream(events, every=0.02))

    chunks = [
        chunk
        for call in fake_slack.calls
        if call.args.get("channel") == where.channel
        for chunk in call.args.get("chunks") or []
    ]
    assert {
        "type": "task_update",
        "id": "call-1",
        "title": "Using view",
        "status": "in_progress",
    } in chunks
    assert any(c["status"] == "complete" for c in chunks)
    assert fake_slack.replies(where.channel, str(where.thread_ts))[0].text == "Done looking."


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_retried_answer_withdraws_the_half_that_broke_off(
    client: AsyncWebClient, fake_slack: FakeSlack, streaming: bool
) -> None:
    where = target(client)
    events = [
        TextDelta("Half of a first"),
        TextRestart(""),
        TextDelta("The answer, "),
        TextDelta("asked again."),
        FinalText("The answer, asked again."),
    ]
    await SlackSink(where, StreamingSupport(streaming), 0.01).render(stream(events, every=0.05))

    (reply,) = fake_slack.replies(where.channel, str(where.thread_ts))
    assert reply.text == "The answer, asked again."
    assert reply.shown[0] == "Half of a first"
    assert not any("Half" in text and "answer" in text for text in reply.shown)


async def test_errors_and_notices_reach_the_thread(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    where = target(client)
    await SlackSink(where, StreamingSupport(), 0.01).render(
        stream([Notice("I left out `x.zip`."), TextDelta("Partial"), ErrorReply("Model down.")])
    )
    texts = [m.text for m in fake_slack.replies(where.channel, str(where.thread_ts))]
    assert texts == ["ℹ️ I left out `x.zip`.", "Partial\n\n⚠️ Model down."]


async def test_a_slow_reply_shows_a_reaction_until_it_is_done(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    where = target(client)
    await SlackSink(where, StreamingSupport(), 0.01).render(
        stream([TextDelta("slow"), FinalText("slow")], every=0.7)
    )
    question = str(where.question_ts)
    mine = [r for r in fake_slack.reactions if r[1] == question]
    assert mine == [("add", question, "eyes"), ("remove", question, "eyes")]

    quick = target(client)
    await SlackSink(quick, StreamingSupport(), 0.01).render(stream(answer("fast")))
    assert not any(r[1] == quick.question_ts for r in fake_slack.reactions[len(mine) :])


async def test_in_a_dm_a_slow_reply_shows_the_assistant_status(
    client: AsyncWebClient, fake_slack: FakeSlack
) -> None:
    where = target(client, channel=f"D{uuid.uuid4().hex[:8].upper()}")
    await SlackSink(where, StreamingSupport(), 0.01).render(
        stream([TextDelta("thought about it"), FinalText("thought about it")], every=0.7)
    )
    statuses = [
        c.args["status"]
        for c in fake_slack.calls_to("assistant.threads.setStatus")
        if c.args["channel_id"] == where.channel
    ]
    assert statuses == ["is thinking…", ""]
