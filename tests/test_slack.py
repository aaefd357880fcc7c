"""The Slack adapter: the real slack-bolt AsyncApp against the fake Slack (Socket Mode),
the real Copilot CLI against the fake model."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import uuid
from pathlib import Path

import pytest

from adapters.text import split_text
from bot.inbound import NOT_STARTED
from bot.thread_key import ThreadKey
from tests.conftest import SlackFactory, reap, refused_start, start_bot, stop_bot
from tests.fake_model import FakeModel, Reply, user_texts
from tests.fake_slack import (
    TEAM,
    FakeSlack,
    Scripted,
    form,
)
from tests.slack_harness import SlackHarness

FORM = "application/x-www-form-urlencoded"


async def test_a_mention_is_answered_in_a_thread_under_it_by_streaming(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    # Written slower than the first post's hold: an answer done by then is posted whole.
    text = "Hello **there**, streamed in parts."
    fake_model.script("stream me", Reply(text=text, chunks=5, chunk_delay=0.05))
    ts, _ = await slack.say("stream me")

    replies = slack.replies(ts)
    assert len(replies) == 1
    assert replies[0].text == text  # Markdown: Slack renders it
    assert not replies[0].streaming  # stopped
    methods = [  # the message's own calls; a slow first turn may add the "eyes" reaction too
        c.method
        for c in slack.fake.calls
        if c.args.get("channel") == slack.channel and c.method.startswith("chat.")
    ]
    assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
    start = slack.fake.calls_to("chat.startStream")[-1].args
    assert (start["thread_ts"], start["recipient_user_id"], start["recipient_team_id"]) == (
        ts,
        "U1",
        TEAM,
    )
    # The model saw the text without the mention.
    assert user_texts(fake_model.requests_with("stream me")[-1]) == ["stream me"]


async def test_follow_ups_in_a_bot_thread_need_no_mention_but_other_threads_do(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    ts, _ = await slack.say("remember: the answer is 42")
    await slack.say("what was the answer?", thread_ts=ts, mention=False)
    assert slack.texts(ts)[-1] == "echo: what was the answer?"
    request = fake_model.requests_with("what was the answer?")[-1]
    assert user_texts(request) == ["remember: the answer is 42", "what was the answer?"]

    # A thread the bot is not part of: people talking among themselves.
    other, _ = slack.fake.user_message(slack.channel, "just people here")
    _, events = slack.fake.user_message(slack.channel, "still people", thread_ts=other)
    await slack.fake.push("events_api", events[0])
    assert await slack.handled_as(events[0]["event_id"]) is None  # ignored
    assert slack.replies(other) == []


async def test_two_threads_keep_separate_sessions(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    first, _ = await slack.say("thread one says hi")
    second, _ = await slack.say("thread two says hello")
    await slack.say("and one again", thread_ts=first)
    await slack.say("and two again", thread_ts=second)

    assert user_texts(fake_model.requests_with("and one again")[-1]) == [
        "thread one says hi",
        "and one again",
    ]
    assert user_texts(fake_model.requests_with("and two again")[-1]) == [
        "thread two says hello",
        "and two again",
    ]


async def test_a_redelivered_event_is_answered_once(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    gate = fake_model.hold("only one answer")
    ts, events = slack.fake.user_message(slack.channel, "<@UBOT> only one answer")
    mention = events[-1]
    # The first delivery: Bolt turns retry_attempt 0 into an x-slack-retry-num of "0".
    first = await slack.fake.push("events_api", mention, retry_attempt=0)
    await fake_model.wait_for_request("only one answer")
    # Slack gave up waiting and retries, twice, while the first is still being answered.
    retries = [await slack.fake.push("events_api", mention, retry_attempt=n) for n in (1, 2)]
    for envelope in (first, *retries):
        await asyncio.wait_for(envelope.acked.wait(), 10)  # each one acknowledged
    gate.set()
    await slack.dispatched(mention["event_id"])
    await slack.fake.push("events_api", mention, retry_attempt=3)  # and once more, after
    await slack.fake.wait_for(lambda: slack.texts(ts) == ["echo: only one answer"])

    assert len(fake_model.requests_with("only one answer")) == 1
    assert slack.texts(ts) == ["echo: only one answer"]


async def test_every_command_works_as_a_mention_word(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    ts, _ = await slack.say("the secret is plum")
    await slack.say("help", thread_ts=ts)
    assert slack.texts(ts) == ["echo: the secret is plum"]  # help is for the asker only
    (help_text,) = [e for e in slack.fake.ephemeral if e.get("thread_ts") == ts]
    assert "restore - undo" in help_text["text"] and help_text["user"] == "U1"

    await slack.say("reset", thread_ts=ts)
    assert "Started afresh" in slack.texts(ts)[-1]
    await slack.say("what is the secret?", thread_ts=ts, mention=False)
    assert user_texts(fake_model.requests_with("what is the secret?")[-1]) == [
        "what is the secret?"
    ]

    await slack.say("restore", thread_ts=ts)
    assert "Restored" in slack.texts(ts)[-1]
    await slack.say("and now?", thread_ts=ts, mention=False)
    assert user_texts(fake_model.requests_with("and now?")[-1])[0] == "the secret is plum"

    await slack.say("branch", thread_ts=ts)
    reply = slack.texts(ts)[-1]
    assert reply.startswith("Branched into [a new thread](https://fake.slack.com/archives/")
    branch_root = slack.fake.top_level(slack.channel)[-1]
    origin = f"https://fake.slack.com/archives/{slack.channel}/p{ts.replace('.', '')}"
    assert f"a branch of [this thread]({origin})" in branch_root.text
    assert branch_root.ts.replace(".", "") in reply  # links both ways

    # Status: for admins only, and only they see it (ephemeral).
    await slack.say("status", thread_ts=ts)
    refusal = slack.fake.ephemeral[-1]
    assert refusal["user"] == "U1" and "for admins only" in refusal["text"]
    await slack.say("status", thread_ts=ts, user="UADMIN")
    status = slack.fake.ephemeral[-1]
    assert status["user"] == "UADMIN" and "threadpilot status" in status["text"]
    assert all("threadpilot status" not in text for text in slack.texts(ts))


async def test_slash_reset_and_branch_typed_in_a_bot_thread(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    ts, _ = await slack.say("first topic")
    await slack.say("/reset", thread_ts=ts, mention=False)
    assert "Started afresh" in slack.texts(ts)[-1]
    await slack.say("/branch", thread_ts=ts, mention=False)
    assert "nothing to branch yet" in slack.texts(ts)[-1]


async def test_slash_commands_outside_a_thread_answer_privately(slack: SlackHarness) -> None:
    for command, text in (("/reset", ""), ("/branch", ""), ("/threadpilot", "help")):
        payload = slack.fake.slash_command(command, text, slack.channel)
        envelope = await slack.fake.push("slash_commands", payload)
        await asyncio.wait_for(envelope.acked.wait(), 10)
        await slack.dispatched(f"{command}-{payload['trigger_id']}")
    hints = [reply["text"] for reply in slack.fake.ephemeral[-3:]]
    assert "`reset` works on a thread" in hints[0] and "message shortcut" in hints[0]
    assert "`branch` works on a thread" in hints[1]
    assert "reset - forget" in hints[2]
    assert all(reply["response_type"] == "ephemeral" for reply in slack.fake.ephemeral[-3:])
    assert slack.fake.top_level(slack.channel) == []  # nothing posted for everyone

    for user, expected in (("U1", "for admins only"), ("UADMIN", "threadpilot status")):
        payload = slack.fake.slash_command("/threadpilot", "status", slack.channel, user=user)
        await slack.fake.push("slash_commands", payload)
        await slack.dispatched(f"/threadpilot-{payload['trigger_id']}")
        assert expected in slack.fake.ephemeral[-1]["text"]


async def test_shortcuts_reset_the_thread_and_branch_from_a_message(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    ts, _ = await slack.say("chapter one")
    await slack.say("chapter two", thread_ts=ts, mention=False)
    await slack.say("chapter three", thread_ts=ts, mention=False)
    chapter_one_answer = slack.replies(ts)[0]

    payload = slack.fake.shortcut("branch", slack.channel, chapter_one_answer)
    await slack.fake.push("interactive", payload)
    await slack.dispatched(f"branch-{payload['trigger_id']}")
    branch_ts = slack.fake.top_level(slack.channel)[-1].ts
    assert slack.texts(ts)[-1].startswith("Branched into")

    await slack.say("what came after chapter one?", thread_ts=branch_ts, mention=False)
    request = fake_model.requests_with("what came after chapter one?")[-1]
    assert user_texts(request) == ["chapter one", "what came after chapter one?"]

    payload = slack.fake.shortcut("reset", slack.channel, slack.replies(ts)[-1])
    await slack.fake.push("interactive", payload)
    await slack.dispatched(f"reset-{payload['trigger_id']}")
    assert "Started afresh" in slack.texts(ts)[-1]


async def test_bots_edits_deletes_and_joins_are_not_answered(slack: SlackHarness) -> None:
    ts, _ = await slack.say("hello")
    base = {"channel": slack.channel, "thread_ts": ts, "team": "T01", "ts": slack.fake.new_ts()}
    # Another bot's message is part of the thread (the agent reads it), never a turn.
    _, callback = slack.fake.bot_message(slack.channel, "beep", ts)
    await slack.fake.push("events_api", callback)
    assert await slack.handled_as(callback["event_id"]) == "context"
    for event in (
        {**base, "type": "message", "user": "UBOT", "text": "my own words"},
        {**base, "type": "message", "bot_id": "BBOT", "text": "my words, as an app"},
        {**base, "type": "message", "subtype": "message_changed", "message": {"text": "x"}},
        {**base, "type": "message", "subtype": "message_deleted", "deleted_ts": ts},
        {**base, "type": "message", "subtype": "channel_join", "user": "U9", "text": "joined"},
    ):
        callback = slack.fake.event_callback(event)
        await slack.fake.push("events_api", callback)
        await slack.dispatched_nothing_for(callback["event_id"])
    assert len(slack.replies(ts)) == 1


async def test_each_dm_thread_is_its_own_session(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    first, _ = await slack.say("dm topic one", channel=slack.dm, mention=False)
    second, _ = await slack.say("dm topic two", channel=slack.dm, mention=False)
    await slack.say("dm follow-up", channel=slack.dm, thread_ts=first, mention=False)

    assert slack.texts(first, slack.dm) == ["echo: dm topic one", "echo: dm follow-up"]
    assert slack.texts(second, slack.dm) == ["echo: dm topic two"]
    assert user_texts(fake_model.requests_with("dm follow-up")[-1]) == [
        "dm topic one",
        "dm follow-up",
    ]


async def test_files_reach_the_session_and_unsupported_ones_get_a_note(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    files = [
        slack.fake.add_file("notes.txt", "text/plain", b"meeting at noon"),
        slack.fake.add_file("tool.exe", "application/octet-stream", b"MZ\x90\x00"),
        slack.fake.add_file("gone.txt", "text/plain", b"deleted before the download"),
    ]
    slack.fake.delete_file(files[-1]["id"])
    ts, _ = await slack.say("summarize the attachment", files=files)

    texts = slack.texts(ts)
    assert texts[0].startswith("ℹ️ I can't read `tool.exe`")
    assert texts[1].startswith("ℹ️ I couldn't download `gone.txt`")
    assert texts[2] == "echo: summarize the attachment"
    content = fake_model.requests_with("summarize the attachment")[-1]["messages"][-1]["content"]
    assert "meeting at noon" in str(content) and "MZ" not in str(content)


async def test_an_empty_mention_a_huge_message_and_a_binary_file_get_clear_replies(
    slack: SlackHarness,
) -> None:
    ts, _ = await slack.say("")
    assert "Please write a message" in slack.texts(ts)[-1]

    huge = "a" * 40_000  # Slack's own limit for a message
    ts, _ = await slack.say(huge, mention=False, channel=slack.dm)
    replies = slack.replies(ts, slack.dm)
    assert "so here it is as a file" in replies[0].text
    assert replies[-1].file == f"echo: {huge}".encode()

    binary = [slack.fake.add_file("blob.bin", "application/octet-stream", bytes(range(256)))]
    ts, _ = await slack.say("", files=binary)
    assert slack.texts(ts) == [
        "ℹ️ I can't read `blob.bin` (application/octet-stream): "
        "I take text files and images (PNG, JPEG, GIF, WebP)."
    ]


async def test_a_socket_mode_disconnect_mid_turn_reconnects_and_the_answer_completes(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    gate = fake_model.hold("across a reconnect")
    ts, answered = await slack.say("across a reconnect", wait=False)
    await fake_model.wait_for_request("across a reconnect")

    await slack.fake.disconnect()  # returns once the client has reconnected
    gate.set()
    await slack.dispatched(answered)
    assert slack.texts(ts) == ["echo: across a reconnect"]
    assert slack.adapter.connected
    # And it still hears new messages on the new socket.
    await slack.say("after the reconnect", thread_ts=ts, mention=False)
    assert slack.texts(ts)[-1] == "echo: after the reconnect"


async def test_a_summary_reset_note_is_posted_in_the_slack_thread(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    ts, _ = await slack.say("something to remember")
    thread = await slack.app.store.thread(ThreadKey("slack", TEAM, slack.channel, ts))
    assert thread is not None
    await slack.app.summary_reset.run(thread, "idle")
    assert slack.texts(ts)[-1].startswith("ℹ️ I summarized")


async def test_http_mode_verifies_signatures_and_answers_retries_once(
    slack_http: tuple[SlackHarness, str], fake_model: FakeModel
) -> None:
    slack, url = slack_http
    ts, events = slack.fake.user_message(slack.channel, "<@UBOT> over http")
    mention = json.dumps(events[-1])

    assert (await slack.fake.deliver_http(url, mention, secret="not-the-secret"))[0] == 401
    assert (await slack.fake.deliver_http(url, mention))[0] == 200
    assert (await slack.fake.deliver_http(url, mention, retry_num=1))[0] == 200
    await slack.dispatched(events[-1]["event_id"])
    await slack.fake.wait_for(lambda: slack.texts(ts) == ["echo: over http"])
    assert len(fake_model.requests_with("over http")) == 1
    assert slack.adapter.connected


async def test_http_mode_takes_slash_commands_and_shortcuts(
    slack_http: tuple[SlackHarness, str],
) -> None:
    slack, url = slack_http
    payload = slack.fake.slash_command("/threadpilot", "help", slack.channel)
    status, _ = await slack.fake.deliver_http(url, form(payload), FORM)
    assert status == 200
    await slack.dispatched(f"/threadpilot-{payload['trigger_id']}")
    assert "branch - copy" in slack.fake.ephemeral[-1]["text"]

    ts, events = slack.fake.user_message(slack.channel, "<@UBOT> a thread to act on")
    body = json.dumps(events[-1])
    assert (await slack.fake.deliver_http(url, body))[0] == 200
    await slack.fake.wait_for(lambda: slack.texts(ts) == ["echo: a thread to act on"])
    shortcut = slack.fake.shortcut("reset", slack.channel, slack.replies(ts)[-1])
    body = form({"payload": json.dumps(shortcut)})
    assert (await slack.fake.deliver_http(url, body, FORM))[0] == 200
    await slack.dispatched(f"reset-{shortcut['trigger_id']}")
    assert "Started afresh" in slack.texts(ts)[-1]


async def taken(fake_slack: FakeSlack, connections: int, text: str) -> tuple[str, str]:
    """Once a bot process connects (past `connections`), mention it in a new channel and
    wait until the delivery is acknowledged, at once (Slack sends it no more); the
    channel and the message's ts."""
    await fake_slack.wait_for(lambda: fake_slack.connections > connections)
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    ts, events = fake_slack.user_message(channel, f"<@UBOT> {text}")
    envelopes = [await fake_slack.push("events_api", event) for event in events]
    async with asyncio.timeout(10):
        for envelope in envelopes:
            await envelope.acked.wait()
    return channel, ts


async def test_threadpilot_runs_slack_in_socket_mode_taking_events_before_its_runtime_is_up(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    # The Copilot CLI is held at a gate (a FIFO it reads before it starts), as a slow
    # start would hold it: the bot connects anyway and takes what comes meanwhile.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    gated = tmp_path / "gated-copilot"
    gated.write_text(f'#!/bin/sh\nread _ < "{gate}"\nexec "{cli_path}" "$@"\n')
    gated.chmod(0o700)
    connections = fake_slack.connections
    process = await start_bot(tmp_path, fake_model, gated, **fake_slack.env)
    try:
        channel, ts = await taken(fake_slack, connections, "asked while starting")
        assert fake_slack.replies(channel, ts) == []  # the runtime is not up yet
        await asyncio.to_thread(gate.write_text, "go\n")
        await fake_slack.wait_for(
            lambda: (
                [m.text for m in fake_slack.replies(channel, ts)] == ["echo: asked while starting"]
            )
        )
    finally:
        log = await stop_bot(process)  # and it stops cleanly
    assert "slack: connected as threadpilot (Socket mode)" in log and "Traceback" not in log


async def test_a_message_that_came_while_the_bot_failed_to_start_is_told_it_was_not_taken(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    # The database "server" takes the connection and says nothing until the test hangs
    # up: the bot has connected to Slack and taken a message by then, and cannot start.
    held: list[asyncio.StreamWriter] = []
    reached = asyncio.Event()

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        reached.set()

    database = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = database.sockets[0].getsockname()[1]
    env = {**fake_slack.env, "THREADPILOT_DATABASE_URL": f"postgresql://u@127.0.0.1:{port}/db"}
    connections = fake_slack.connections
    process = await start_bot(tmp_path, fake_model, cli_path, **env)
    try:
        channel, ts = await taken(fake_slack, connections, "asked as it fails")
        async with asyncio.timeout(30):
            await reached.wait()  # the bot is opening its database
        held[0].close()
        await fake_slack.wait_for(lambda: fake_slack.replies(channel, ts))
        assert [m.text for m in fake_slack.replies(channel, ts)] == [f"⚠️ {NOT_STARTED}"]
        async with asyncio.timeout(60):
            _, err = await process.communicate()
        assert process.returncode == 2 and "Traceback" not in err.decode(), err.decode()
    finally:
        await reap(process)
        database.close()


async def test_a_token_slack_refuses_stops_the_start_with_one_clear_line(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    env = {**fake_slack.env, "SLACK_BOT_TOKEN": "xoxb-revoked"}
    assert await refused_start(tmp_path, fake_model, cli_path, **env) == (
        "threadpilot: could not connect to Slack (invalid_auth); "
        "`threadpilot doctor` checks the tokens"
    )


async def test_a_setting_can_require_mentions_in_bot_threads(make_slack: SlackFactory) -> None:
    slack = await make_slack(slack_require_mention=True)
    ts, _ = await slack.say("hello")
    _, events = slack.fake.user_message(slack.channel, "no mention", thread_ts=ts)
    await slack.fake.push("events_api", events[0])
    assert await slack.handled_as(events[0]["event_id"]) == "context"
    await slack.say("with a mention", thread_ts=ts)
    assert slack.texts(ts) == ["echo: hello", "echo: with a mention"]


@pytest.mark.parametrize("streaming", [True, False])
async def test_bursts_of_429s_while_threads_answer_at_once_delay_but_never_lose_or_repeat(
    slack: SlackHarness,
    fake_model: FakeModel,
    caplog: pytest.LogCaptureFixture,
    streaming: bool,
) -> None:
    gate = asyncio.Event()  # all answers wait until every thread shows its indicator
    answers = {
        f"burst {n} {streaming}": f"Answer {n}: " + " ".join(f"w{n}-{i}" for i in range(12))
        for n in range(4)
    }
    for question, text in answers.items():
        fake_model.script(question, Reply(text=text, chunks=6, chunk_delay=0.05, gate=gate))
    # Two threads in a channel (a reaction as indicator), two in a DM (the assistant status,
    # and no mention needed).
    places = [(slack.channel, True), (slack.channel, True), (slack.dm, False), (slack.dm, False)]
    methods = ["reactions.add", "reactions.remove", "assistant.threads.setStatus"] + (
        ["chat.startStream", "chat.appendStream", "chat.stopStream"]
        if streaming
        else ["chat.postMessage", "chat.update"]
    )
    for method in methods:
        slack.fake.script(method, Scripted(retry_after=1, times=2))
    slack.fake.streaming_enabled = streaming
    try:
        asked = [
            (channel, *await slack.say(question, channel=channel, mention=mention, wait=False))
            for (channel, mention), question in zip(places, answers, strict=True)
        ]
        await slack.fake.wait_for(
            lambda: all(
                ("add", ts, "eyes") in slack.fake.reactions
                or slack.fake.statuses.get((channel, ts)) == "is thinking…"
                for channel, ts, _ in asked
            )
        )
        gate.set()
        for _, _, event_id in asked:
            await slack.dispatched(event_id)
    finally:
        gate.set()
        slack.fake.streaming_enabled = True
        unserved = slack.fake.unscript()

    assert unserved == {}  # every 429 was served, and waited out
    for (channel, ts, _), (question, text) in zip(asked, answers.items(), strict=True):
        (reply,) = slack.replies(ts, channel)  # one message per answer
        assert reply.text == text and not reply.streaming
        assert len(fake_model.requests_with(question)) == 1
        if channel == slack.channel:
            assert [r for r in slack.fake.reactions if r[1] == ts] == [
                ("add", ts, "eyes"),
                ("remove", ts, "eyes"),
            ]
        else:
            assert slack.fake.statuses[(channel, ts)] == ""
    # Nothing failed along the way, not even an edit the final text papered over.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_http_mode_refuses_old_and_future_timestamps_without_a_turn(
    slack_http: tuple[SlackHarness, str], fake_model: FakeModel
) -> None:
    slack, url = slack_http

    async def deliver(words: str, age_s: int) -> tuple[int, str, str]:
        """A correctly signed mention stamped `age_s` seconds ago: status, ts, event id."""
        ts, events = slack.fake.user_message(slack.channel, f"<@UBOT> {words}")
        status, _ = await slack.fake.deliver_http(url, json.dumps(events[-1]), age_s=age_s)
        return status, ts, events[-1]["event_id"]

    # Six minutes off, well past the five-minute replay window Slack signs for, either way.
    refused = [await deliver("replayed later", 360), await deliver("stamped ahead", -360)]
    assert [status for status, _, _ in refused] == [401, 401]
    for words, age_s in (("sent just now", 0), ("a little delayed", 240)):
        status, ts, event_id = await deliver(words, age_s)
        assert status == 200
        await slack.dispatched(event_id)
        assert slack.texts(ts) == [f"echo: {words}"]

    for _, ts, event_id in refused:
        assert event_id not in slack.handled and slack.texts(ts) == []
    assert fake_model.requests_with("replayed later") == []
    assert fake_model.requests_with("stamped ahead") == []


@pytest.mark.parametrize(
    ("broken", "expected", "in_dm"),
    [
        (Reply(status=500), "The model provider failed to answer (HTTP 500)", False),
        (Reply(text="never finished", chunks=4, drop_after=1), "broke off", True),
    ],
    ids=["500s-in-a-channel", "dropped-streams-in-a-dm"],
)
async def test_a_failing_model_leaves_a_clear_message_no_indicator_and_a_usable_thread(
    slack: SlackHarness, fake_model: FakeModel, broken: Reply, expected: str, in_dm: bool
) -> None:
    question = f"fail every attempt {in_dm}"
    gate = asyncio.Event()  # the first attempt waits until the indicator is up
    fake_model.script(question, dataclasses.replace(broken, gate=gate))
    fake_model.script(question, broken, times=None)  # and every retry fails too
    channel = slack.dm if in_dm else slack.channel
    ts, answered = await slack.say(question, channel=channel, mention=not in_dm, wait=False)
    try:
        await slack.fake.wait_for(
            lambda: (
                slack.fake.statuses.get((channel, ts)) == "is thinking…"
                if in_dm
                else ("add", ts, "eyes") in slack.fake.reactions
            )
        )
    finally:
        gate.set()
    await slack.dispatched(answered)

    (reply,) = slack.replies(ts, channel)
    warning = reply.text.partition("⚠️ ")[2]
    assert expected in warning and warning.endswith("Please try again in a moment.")
    assert not reply.streaming
    if in_dm:
        assert slack.fake.statuses[(channel, ts)] == ""
    else:
        assert [r for r in slack.fake.reactions if r[1] == ts] == [
            ("add", ts, "eyes"),
            ("remove", ts, "eyes"),
        ]

    await slack.say("are you back?", channel=channel, thread_ts=ts, mention=False)
    assert slack.texts(ts, channel)[1:] == ["echo: are you back?"]
    assert user_texts(fake_model.requests_with("are you back?")[-1]) == [question, "are you back?"]
    assert reply.text == f"⚠️ {warning}"  # no half answer left standing above it


QUICK = "Yes: run `make lint` before you push, and the check passes."
# A code block longer than a Slack message, then prose: the block is cut and fenced again.
CODE = "```python\n" + "\n".join(f"value_{i} = {i}  # one line" for i in range(180)) + "\n```"
LONG = CODE + "\n\n" + "\n\n".join(f"Paragraph {i}: " + "more words " * 30 for i in range(8))


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_short_quick_answer_lands_whole_in_its_first_post(
    make_slack: SlackFactory, fake_model: FakeModel, streaming: bool
) -> None:
    slack = await make_slack(edit_interval_s=1.0)  # the adapter's own pacing
    slack.fake.streaming_enabled = streaming
    try:
        fake_model.script("quick one", Reply(text=QUICK, chunks=4))
        ts, _ = await slack.say("quick one")
    finally:
        slack.fake.streaming_enabled = True
    (reply,) = slack.replies(ts)
    assert set(reply.shown) == {QUICK}  # no part of it first, no edit a second later


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_long_answer_goes_on_in_a_new_message_while_the_model_still_writes(
    slack: SlackHarness, fake_model: FakeModel, streaming: bool
) -> None:
    assert len(CODE) > 3_900 and len(LONG) < 12_000
    slack.fake.streaming_enabled = streaming
    try:
        fake_model.script("long one", Reply(text=LONG, chunks=120, chunk_delay=0.02))
        ts, event_id = await slack.say("long one", wait=False)
        # The second message opens while much of the answer is still to come.
        await slack.fake.wait_for(lambda: len(slack.replies(ts)) >= 2)
        assert sum(len(text) for text in slack.texts(ts)) < len(LONG) - 2_000
        await slack.dispatched(event_id)
    finally:
        slack.fake.streaming_enabled = True

    replies = slack.replies(ts)
    assert [m.text for m in replies] == split_text(LONG, 3_900)  # exactly the answer
    assert not any(m.streaming for m in replies)
    first, second, *_ = [m.text for m in replies]
    assert first.endswith("\n```") and second.startswith("```python\n")  # closed, reopened
    assert all(text.count("```") % 2 == 0 for text in slack.texts(ts))
    # Each message changes at most once an interval (0.05 s here), its creation included.
    calls = [c for c in slack.fake.calls if c.args.get("channel") == slack.channel]
    created = iter(
        c.at
        for c in calls
        if c.method in ("chat.startStream", "chat.postMessage") and c.args.get("thread_ts") == ts
    )
    for message in replies:
        changes = [next(created), *(c.at for c in calls if c.args.get("ts") == message.ts)]
        assert all(b - a >= 0.05 for a, b in itertools.pairwise(changes))


PROSE = "\n\n".join(f"Paragraph {i}: " + "more words " * 30 for i in range(30))


async def test_a_streamed_message_never_shows_what_goes_on_in_the_next(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    # A stream cannot take text back: near its end a message grows by whole paragraphs,
    # so none shows the beginning of the next one, even for a moment. (Appends every
    # 10 ms, about 50 characters apart: some would land between a cut and the limit.)
    slack = await make_slack(edit_interval_s=0.01)
    fake_model.script("prose", Reply(text=PROSE, chunks=400, chunk_delay=0.005))
    ts, _ = await slack.say("prose")
    replies = slack.replies(ts)
    assert [m.text for m in replies] == split_text(PROSE, 3_900) and len(replies) == 3
    for message in replies:
        assert all(message.text.startswith(shown) for shown in message.shown)
    edits = [
        c
        for c in slack.fake.calls
        if c.method == "chat.update" and c.args["channel"] == slack.channel
    ]
    assert edits == []  # nothing streamed had to be edited back
