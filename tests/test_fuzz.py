"""Fuzz: hundreds of random and malformed deliveries through the real slack-bolt and
discord.py clients (Socket Mode envelopes from the fake Slack, gateway dispatches from the
fake Discord), then a normal question. Nothing may crash or log an error, nothing shown to
people may be a traceback, and the bot must still answer afterwards.

Hypothesis runs in a worker thread and hands each example to the event loop the bot runs
on: the adapters live across all examples, so damage done by one input shows in the next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.app import App
from bot.inbound import Inbound
from bot.replies import ReplySink
from tests.discord_harness import DiscordHarness
from tests.fake_discord import (
    ADMIN_ID,
    BOT_ID,
    GUILD_ID,
    PEOPLE,
    TEXT_CHANNEL,
    USER_ID,
    FakeDiscord,
    snowflake,
    user,
)
from tests.fake_discord import Message as DiscordMessage
from tests.fake_slack import BOT_USER, TEAM
from tests.slack_harness import SlackHarness

EXAMPLES = 150  # per platform
EXAMPLE_TIMEOUT_S = 20
COMMANDS = ("ask", "reset", "branch", "restore", "status", "help")  # Discord's slash commands
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same inputs every run: a failure is reproducible
    database=None,
    # No shrinking: after a crash the client may be gone, and every smaller try would wait
    # out its timeout; the failing input is reported as it was.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
# What a person must never see: Python's own words for a failure.
LEAK = re.compile(r"Traceback|File \"|Error\(|Exception\(|KeyError|TypeError|AttributeError")

# --- values ---------------------------------------------------------------------------

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
texts = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["reset", "branch", "restore", "status", "help", "/reset", "/branch x"]),
    st.builds(lambda: "x" * 45_000),  # over the bot's 40,000-character limit
    st.just("\u202e\u0000\ufeff🧵" * 50),
)


# --- Slack ----------------------------------------------------------------------------


def slack_deliveries(harness: SlackHarness) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Envelopes (kind, payload): events with any field missing or of the wrong type,
    slash commands and shortcuts with odd values and missing optional fields."""
    fake = harness.fake
    ts = st.one_of(
        st.builds(fake.new_ts), st.sampled_from(["", "abc", "1.2.3", "-1", "9" * 40]), junk
    )
    files = st.lists(
        st.one_of(
            junk,
            st.fixed_dictionaries(
                {},
                optional={
                    "id": st.text(max_size=8),
                    "name": st.one_of(st.text(max_size=40), junk),
                    "title": junk,
                    "mimetype": st.one_of(
                        st.sampled_from(["text/plain", "image/png", "application/zip", ""]), junk
                    ),
                    "size": st.one_of(st.integers(min_value=-(2**40), max_value=2**40), junk),
                    # A file that downloads (see Discord's attachments), or no usable URL.
                    "url_private_download": st.one_of(
                        st.builds(
                            lambda data: fake.add_file("f", "text/plain", data)[
                                "url_private_download"
                            ],
                            st.binary(max_size=64),
                        ),
                        junk.filter(lambda value: not isinstance(value, str) or not value),
                    ),
                    "mode": st.sampled_from(["hidden_by_limit", "tombstone", "hosted"]),
                },
            ),
        ),
        max_size=3,
    )
    # Bolt reads user, channel and team itself, as strings or objects: other types crash
    # it before any listener runs (and Slack never sends them).
    odd_id = st.one_of(
        st.none(), st.text(max_size=12), st.dictionaries(st.text(max_size=4), st.integers())
    )
    message_text = st.one_of(texts, st.builds(lambda t: f"<@{BOT_USER}> {t}", texts), junk)
    event = st.fixed_dictionaries(
        {"type": st.sampled_from(["app_mention", "message"])},
        optional={
            "user": st.one_of(st.sampled_from(["U1", BOT_USER, "UADMIN"]), odd_id),
            "text": message_text,
            "ts": ts,
            "thread_ts": ts,
            "channel": st.one_of(st.sampled_from([harness.channel, harness.dm]), odd_id),
            "channel_type": st.one_of(st.sampled_from(["im", "channel", "group", "mpim"]), junk),
            "subtype": st.one_of(
                st.sampled_from(["file_share", "thread_broadcast", "bot_message", "me_message"]),
                junk,
            ),
            "files": st.one_of(files, junk),
            "blocks": st.one_of(st.lists(junk, max_size=2), junk),
            "bot_id": junk,
            "team": st.one_of(st.just(TEAM), odd_id),
        },
    )
    events = st.builds(
        lambda e, body: {**fake.event_callback(e), **body},
        event,
        st.fixed_dictionaries({}, optional={"team_id": junk, "event_id": st.text(max_size=10)}),
    )
    command_text = st.one_of(st.text(max_size=100), st.sampled_from(["status", "help", "nope"]))
    slash = st.builds(
        lambda command, text, user, drop: {
            k: v
            for k, v in fake.slash_command(command, text, harness.channel, user).items()
            if k not in drop
        },
        st.sampled_from(["/reset", "/branch", "/threadpilot", "/unknown"]),
        command_text,
        st.sampled_from(["U1", "UADMIN", "U\u00e9\u00e9"]),
        st.sets(st.sampled_from(["text", "api_app_id"])),
    )
    shortcut_message = st.fixed_dictionaries(
        {"type": st.just("message"), "ts": st.one_of(st.builds(fake.new_ts), st.text(max_size=9))},
        optional={"thread_ts": st.builds(fake.new_ts), "text": st.text(max_size=50)},
    )
    shortcut = st.builds(
        fake.message_action,
        st.sampled_from(["reset", "branch", "unknown_shortcut"]),
        st.sampled_from([harness.channel, harness.dm, "C\u00e9"]),
        shortcut_message,
    )
    return st.one_of(
        st.tuples(st.just("events_api"), events),
        st.tuples(st.just("slash_commands"), slash),
        st.tuples(st.just("interactive"), shortcut),
    )


# --- Discord --------------------------------------------------------------------------


def discord_deliveries(
    bot: DiscordHarness, thread: str, stale_commands: bool = False
) -> st.SearchStrategy[Any]:
    """Gateway dispatches: interactions with unknown names, missing or mistyped options,
    unknown channels and guilds; messages with odd content, types and attachments."""
    fake = bot.fake
    dm = fake.dm_channel()
    channel_id = st.one_of(
        st.sampled_from([TEXT_CHANNEL, thread, dm]), st.builds(snowflake), st.just("0")
    )
    if stale_commands:
        # As an out-of-date command registration sends them: unknown names, and options
        # missing, extra or of another type.
        # Discord checks a value against the type it has registered, so the two agree.
        typed_value = st.one_of(
            st.tuples(st.just(3), st.text(max_size=200)),  # string
            st.tuples(st.just(4), st.integers(-(2**53), 2**53)),  # integer
            st.tuples(st.just(5), st.booleans()),  # boolean
            st.tuples(st.just(10), st.floats(allow_nan=False, allow_infinity=False)),  # number
        )
        option = st.builds(
            lambda name, typed: {"name": name, "type": typed[0], "value": typed[1]},
            st.one_of(st.just("prompt"), st.text(min_size=1, max_size=10)),
            typed_value,
        )
        command = st.tuples(
            st.one_of(st.sampled_from(COMMANDS), st.text(min_size=1, max_size=32)),
            st.one_of(st.none(), st.lists(option, max_size=3)),
        )
    else:
        command = st.one_of(
            st.tuples(
                st.just("ask"),
                st.builds(lambda t: [{"name": "prompt", "type": 3, "value": t}], texts),
            ),
            st.tuples(st.sampled_from(COMMANDS[1:]), st.none()),
        )
    interaction = st.builds(
        _interaction_payload,
        fake=st.just(fake),
        command=command,
        channel_id=channel_id,
        author=st.just(USER_ID),
        guild=st.sampled_from([GUILD_ID, "", "unknown"]),  # "": as channel; else another
        # Discord always sends the channel object; only an odd payload leaves it out.
        with_channel=st.booleans() if stale_commands else st.just(True),
    )

    # Files with any name, declared size and type; some gone before the bot downloads them.
    def attachment_of(
        name: str, data: bytes, content_type: str | None, size: int | None, gone: bool
    ) -> dict[str, Any]:
        listed = fake.attachment("file", content_type or "", data)
        if gone:
            fake.delete_attachment(listed["id"])
        return {
            **listed,
            "filename": name,
            **({} if content_type is not None else {"content_type": None}),
            **({} if size is None else {"size": size}),
        }

    attachment = st.builds(
        attachment_of,
        st.text(max_size=40),
        st.binary(max_size=64),
        st.one_of(
            st.none(), st.sampled_from(["text/plain", "image/png", "text/plain; charset=x", ""])
        ),
        st.one_of(st.none(), st.integers(min_value=-(2**31), max_value=2**40)),
        st.booleans(),
    )
    content = st.one_of(
        texts,
        st.builds(lambda t: f"<@{BOT_ID}> {t}", texts),
        st.builds(lambda t: f"<@!{BOT_ID}>{t}", texts),
    )
    message = st.builds(
        _message_payload,
        fake=st.just(fake),
        channel_id=st.sampled_from([TEXT_CHANNEL, thread, dm, snowflake()]),
        content=content,
        author=st.sampled_from([USER_ID, BOT_ID, "12345"]),
        attachments=st.lists(attachment, max_size=2),
        kind=st.sampled_from([0, 7, 19, 20, 46]),  # default, join, reply, command, poll result
        extra=st.fixed_dictionaries(
            {},
            optional={
                "webhook_id": st.builds(snowflake),
                "mention_everyone": st.booleans(),
                "flags": st.integers(0, 2**16),
                "nonce": st.one_of(st.text(max_size=10), st.integers(0, 2**53)),
            },
        ),
    )
    return st.one_of(
        st.tuples(st.just("INTERACTION_CREATE"), interaction),
        st.tuples(st.just("MESSAGE_CREATE"), message),
    )


def _interaction_payload(
    *,
    fake: FakeDiscord,
    command: tuple[str, list[dict[str, Any]] | None],
    channel_id: str,
    author: str,
    guild: str,
    with_channel: bool,
) -> dict[str, Any]:
    name, options = command
    data: dict[str, Any] = {"id": snowflake(), "name": name, "type": 1}
    if options is not None:
        data["options"] = options
    known = fake.channels.get(channel_id)
    guild_id = (known or {}).get("guild_id") if guild == "" else guild
    if guild_id == "unknown":
        guild_id = snowflake()
    channel = known or (
        {**fake.channels[TEXT_CHANNEL], "id": channel_id, "guild_id": guild_id}
        if guild_id
        else {"id": channel_id, "type": 1, "recipients": [PEOPLE[author]]}
    )
    _, payload = fake.interaction(
        data, channel_id, author, guild_id=guild_id, channel=channel if with_channel else None
    )
    return payload


def _message_payload(
    *,
    fake: FakeDiscord,
    channel_id: str,
    content: str,
    author: str,
    attachments: list[dict[str, Any]],
    kind: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    who = PEOPLE.get(author) or user(author, "someone", bot=author == BOT_ID)
    message = DiscordMessage(snowflake(), channel_id, who, content, attachments)
    fake.messages[message.id] = message
    payload = message.payload(fake.channels.get(channel_id, {}).get("guild_id"))
    return {**payload, "type": kind, **extra}


# --- running the fuzz -----------------------------------------------------------------


class InFlight:
    """Counts the core's dispatches under way, so an example can wait for the last one."""

    def __init__(self, app: App) -> None:
        self._count = 0
        self.total = 0  # dispatches so far
        self._idle = asyncio.Condition()
        dispatch = app.router.dispatch

        async def counted(inbound: Inbound, sink: ReplySink) -> None:
            self._count += 1
            self.total += 1
            try:
                await dispatch(inbound, sink)
            finally:
                async with self._idle:
                    self._count -= 1
                    self._idle.notify_all()

        app.router.dispatch = counted  # type: ignore[method-assign]

    async def settled(self) -> None:
        async with asyncio.timeout(60), self._idle:
            await self._idle.wait_for(lambda: self._count == 0)


class Problems:
    """Error log records and unhandled exceptions (the loop's handler) since `mark()`."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog
        self._seen = 0
        self.unhandled: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _, context: self.unhandled.append(context))

    def restore(self) -> None:
        asyncio.get_running_loop().set_exception_handler(self._previous)

    def new(self) -> list[str]:
        records = self._caplog.records[self._seen :]
        self._seen = len(self._caplog.records)
        found = [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR]
        found += [
            f"{context.get('message')}: {context.get('exception')!r}" for context in self.unhandled
        ]
        self.unhandled.clear()
        return found


def fuzz_in_a_thread(
    loop: asyncio.AbstractEventLoop,
    strategy: st.SearchStrategy[Any],
    one: Callable[[Any], Coroutine[Any, Any, None]],
) -> Callable[[], Awaitable[None]]:
    """Run hypothesis off the loop; each example is awaited on the loop the bot runs on."""

    @FUZZ
    @given(strategy)
    def run(example: Any) -> None:
        asyncio.run_coroutine_threadsafe(one(example), loop).result(timeout=EXAMPLE_TIMEOUT_S)

    return lambda: asyncio.to_thread(run)


async def test_fuzzed_slack_deliveries_crash_nothing_and_the_bot_still_answers(
    slack: SlackHarness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    problems = Problems(caplog)
    in_flight = InFlight(slack.app)
    fake = slack.fake
    shown = len(fake.messages), len(fake.ephemeral)

    async def one(delivery: tuple[str, dict[str, Any]]) -> None:
        kind, payload = delivery
        json.dumps(payload)  # what the fake sends must be JSON, as Slack's is
        await fake.push(kind, payload)
        # A delivery taken after it, answered: the fuzzed one has been through Bolt too.
        marker = fake.slash_command("/threadpilot", "help", slack.channel)
        await fake.push("slash_commands", marker)
        await slack.dispatched(f"/threadpilot-{marker['trigger_id']}")
        await in_flight.settled()
        (helped,) = [e for e in fake.ephemeral if e.get("response_url") == marker["response_url"]]
        assert "reset - forget" in helped["text"]
        assert problems.new() == []

    try:
        await fuzz_in_a_thread(asyncio.get_running_loop(), slack_deliveries(slack), one)()
    finally:
        problems.restore()

    # Asked by someone the fuzz did not rate-limit.
    ts, _ = await slack.say("still there after the fuzz?", user="U2")
    assert slack.texts(ts) == ["echo: still there after the fuzz?"]
    seen = [m.text for m in fake.messages[shown[0] :] if m.user == BOT_USER]
    seen += [str(e.get("text")) for e in fake.ephemeral[shown[1] :]]
    assert len(seen) > EXAMPLES  # the markers' answers at least: the fuzz did run
    assert in_flight.total - EXAMPLES > EXAMPLES // 5  # and many inputs reached the core
    assert [text for text in seen if LEAK.search(text)] == []
    assert problems.new() == []


async def fuzz_discord(
    bot: DiscordHarness, caplog: pytest.LogCaptureFixture, stale_commands: bool
) -> None:
    caplog.set_level(logging.WARNING)
    problems = Problems(caplog)
    in_flight = InFlight(bot.app)
    fake = bot.fake
    start = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> a thread for the fuzz")
    await bot.dispatched(start.id)
    thread = await bot.thread_of(start)
    marker_channel = fake.dm_channel()
    shown = len(fake.messages)

    async def one(delivery: tuple[str, dict[str, Any]]) -> None:
        name, payload = delivery
        await fake.dispatch(name, payload)
        # A command taken after it, answered: the fuzzed one has been through the client.
        marker = await fake.command("help", marker_channel)
        await bot.dispatched(marker.id)
        await in_flight.settled()
        assert "restore - undo" in fake.responses(marker)[0].content
        if name == "INTERACTION_CREATE":  # never "The application did not respond"
            assert fake.interactions[payload["token"]].callbacks, payload["data"]
        assert problems.new() == []

    try:
        await fuzz_in_a_thread(
            asyncio.get_running_loop(), discord_deliveries(bot, thread, stale_commands), one
        )()
    finally:
        problems.restore()

    # Asked by someone the fuzz did not rate-limit (the fuzz asks as one person).
    dm = fake.dm_channel(ADMIN_ID)
    after = await fake.say(dm, "still there after the fuzz?", author=ADMIN_ID)
    await bot.dispatched(after.id)
    assert bot.texts(dm) == ["echo: still there after the fuzz?"]
    seen = [m.content for m in list(fake.messages.values())[shown:] if m.author["id"] == BOT_ID]
    assert len(seen) > EXAMPLES
    assert in_flight.total - EXAMPLES > EXAMPLES // 5
    assert [text for text in seen if LEAK.search(text)] == []
    assert problems.new() == []


async def test_fuzzed_discord_dispatches_crash_nothing_and_the_bot_still_answers(
    discord_bot: DiscordHarness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fuzz_discord(discord_bot, caplog, stale_commands=False)


async def test_fuzzed_out_of_date_discord_commands_get_a_clear_answer(
    discord_bot: DiscordHarness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fuzz_discord(discord_bot, caplog, stale_commands=True)
