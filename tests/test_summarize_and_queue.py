"""`summarize` in any thread (the bot need not be part of it, and does not become part of
it), and the sign on a message that waits behind another in its thread. The real Copilot
CLI, slack-bolt and discord.py against the fakes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.command_handlers import SUMMARIZE_PROMPT
from bot.thread_key import ThreadKey
from tests.discord_harness import DiscordHarness
from tests.fake_discord import ADMIN_ID, BOT_ID, TEXT_CHANNEL, USER_ID
from tests.fake_model import FakeModel, Reply, last_user_text, thread_contexts
from tests.slack_harness import SlackHarness

SUMMARY = "Decisions: ship on Friday. Open: legal review. Owes: Alan the release notes."


def transcript(fake_model: FakeModel) -> str:
    """The thread as the last summary request gave it to the model."""
    request = [r for r in fake_model.requests if SUMMARIZE_PROMPT in last_user_text(r)][-1]
    given = thread_contexts(request)[-1]
    assert given is not None
    return given


def scratch_sessions(home: Path, key: ThreadKey) -> list[Path]:
    """Summary sessions of a thread still in the runtime's state."""
    return [p for p in (home / "session-state").glob(f"{key.slug}-s*")]


async def test_the_slack_shortcut_summarizes_a_thread_the_bot_was_never_part_of(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    fake = slack.fake
    root, _ = fake.user_message(slack.channel, "release plan for v2?", user="U2")
    fake.user_message(slack.channel, "ship on Friday", user="U1", thread_ts=root)
    fake.user_message(slack.channel, "I'll write the release notes", user="U3", thread_ts=root)
    fake.user_message(slack.channel, "who talks to legal?", user="U2", thread_ts=root)
    fake_model.script(lambda body: SUMMARIZE_PROMPT in last_user_text(body), Reply(text=SUMMARY))

    payload = fake.shortcut(
        "summarize", slack.channel, next(m for m in fake.messages if m.ts == root)
    )
    await fake.push("interactive", payload)
    await slack.dispatched(f"summarize-{payload['trigger_id']}")

    assert slack.texts(root) == [SUMMARY]  # posted in the thread, for everyone
    given = transcript(fake_model)
    for line in (
        "Grace <@U2>: release plan for v2?",
        "Ada <@U1>: ship on Friday",
        "Alan <@U3>: I'll write the release notes",
        "Grace <@U2>: who talks to legal?",
    ):
        assert line in given
    key = ThreadKey("slack", "T01", slack.channel, root)
    assert await slack.app.store.thread(key) is None  # the bot did not join the thread
    assert scratch_sessions(slack.app.runtimes.home(key), key) == []  # nor kept a session

    # So people go on talking among themselves there, unanswered.
    _, events = fake.user_message(slack.channel, "thanks!", user="U2", thread_ts=root)
    await fake.push("events_api", events[0])
    assert await slack.handled_as(events[0]["event_id"]) is None
    assert slack.texts(root) == [SUMMARY]


async def test_summarize_as_a_mention_word_includes_the_bots_own_answers(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    ts, _ = await slack.say("what is a monad?")
    fake_model.script(lambda body: SUMMARIZE_PROMPT in last_user_text(body), Reply(text=SUMMARY))
    await slack.say("summarize", thread_ts=ts)

    assert slack.texts(ts) == ["echo: what is a monad?", SUMMARY]
    given = transcript(fake_model)
    assert "Ada <@U1>: <@UBOT> what is a monad?" in given and "you: echo: what is a monad?" in given
    # The summary went through a session of its own: the thread's does not know it.
    await slack.say("and a functor?", thread_ts=ts, mention=False)
    request = fake_model.requests_with("and a functor?")[-1]
    assert SUMMARIZE_PROMPT not in json.dumps(request)


async def test_the_discord_message_command_summarizes_a_thread(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    starter = fake.post(TEXT_CHANNEL, "incident: checkout is slow", author=ADMIN_ID)
    thread = await fake.open_thread(TEXT_CHANNEL, "checkout", starter)
    last = fake.post(thread, "db pool is exhausted, raising it", author=USER_ID)
    fake_model.script(lambda body: SUMMARIZE_PROMPT in last_user_text(body), Reply(text=SUMMARY))

    command = await discord_bot.use("Summarize this thread", thread, target=last)

    assert fake.responses(command)[0].content == SUMMARY
    given = transcript(fake_model)
    assert f"grace <@{ADMIN_ID}>: incident: checkout is slow" in given
    assert f"ada <@{USER_ID}>: db pool is exhausted, raising it" in given


async def test_summarize_outside_a_thread_says_where_it_works(slack: SlackHarness) -> None:
    body = slack.fake.slash_command("/threadpilot", "summarize", slack.channel)
    await slack.fake.push("slash_commands", body)
    await slack.dispatched(f"/threadpilot-{body['trigger_id']}")
    await slack.fake.wait_for(lambda: bool(slack.fake.ephemeral))
    assert re.search(r"`summarize` works on a thread", str(slack.fake.ephemeral[-1]))


async def test_a_slack_message_waiting_behind_another_shows_it_was_taken(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    gate = fake_model.hold("slow first")
    ts, first = await slack.say("slow first", wait=False)
    await fake_model.wait_for_request("slow first")
    second_ts, second = await slack.say("right behind", thread_ts=ts, mention=False, wait=False)
    waiting = ("add", second_ts, "hourglass_flowing_sand")
    await slack.fake.wait_for(lambda: waiting in slack.fake.reactions)
    gate.set()
    await slack.dispatched(second)

    assert slack.texts(ts) == ["echo: slow first", "echo: right behind"]
    taken_down = ("remove", second_ts, "hourglass_flowing_sand")
    assert slack.fake.reactions.index(taken_down) > slack.fake.reactions.index(waiting)
    assert ("add", ts, "hourglass_flowing_sand") not in slack.fake.reactions  # never waited
    await slack.dispatched(first)


async def test_a_discord_message_waiting_behind_another_shows_it_was_taken(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    gate = fake_model.hold("slow discord first")
    first = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> slow discord first")
    await fake_model.wait_for_request("slow discord first")
    thread = await discord_bot.thread_of(first)
    second = await fake.say(thread, "right behind it")
    await fake.wait_for(lambda: ("PUT", second.id, "⏳") in fake.reactions)
    gate.set()
    await discord_bot.dispatched(second.id)

    assert discord_bot.texts(thread) == ["echo: slow discord first", "echo: right behind it"]
    assert fake.reactions[-1] == ("DELETE", second.id, "⏳")
