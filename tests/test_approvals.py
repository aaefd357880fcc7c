"""Approvals in the thread (bot/approvals.py): the real runtime asks permission for what the
fake model requests, the card reaches the fake Slack or Discord, people press its buttons
(Slack `block_actions`, Discord component interactions) and the agent gets the decision."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import sqlite3
from pathlib import Path
from textwrap import dedent
from typing import Any

from bot.inbound import Decision
from tests.conftest import reap, start_bot, stop_bot
from tests.discord_harness import DiscordHarness
from tests.fake_discord import ADMIN_ID, BOT_ID, TEXT_CHANNEL, THIRD_ID
from tests.fake_discord import Message as DiscordMessage
from tests.fake_model import FakeModel, Reply, ToolCall
from tests.fake_slack import FakeSlack, Message
from tests.slack_harness import SlackHarness
from tests.test_replicas import say
from tests.test_security import chat_with_tools


def profiles_file(tmp_path: Path, **extra: str) -> tuple[Path, Path]:
    """A profiles file letting the agent create files in a checkout only with approval;
    the file and the checkout."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    lines = "".join(f"  {name}: {value}\n" for name, value in extra.items())
    path = tmp_path / "profiles.yaml"
    path.write_text(
        dedent(f"""
        default:
          ask: [create]
          working_directory: {repo}
          writable: true
          approvers: [slack:ULEAD, discord:{ADMIN_ID}]
        """).lstrip()
        + lines
    )
    return path, repo


def creating(fake_model: FakeModel, marker: str, path: Path, times: int = 1) -> None:
    """The model answers `marker` by creating `path`."""
    call = ToolCall("create", {"path": str(path), "file_text": f"made for {marker}"})
    fake_model.script(marker, Reply(tool_calls=[call]), times=times)


def tool_result(fake_model: FakeModel, marker: str) -> str:
    follow_up = fake_model.requests_with(marker)[-1]
    return " ".join(str(m["content"]) for m in follow_up["messages"] if m["role"] == "tool")


def open_card(fake: FakeSlack, channel: str, thread_ts: str) -> Message | None:
    for message in fake.replies(channel, thread_ts):
        if any(block["type"] == "actions" for block in message.blocks):
            return message
    return None


def outcome(card: Message) -> str:
    return " ".join(
        element["text"]
        for block in card.blocks
        if block["type"] == "context"
        for element in block["elements"]
    )


async def card_in(slack: SlackHarness, thread_ts: str) -> Message:
    card: Message = await slack.fake.wait_for(
        lambda: open_card(slack.fake, slack.channel, thread_ts)
    )
    return card


async def press(fake: FakeSlack, card: Message, choice: str, user: str) -> str:
    """Press a button of the card; the response URL of the press."""
    payload = fake.block_action(card, f"approval_{choice}", user)
    envelope = await fake.push("interactive", payload)
    async with asyncio.timeout(30):
        await envelope.acked.wait()
    return str(payload["response_url"])


async def told(fake: FakeSlack, response_url: str) -> str:
    """What the person who pressed was told, only them."""
    said = await fake.wait_for(
        lambda: [e["text"] for e in fake.ephemeral if e.get("response_url") == response_url]
    )
    return str(said[0])


async def decisions(slack: SlackHarness) -> list[tuple[str, str | None, str]]:
    """The audit log: (state, decided by, tool) of every approval, oldest first."""
    rows = await slack.app.store.run(
        lambda conn: conn.execute(
            "SELECT state, decided_by, tool FROM approvals ORDER BY asked_at"
        ).fetchall()
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def test_approve_once_then_for_the_thread_on_slack(
    make_slack: Any, fake_model: FakeModel, tmp_path: Path
) -> None:
    path, repo = profiles_file(tmp_path)
    slack: SlackHarness = await make_slack(profiles=path)
    creating(fake_model, "ap first", repo / "first.txt")
    ts, first = await slack.say("ap first", wait=False)

    card = await card_in(slack, ts)
    assert not (repo / "first.txt").exists()  # not before someone approves
    assert "I want to write to `first.txt` (for <@U1>)" in card.text
    assert "made for ap first" in json.dumps(card.blocks)  # the diff is shown
    await press(slack.fake, card, "once", "U1")  # the person who asked
    await slack.dispatched(first)

    assert (repo / "first.txt").read_text() == "made for ap first"
    assert "Approved once by <@U1>" in outcome(card)
    assert not any(b["type"] == "actions" for b in card.blocks)  # no more buttons

    # Once is once: the next file is asked for again; for the thread, then never again.
    creating(fake_model, "ap second", repo / "second.txt")
    _, second = await slack.say("ap second", thread_ts=ts, mention=False, wait=False)
    card = await card_in(slack, ts)
    await press(slack.fake, card, "thread", "ULEAD")  # an approver of the profile
    await slack.dispatched(second)
    assert "Approved for this thread by <@ULEAD>" in outcome(card)
    assert (repo / "second.txt").exists()

    creating(fake_model, "ap third", repo / "third.txt")
    await slack.say("ap third", thread_ts=ts, mention=False)
    assert (repo / "third.txt").exists()
    assert open_card(slack.fake, slack.channel, ts) is None
    assert await decisions(slack) == [
        ("once", "slack:U1", "edit"),
        ("thread", "slack:ULEAD", "edit"),
    ]


async def test_deny_and_someone_elses_press_on_slack(
    make_slack: Any, fake_model: FakeModel, tmp_path: Path
) -> None:
    path, repo = profiles_file(tmp_path)
    slack: SlackHarness = await make_slack(profiles=path)
    creating(fake_model, "dn please", repo / "denied.txt")
    ts, asked = await slack.say("dn please", wait=False)
    card = await card_in(slack, ts)
    stale = copy.deepcopy(card)  # as a client that has not refreshed still shows it

    pressed = await press(slack.fake, card, "once", "U3")  # neither asker nor approver
    assert "Not yours to approve" in await told(slack.fake, pressed)
    assert outcome(card) == "" and open_card(slack.fake, slack.channel, ts) is card

    await press(slack.fake, card, "deny", "U1")
    await slack.dispatched(asked)
    assert not (repo / "denied.txt").exists()
    assert "Denied by <@U1>" in outcome(card)
    assert "Denied by a person in the thread" in tool_result(fake_model, "dn please")
    assert await decisions(slack) == [("denied", "slack:U1", "edit")]

    pressed = await press(slack.fake, stale, "once", "U1")  # too late: it stays denied
    assert "decided already" in await told(slack.fake, pressed)
    assert await decisions(slack) == [("denied", "slack:U1", "edit")]


async def test_an_unanswered_request_is_denied_when_it_times_out(
    make_slack: Any, fake_model: FakeModel, tmp_path: Path
) -> None:
    path, repo = profiles_file(tmp_path, approval_timeout_s="1")
    slack: SlackHarness = await make_slack(profiles=path)
    creating(fake_model, "to wait", repo / "late.txt")
    ts, asked = await slack.say("to wait", wait=False)
    card = await card_in(slack, ts)
    await slack.dispatched(asked)  # the turn ends without anyone pressing

    assert "Nobody answered" in outcome(card) and not (repo / "late.txt").exists()
    assert "Nobody approved this in time" in tool_result(fake_model, "to wait")
    # The agent went on and answered (in a message before or after the card's).
    assert [text for text in slack.texts(ts) if text.endswith("echo: to wait")]
    assert await decisions(slack) == [("timed_out", None, "edit")]


async def test_approve_once_and_not_yours_on_discord(
    make_discord: Any, fake_model: FakeModel, tmp_path: Path
) -> None:
    path, repo = profiles_file(tmp_path)
    discord_bot: DiscordHarness = await make_discord(profiles=path)
    fake = discord_bot.fake
    creating(fake_model, "dc make it", repo / "discord.txt")
    question = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> dc make it")

    def card() -> DiscordMessage | None:
        return next((m for m in fake.messages.values() if m.components), None)

    shown: DiscordMessage = await fake.wait_for(card)
    assert "I want to write to `discord.txt`" in shown.content
    once = next(
        item["custom_id"]
        for row in shown.components
        for item in row["components"]
        if item["custom_id"].startswith("approval:once:")
    )
    stranger = await fake.press(shown, once, author=THIRD_ID)
    await fake.wait_for(lambda: stranger.callbacks)
    (kind, _, data) = stranger.callbacks[0]
    assert kind == 4 and data["flags"] & 64 and "Not yours to approve" in data["content"]

    await fake.press(shown, once, author=ADMIN_ID)
    await discord_bot.dispatched(question.id)
    assert (repo / "discord.txt").exists()
    assert f"Approved once by <@{ADMIN_ID}>" in shown.content and not shown.components


async def test_a_card_left_open_by_a_restart_is_marked_expired(
    tmp_path: Path, fake_model: FakeModel, fake_slack: FakeSlack, cli_path: Path
) -> None:
    path, repo = profiles_file(tmp_path, approval_timeout_s="250")
    env = {**fake_slack.env, "THREADPILOT_DATA_DIR": str(tmp_path / "data"),
           "THREADPILOT_PROFILES": str(path)}  # fmt: skip
    before = fake_slack.open_connections
    process = await start_bot(tmp_path, fake_model, cli_path, **env)
    await fake_slack.wait_for(lambda: fake_slack.open_connections > before)
    creating(fake_model, "rs restart", repo / "never.txt")
    channel = "CRESTART"
    ts, _ = await say(fake_slack, channel, "rs restart")
    card: Message = await fake_slack.wait_for(lambda: open_card(fake_slack, channel, ts))
    stale = copy.deepcopy(card)  # as a client that has not refreshed still shows it
    process.send_signal(signal.SIGKILL)
    await reap(process)

    again = await start_bot(tmp_path, fake_model, cli_path, **env)
    errors = ""
    try:
        # It tells the thread its answer was cut short, after marking the card expired;
        # should it have died before it noted where its card was, pressing it does.
        await fake_slack.wait_for(
            lambda: any("I was restarted" in m.text for m in fake_slack.replies(channel, ts))
        )
        pressed = await press(fake_slack, stale, "once", f"U{channel}")
        assert "decided already" in await told(fake_slack, pressed)
        await fake_slack.wait_for(lambda: "Expired" in outcome(card))
        assert not any(b["type"] == "actions" for b in card.blocks)
        assert not (repo / "never.txt").exists()
        with sqlite3.connect(tmp_path / "data" / "threadpilot.db") as db:
            assert db.execute("SELECT state FROM approvals").fetchall() == [("expired",)]
    finally:
        errors = await stop_bot(again)
    assert "Traceback" not in errors, errors


async def test_a_command_runs_only_once_approved_and_then_in_the_sandbox(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path
) -> None:
    path, repo = profiles_file(tmp_path)
    path.write_text(path.read_text().replace("ask: [create]", "tools: []\n  ask: [bash]"))
    # bash in the settings too: the sandbox is found at start.
    async with chat_with_tools(tmp_path, fake_model, cli_path, tools=("bash",),
                               profiles=path) as chat:  # fmt: skip
        key = chat.key("sh")
        command = "echo approved > made.txt; cat /proc/1/environ | tr '\\0' ' '"
        fake_model.script("sh run it", Reply(tool_calls=[ToolCall("bash", {"command": command})]))
        asking = asyncio.create_task(chat.say(key, "sh run it"))
        posted = chat.platform.sink(key)
        async with asyncio.timeout(30):
            await posted.card_shown.wait()
        (card,) = posted.cards.values()
        assert card.action == "run a command" and card.detail == command
        assert not (repo / "made.txt").exists()

        decided = await chat.app.router.decide(Decision(card.approval_id, "slack", "U1", "once"))
        assert decided.private is None and decided.card is not None
        assert decided.card.outcome is not None and "Approved once by <@U1>" in decided.card.outcome
        await asking
        assert (repo / "made.txt").read_text() == "approved\n"
        result = tool_result(fake_model, "sh run it")
        assert "test-provider-key" not in result  # still the sandbox's own environment
