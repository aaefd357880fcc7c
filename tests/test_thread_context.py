"""The agent knows the thread it is called into: the thread so far on first contact, what
was said since its last answer on later turns (once, without its own answers), who is
speaking; within a budget, and never another thread's words. The real Copilot CLI,
slack-bolt and discord.py against the fakes."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from bot.inbound import ThreadMessage
from bot.thread_context import SINCE, SO_FAR, UNREADABLE_NOTE, render
from tests.conftest import DiscordFactory, SlackFactory, start_bot, stop_bot
from tests.discord_harness import DiscordHarness
from tests.fake_discord import ADMIN_ID as GRACE
from tests.fake_discord import BOT_ID, TEXT_CHANNEL, USER_ID
from tests.fake_model import FakeModel, oriented, speakers, thread_contexts
from tests.fake_slack import FakeSlack, Scripted
from tests.slack_harness import SlackHarness

_STAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d UTC\] ")


def said(context: str | None) -> list[str]:
    """The messages of a context block, without their times."""
    assert context is not None
    return [_STAMP.sub("", line) for line in context.splitlines()[1:] if _STAMP.match(line)]


def replies_calls(slack: SlackHarness) -> int:
    return len(slack.fake.calls_to("conversations.replies"))


async def test_a_mention_in_a_slack_thread_brings_the_thread_so_far_with_names(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    slack = await make_slack()
    channel, fake = slack.channel, slack.fake
    # People discuss a failed deploy; nobody asks the bot (it hears nothing of it).
    root, _ = fake.user_message(channel, "deploy 42 failed on prod", user="U2")
    fake.user_message(channel, "rollback started", user="U3", thread_ts=root)
    log = fake.add_file("deploy.log", "text/plain", b"boom")
    fake.user_message(channel, "logs attached", user="U2", thread_ts=root, files=[log])
    # Another thread of the same channel.
    other, _ = fake.user_message(channel, "lunch at noon?", user="U3")
    fake.user_message(channel, "words of another thread", user="U2", thread_ts=other)

    asked, _ = await slack.say("what do you make of this?", thread_ts=root)

    request = fake_model.requests_with("what do you make of this?")[-1]
    (context,) = thread_contexts(request)
    assert context is not None and context.splitlines()[0] == SO_FAR
    assert said(context) == [
        "Grace <@U2>: deploy 42 failed on prod",
        "Alan <@U3>: rollback started",
        "Grace <@U2>: logs attached (files: deploy.log)",
    ]
    assert speakers(request) == ["Ada <@U1>"]
    assert oriented(request)  # the agent is told how to read all this
    assert "another thread" not in json.dumps(request) and "lunch" not in json.dumps(request)
    (read,) = fake.calls_to("conversations.replies")[-1:]
    assert (read.args["ts"], read.args["latest"]) == (root, asked)

    # The thread so far is told once: the next turn carries none of it again.
    await slack.say("and now?", thread_ts=root, mention=False)
    request = fake_model.requests_with("and now?")[-1]
    assert thread_contexts(request) == [context, None]


async def test_a_long_thread_is_read_page_by_page_and_cut_to_the_budget(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    slack = await make_slack(thread_context_chars=3000)
    fake = slack.fake
    root, _ = fake.user_message(slack.channel, "message 000", user="U2")
    for n in range(1, 250):
        fake.user_message(slack.channel, f"message {n:03d}", user="U3", thread_ts=root)
    calls = replies_calls(slack)

    await slack.say("sum it up", thread_ts=root)

    assert replies_calls(slack) == calls + 2  # 250 messages: two pages of 200
    (context,) = thread_contexts(fake_model.requests_with("sum it up")[-1])
    assert context is not None and len(f"<thread_context>\n{context}\n</thread_context>") <= 3000
    messages = said(context)
    assert messages[-1] == "Alan <@U3>: message 249"  # the newest are kept
    left_out = 250 - len(messages)
    assert 0 < left_out < 250
    assert f"({left_out} earlier messages left out to save space.)" in context.splitlines()


async def test_what_was_said_in_between_comes_once_without_the_bots_own_answers(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    slack = await make_slack(slack_require_mention=True)
    calls = replies_calls(slack)
    ts, _ = await slack.say("first question")
    assert replies_calls(slack) == calls  # a mention that starts a thread has nothing to read

    # A side remark: part of the thread, not for the bot.
    _, events = slack.fake.user_message(slack.channel, "side remark", user="U2", thread_ts=ts)
    await slack.fake.push("events_api", events[0])
    assert await slack.handled_as(events[0]["event_id"]) == "context"
    await slack.say("second question", thread_ts=ts)

    request = fake_model.requests_with("second question")[-1]
    contexts = thread_contexts(request)
    assert contexts[0] is None and contexts[1] is not None
    assert contexts[1].splitlines()[0] == SINCE
    assert said(contexts[1]) == ["Grace <@U2>: side remark"]  # not "echo: first question"
    assert replies_calls(slack) == calls + 1

    # Nothing said since: no read, and the remark is not told again.
    await slack.say("third question", thread_ts=ts)
    assert thread_contexts(fake_model.requests_with("third question")[-1]) == [*contexts, None]
    assert replies_calls(slack) == calls + 1

    # A remark right before a mention, both delivered at once: still told.
    _, events = slack.fake.user_message(slack.channel, "quick remark", user="U3", thread_ts=ts)
    await slack.fake.push("events_api", events[0])
    await slack.say("fourth question", thread_ts=ts)
    request = fake_model.requests_with("fourth question")[-1]
    assert said(thread_contexts(request)[-1]) == ["Alan <@U3>: quick remark"]


async def test_two_people_in_one_thread_are_told_apart(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    ts, _ = await slack.say("I think we should use Postgres")  # Ada, U1
    await slack.say("I disagree, SQLite is enough", thread_ts=ts, mention=False, user="U2")
    request = fake_model.requests_with("SQLite is enough")[-1]
    assert speakers(request) == ["Ada <@U1>", "Grace <@U2>"]


async def test_after_a_reset_nothing_said_before_it_reaches_the_agent(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    slack = await make_slack(slack_require_mention=True)
    ts, _ = await slack.say("old topic")
    for text in ("remark before the reset", "reset", "remark after the reset"):
        if text == "reset":
            await slack.say("reset", thread_ts=ts)
            continue
        _, events = slack.fake.user_message(slack.channel, text, user="U2", thread_ts=ts)
        await slack.fake.push("events_api", events[0])
        await slack.handled_as(events[0]["event_id"])
    await slack.say("new topic", thread_ts=ts)

    request = fake_model.requests_with("new topic")[-1]
    assert said(thread_contexts(request)[0]) == ["Grace <@U2>: remark after the reset"]
    assert "before the reset" not in json.dumps(request) and "old topic" not in json.dumps(request)


async def test_what_was_said_while_the_bot_was_down_reaches_it_after_a_restart(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    channel = f"C{uuid.uuid4().hex[:8].upper()}"

    async def answered(text: str, thread_ts: str | None = None) -> str:
        connections = fake_slack.connections
        process = await start_bot(tmp_path, fake_model, cli_path, **fake_slack.env)
        try:
            await fake_slack.wait_for(lambda: fake_slack.connections > connections)
            ts, events = fake_slack.user_message(channel, f"<@UBOT> {text}", thread_ts=thread_ts)
            for event in events:
                await fake_slack.push("events_api", event)
            await fake_slack.wait_for(
                lambda: (
                    f"echo: {text}" in [m.text for m in fake_slack.replies(channel, ts)]
                    or f"echo: {text}"
                    in [m.text for m in fake_slack.replies(channel, thread_ts or ts)]
                )
            )
        finally:
            assert "Traceback" not in await stop_bot(process)
        return ts

    root = await answered("before the outage")
    fake_slack.user_message(channel, "said while it was down", user="U3", thread_ts=root)
    await answered("back again?", thread_ts=root)

    request = fake_model.requests_with("back again?")[-1]
    assert said(thread_contexts(request)[-1]) == ["Alan <@U3>: said while it was down"]


async def test_a_mention_in_a_discord_thread_brings_its_history_and_starter(
    make_discord: DiscordFactory, fake_model: FakeModel
) -> None:
    bot = await make_discord()
    fake = bot.fake
    starter = fake.post(TEXT_CHANNEL, "the cache is stale again", author=GRACE)
    thread = await fake.open_thread(TEXT_CHANNEL, "stale cache", starter)
    fake.post(thread, "since the 3pm deploy", author=GRACE)
    fake.post(thread, "I can reproduce it", author=USER_ID)

    question = await fake.say(thread, f"<@{BOT_ID}> any idea why?")
    await bot.dispatched(question.id)

    request = fake_model.requests_with("any idea why?")[-1]
    (context,) = thread_contexts(request)
    assert said(context) == [
        f"grace <@{GRACE}>: the cache is stale again",
        f"grace <@{GRACE}>: since the 3pm deploy",
        f"ada <@{USER_ID}>: I can reproduce it",
    ]
    assert speakers(request) == [f"ada <@{USER_ID}>"]


async def test_ask_in_a_discord_thread_brings_what_was_said_there(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    thread = await fake.open_thread(TEXT_CHANNEL, "no starter", None)
    fake.post(thread, "is the VPN down for anyone else?", author=GRACE)
    ask = await discord_bot.use("ask", thread, {"prompt": "what is going on?"})

    request = fake_model.requests_with("what is going on?")[-1]
    assert said(thread_contexts(request)[0]) == [
        f"grace <@{GRACE}>: is the VPN down for anyone else?"
    ]
    assert speakers(request) == [f"ada <@{USER_ID}>"]
    assert fake.responses(ask)[0].content == "echo: what is going on?"


async def test_a_discord_mention_that_replies_brings_the_chain_it_answers(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    first = fake.post(TEXT_CHANNEL, "the build is red", author=GRACE)
    second = fake.post(TEXT_CHANNEL, "since the merge of #12", author=USER_ID, reply_to=first)
    fake.post(TEXT_CHANNEL, "unrelated chatter", author=GRACE)
    question = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> why is that?", reply_to=second)
    await discord_bot.dispatched(question.id)

    request = fake_model.requests_with("why is that?")[-1]
    assert said(thread_contexts(request)[0]) == [
        f"grace <@{GRACE}>: the build is red",
        f"ada <@{USER_ID}>: since the merge of #12",
    ]
    assert "unrelated" not in json.dumps(request)


def test_the_budget_keeps_the_newest_messages_and_says_how_many_were_left_out() -> None:
    messages = [
        ThreadMessage(str(n), "U2", "Grace", f"message {n} " + "x" * 80, 1_800_000_000.0 + n)
        for n in range(100)
    ]
    block = render(messages, SINCE, 2000)
    assert len(block) <= 2000
    assert block.splitlines()[-2].startswith("[2027-01-15 08:01 UTC] Grace <@U2>: message 99")
    kept = sum(1 for line in block.splitlines() if line.startswith("["))
    assert f"({100 - kept} earlier messages left out to save space.)" in block
    # A message longer than the whole budget: its beginning.
    (long,) = [ThreadMessage("1", "U2", "Grace", "y" * 10_000, 1_800_000_000.0)]
    assert len(render([long], SINCE, 1000)) <= 1000
    assert render([], SINCE, 1000) == "" and render(messages, SINCE, 0) == ""


async def test_a_thread_that_cannot_be_read_is_answered_without_it(
    slack: SlackHarness, fake_model: FakeModel
) -> None:
    root, _ = slack.fake.user_message(slack.channel, "earlier words", user="U2")
    slack.fake.script("conversations.replies", Scripted(error="not_in_channel"))
    await slack.say("can you still help?", thread_ts=root)

    assert slack.texts(root) == ["echo: can you still help?"]
    request = fake_model.requests_with("can you still help?")[-1]
    assert thread_contexts(request) == [UNREADABLE_NOTE]  # told, not left to guess
