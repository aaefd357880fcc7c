"""The Discord adapter: the real discord.py client against the fake Discord (REST and
gateway), the real Copilot CLI against the fake model."""

from __future__ import annotations

import asyncio
import logging
import zlib
from pathlib import Path

import discord
import pytest

from adapters.discord import DiscordAdapter
from adapters.text import split_text
from bot.commands import COMMANDS
from tests.conftest import AppFactory, DiscordFactory, refused_start, start_bot, stop_bot
from tests.discord_harness import DiscordHarness
from tests.fake_discord import (
    ADMIN_ID,
    BOT_ID,
    GUILD_ID,
    MESSAGE_CONTENT_INTENT,
    TEXT_CHANNEL,
    TOKEN,
    FakeDiscord,
    Message,
)
from tests.fake_model import FakeModel, Reply, thread_contexts, user_texts


async def test_ask_in_a_channel_starts_a_thread_and_streams_the_answer(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    fake_model.script("what is a thread", Reply(text="A thread is a conversation.", chunks=5))
    interaction = await discord_bot.use("ask", TEXT_CHANNEL, {"prompt": "what is a thread"})

    kind, at, _ = interaction.callbacks[0]
    assert kind == 5 and at - interaction.created < 3  # deferred in time
    (thread,) = [t for t in fake.threads_of(TEXT_CHANNEL) if t["name"] == "what is a thread"]
    (response,) = fake.responses(interaction)  # the question, and its thread hangs off it
    assert response.content == "**ada** asked: what is a thread"
    assert thread["id"] == response.id
    assert discord_bot.texts(thread["id"])[-1] == "A thread is a conversation."
    # The command catalogue, synced to the configured guild: a slash command each, and a
    # message command for each message action.
    synced = {(c["name"], c.get("type", 1)) for c in fake.synced[GUILD_ID]}
    assert synced == {
        ("ask", 1),
        *((c.name, 1) for c in COMMANDS),
        *((c.shortcut, 3) for c in COMMANDS if c.shortcut),
    }


async def test_follow_ups_in_the_thread_continue_the_conversation(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    await discord_bot.use("ask", TEXT_CHANNEL, {"prompt": "remember 7 apples"})
    thread = fake.threads_of(TEXT_CHANNEL)[-1]["id"]

    follow_up = await fake.say(thread, "how many apples?")  # no mention needed
    await discord_bot.dispatched(follow_up.id)
    assert discord_bot.texts(thread)[-1] == "echo: how many apples?"
    assert user_texts(fake_model.requests_with("how many apples?")[-1]) == [
        "remember 7 apples",
        "how many apples?",
    ]

    again = await fake.command("ask", thread, {"prompt": "and pears?"})  # /ask in the thread
    await discord_bot.dispatched(again.id)
    assert fake.responses(again)[0].content == "echo: and pears?"
    assert len(user_texts(fake_model.requests_with("and pears?")[-1])) == 3


async def test_a_mention_in_a_channel_starts_a_thread_from_that_message(
    discord_bot: DiscordHarness,
) -> None:
    fake = discord_bot.fake
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> explain threads please")
    await discord_bot.dispatched(message.id)
    thread = await discord_bot.thread_of(message)
    assert fake.channels[thread]["name"] == "explain threads please"
    assert discord_bot.texts(thread) == ["echo: explain threads please"]

    other_bot = await fake.say(thread, "beep boop", author="999")
    assert await discord_bot.handled_as(other_bot) == "context"  # read, never answered
    assert discord_bot.texts(thread) == ["echo: explain threads please"]


async def test_reset_branch_and_restore_as_slash_commands(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    await discord_bot.use("ask", TEXT_CHANNEL, {"prompt": "topic: rivers"})
    thread = fake.threads_of(TEXT_CHANNEL)[-1]["id"]

    branch = await discord_bot.use("branch", thread)
    (answer,) = fake.responses(branch)
    branched = fake.threads_of(TEXT_CHANNEL)[-1]["id"]
    assert answer.content.startswith(f"Branched into <#{branched}>")
    assert f"a branch of <#{thread}>" in fake.in_channel(TEXT_CHANNEL)[-1].content
    for where, text in ((branched, "in the branch"), (thread, "in the trunk")):
        message = await fake.say(where, text)
        await discord_bot.dispatched(message.id)
        assert user_texts(fake_model.requests_with(text)[-1]) == ["topic: rivers", text]

    reset = await discord_bot.use("reset", thread)
    assert "Started afresh" in fake.responses(reset)[0].content
    fresh = await fake.say(thread, "what topic?")
    await discord_bot.dispatched(fresh.id)
    assert user_texts(fake_model.requests_with("what topic?")[-1]) == ["what topic?"]

    restore = await discord_bot.use("restore", thread)
    assert "Restored" in fake.responses(restore)[0].content
    back = await fake.say(thread, "the topic again?")
    await discord_bot.dispatched(back.id)
    assert user_texts(fake_model.requests_with("the topic again?")[-1])[0] == "topic: rivers"


async def test_branch_from_here_excludes_later_turns(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    first = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> step one")
    await discord_bot.dispatched(first.id)
    thread = await discord_bot.thread_of(first)
    for text in ("step two", "step three"):
        message = await fake.say(thread, text)
        await discord_bot.dispatched(message.id)

    answer_to_one = fake.by_bot(thread)[0]
    await discord_bot.use("Branch from here", thread, target=answer_to_one)
    branched = fake.threads_of(TEXT_CHANNEL)[-1]["id"]
    question = await fake.say(branched, "what came after step one?")
    await discord_bot.dispatched(question.id)
    assert user_texts(fake_model.requests_with("what came after step one?")[-1]) == [
        "step one",
        "what came after step one?",
    ]


async def test_status_is_for_admins_and_private(discord_bot: DiscordHarness) -> None:
    fake = discord_bot.fake
    refused = await discord_bot.use("status", TEXT_CHANNEL)
    (reply,) = fake.responses(refused)
    assert reply.ephemeral and "for admins only" in reply.content

    shown = await discord_bot.use("status", TEXT_CHANNEL, author=ADMIN_ID)
    (status,) = fake.responses(shown)
    assert status.ephemeral and status.content.startswith("threadpilot status")

    helped = await discord_bot.use("help", TEXT_CHANNEL)
    assert "restore - undo" in fake.responses(helped)[0].content

    outside = await fake.command("reset", TEXT_CHANNEL)  # not in a thread
    await discord_bot.dispatched(outside.id)
    (hint,) = fake.responses(outside)
    assert hint.ephemeral and "`reset` works on a thread" in hint.content


FENCED = "```python\n" + "\n".join(f"item_{i} = {i}" for i in range(150)) + "\n```"


async def test_long_answers_split_at_2000_with_fences_intact_and_very_long_ones_as_a_file(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    text = "Here is the code.\n\n" + FENCED + "\n\nThat is all."
    assert 2_000 < len(text) < 6_000
    fake_model.script("long code please", Reply(text=text, chunks=20))
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> long code please")
    await discord_bot.dispatched(message.id)
    parts = discord_bot.texts(await discord_bot.thread_of(message))
    assert len(parts) >= 2 and all(len(part) <= 2_000 for part in parts)
    assert all(part.count("```") % 2 == 0 for part in parts)
    assert all(f"item_{i} = {i}" in "".join(parts) for i in range(150))

    huge = "word " * 2_000
    fake_model.script("a very long answer", Reply(text=huge, chunks=10))
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> a very long answer")
    await discord_bot.dispatched(message.id)
    posted = fake.by_bot(await discord_bot.thread_of(message))
    assert "as a file" in posted[-2].content  # after what was shown while it was written
    assert posted[-1].files == [huge.encode()]


async def test_a_429_on_an_edit_is_waited_out_and_the_final_text_is_whole(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    text = " ".join(f"part{i}" for i in range(40))
    fake_model.script("rate limited answer", Reply(text=text, chunks=40, chunk_delay=0.01))
    fake.rate_limit("PATCH", r"/webhooks/\d+/token-\d+/messages/@original", retry_after=0.5)
    await discord_bot.use("ask", TEXT_CHANNEL, {"prompt": "start a thread"})
    thread = fake.threads_of(TEXT_CHANNEL)[-1]["id"]

    interaction = await discord_bot.use("ask", thread, {"prompt": "rate limited answer"})
    assert fake.responses(interaction)[0].content == text
    patches = [c for c in fake.calls if c.method == "PATCH" and interaction.token in c.path]
    assert len(patches) >= 2  # the limited one, and those after it


async def test_a_slow_answer_is_still_deferred_within_three_seconds(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    gate = fake_model.hold("take your time")
    interaction = await fake.command("ask", TEXT_CHANNEL, {"prompt": "take your time"})
    await fake_model.wait_for_request("take your time")
    kind, at, _ = interaction.callbacks[0]
    assert kind == 5 and at - interaction.created < 3
    await asyncio.sleep(3.2)  # the model keeps thinking past Discord's 3 seconds
    gate.set()
    await discord_bot.dispatched(interaction.id)
    thread = fake.threads_of(TEXT_CHANNEL)[-1]["id"]
    assert discord_bot.texts(thread)[-1] == "echo: take your time"


async def test_empty_and_oversized_prompts_get_clear_replies(discord_bot: DiscordHarness) -> None:
    fake = discord_bot.fake
    await discord_bot.use("ask", TEXT_CHANNEL, {"prompt": "a thread for odd prompts"})
    thread = fake.threads_of(TEXT_CHANNEL)[-1]["id"]

    empty = await discord_bot.use("ask", thread, {"prompt": "   "})
    assert "Please write a message" in fake.responses(empty)[0].content

    huge = await discord_bot.use("ask", thread, {"prompt": "x" * 50_000})
    assert "50,000 characters long; I take up to 40,000" in fake.responses(huge)[0].content


async def test_a_gateway_reconnect_mid_turn_resumes_and_the_answer_completes(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    gate = fake_model.hold("through a reconnect")
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> through a reconnect")
    await fake_model.wait_for_request("through a reconnect")

    await fake.reconnect()  # op 7; returns once the client has resumed
    gate.set()
    await discord_bot.dispatched(message.id)
    thread = await discord_bot.thread_of(message)
    assert discord_bot.texts(thread) == ["echo: through a reconnect"]
    assert discord_bot.adapter.connected
    after = await fake.say(thread, "still there?")
    await discord_bot.dispatched(after.id)
    assert discord_bot.texts(thread)[-1] == "echo: still there?"


async def test_a_dm_is_one_conversation_and_takes_reset(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    dm = fake.dm_channel()
    for text in ("dm: my name is Ada", "dm: what is my name?"):
        message = await fake.say(dm, text)
        await discord_bot.dispatched(message.id)
    assert user_texts(fake_model.requests_with("dm: what is my name?")[-1]) == [
        "dm: my name is Ada",
        "dm: what is my name?",
    ]
    reset = await discord_bot.use("reset", dm)
    assert "Started afresh" in fake.responses(reset)[0].content
    branch = await discord_bot.use("branch", dm)
    assert "nothing to branch yet" in fake.responses(branch)[0].content


async def test_attachments_reach_the_session_and_others_get_a_note(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    files = [
        fake.attachment("todo.txt", "text/plain", b"buy milk"),
        fake.attachment("song.mp3", "audio/mpeg", b"ID3\x03"),
        fake.attachment("gone.txt", "text/plain", b"deleted before the download"),
    ]
    fake.delete_attachment(files[-1]["id"])
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> read my list", attachments=files)
    await discord_bot.dispatched(message.id)
    texts = discord_bot.texts(await discord_bot.thread_of(message))
    assert texts[0] == "-# I can't read `song.mp3` (audio/mpeg): " + (
        "I take text files and images (PNG, JPEG, GIF, WebP)."
    )
    assert texts[1] == "-# I couldn't download `gone.txt`, so I left it out; please try again."
    assert texts[2] == "echo: read my list"
    content = fake_model.requests_with("read my list")[-1]["messages"][-1]["content"]
    assert "buy milk" in str(content)


async def test_without_the_message_content_intent_mentions_and_commands_still_work(
    make_discord: DiscordFactory, fake_model: FakeModel
) -> None:
    bot = await make_discord(discord_guild_ids=(), discord_message_content=False)
    fake_discord = bot.fake
    assert not fake_discord.identified[-1]["intents"] & MESSAGE_CONTENT_INTENT
    assert fake_discord.synced["global"]  # no guilds configured: global commands
    first = await fake_discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> minimal intents")
    await bot.dispatched(first.id)
    thread = await bot.thread_of(first)

    unreadable = await fake_discord.say(thread, "a follow-up the bot cannot read")
    assert await bot.handled_as(unreadable) == "context"
    mentioned = await fake_discord.say(thread, f"<@{BOT_ID}> a follow-up with a mention")
    await bot.dispatched(mentioned.id)
    assert bot.texts(thread) == ["echo: minimal intents", "echo: a follow-up with a mention"]
    # The agent is told it missed a message, not shown a blank one.
    request = fake_model.requests_with("a follow-up with a mention")[-1]
    (context,) = [c for c in thread_contexts(request) if c]
    assert "1 messages here I cannot read" in context
    assert "a follow-up the bot cannot read" not in str(request)


class _ZlibStream:
    """discord.py's other gateway compression (when zstandard is not installed): the
    messages of a connection are one zlib stream, each ending in a sync flush."""

    COMPRESSION_TYPE = "zlib-stream"

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj()
        self._buffer = bytearray()

    def decompress(self, data: bytes, /) -> str | None:
        self._buffer += data
        if not data.endswith(b"\x00\x00\xff\xff"):
            return None
        text = self._inflate.decompress(bytes(self._buffer)).decode()
        self._buffer.clear()
        return text


@pytest.mark.parametrize("compression", ["zstd-stream", "zlib-stream"])
async def test_the_gateway_works_with_either_compression(
    make_chat: AppFactory,
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    compression: str,
) -> None:
    if compression == "zlib-stream":
        monkeypatch.setattr(discord.utils, "_ActiveDecompressionContext", _ZlibStream)
    chat = await make_chat(
        discord_token=TOKEN,
        discord_api_url=fake_discord.api_url,
        discord_gateway_url=fake_discord.gateway_url,
    )
    adapter = DiscordAdapter(chat.app.router, chat.app.settings, guild_ready_timeout=0.1)
    await adapter.start()
    try:
        assert fake_discord.compression == compression
        bot = DiscordHarness(fake_discord, chat.app, adapter)
        message = await fake_discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> compressed {compression}")
        await bot.dispatched(message.id)
        assert bot.texts(await bot.thread_of(message)) == [f"echo: compressed {compression}"]
    finally:
        await adapter.stop()


# As a replica of two: the one with the shard the server falls in.
SHARD = (int(GUILD_ID) >> 22) % 2
SHARDED = {"THREADPILOT_DISCORD_SHARD_COUNT": "2", "THREADPILOT_DISCORD_SHARD_IDS": str(SHARD)}


async def test_a_token_discord_refuses_stops_the_start_with_one_clear_line(
    tmp_path: Path, fake_model: FakeModel, fake_discord: FakeDiscord, cli_path: Path
) -> None:
    env = {**fake_discord.env, "DISCORD_TOKEN": "revoked"}
    why = await refused_start(tmp_path, fake_model, cli_path, **env)
    assert why.startswith("threadpilot: could not connect to Discord (")
    assert why.endswith("`threadpilot doctor` checks the token")


@pytest.mark.parametrize("sharding", [{}, SHARDED], ids=["one", "its shard of 2"])
async def test_threadpilot_runs_discord_and_stops_cleanly(
    sharding: dict[str, str],
    tmp_path: Path,
    fake_model: FakeModel,
    fake_discord: FakeDiscord,
    cli_path: Path,
) -> None:
    identified = len(fake_discord.identified)
    syncs = len([c for c in fake_discord.calls if c.method == "PUT"])
    env = {**fake_discord.env, **sharding}
    process = await start_bot(tmp_path, fake_model, cli_path, **env)
    try:
        await fake_discord.wait_for(lambda: len(fake_discord.identified) > identified)
        shard = fake_discord.identified[-1].get("shard")
        assert shard == ([SHARD, 2] if sharding else None)
        await fake_discord.wait_for(  # this process synced its commands: it is up
            lambda: len([c for c in fake_discord.calls if c.method == "PUT"]) > syncs
        )
        message = await fake_discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> hello from a process")
        await fake_discord.wait_for(
            lambda: (
                [m.content for m in fake_discord.by_bot(message.id)]
                == ["echo: hello from a process"]
            )
        )
    finally:
        log = await stop_bot(process)
        print(log)  # shown should the test fail
    assert "discord: connected as threadpilot" in log and "Traceback" not in log


async def test_a_slow_answer_shows_the_typing_indicator(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    gate = fake_model.hold("think slowly")
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> think slowly")
    thread = await discord_bot.thread_of(message)
    await fake.wait_for(  # Discord shows "threadpilot is typing…" in the thread
        lambda: any(c.path == f"/channels/{thread}/typing" for c in fake.calls)
    )
    gate.set()
    await discord_bot.dispatched(message.id)
    assert discord_bot.texts(thread) == ["echo: think slowly"]


@pytest.mark.parametrize(
    ("resumable", "on_resume"),
    [(True, False), (False, False), (False, True)],
    ids=["resumable", "identify-afresh", "resume-refused"],
)
async def test_an_invalid_session_mid_turn_loses_no_answer_and_no_history(
    discord_bot: DiscordHarness, fake_model: FakeModel, resumable: bool, on_resume: bool
) -> None:
    fake = discord_bot.fake
    tag = "resume" if resumable else "refused" if on_resume else "afresh"
    threads = []
    for name in ("by message", "by ask"):
        start = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> {tag} {name}")
        await discord_bot.dispatched(start.id)
        threads.append(await discord_bot.thread_of(start))
    in_thread, by_ask = threads
    gate = asyncio.Event()
    for held in ("held message", "held ask"):
        fake_model.script(f"{tag} {held}", Reply(gate=gate))
    message = await fake.say(in_thread, f"{tag} held message")
    interaction = await fake.command("ask", by_ask, {"prompt": f"{tag} held ask"})
    await fake_model.wait_for_request(f"{tag} held message")
    await fake_model.wait_for_request(f"{tag} held ask")

    async def meanwhile() -> Message | None:
        gate.set()  # answers go on while the gateway is away (5 s before a new IDENTIFY)
        # A session that resumes gets what was said while it was away (queued behind the
        # held turn); one begun afresh does not, as with Discord.
        return await fake.say(in_thread, f"{tag} said in the gap") if resumable else None

    old_session, replayed = fake.session_id, fake.replayed
    gap = await fake.invalidate_session(resumable, meanwhile(), on_resume)  # until it is back
    assert (fake.session_id == old_session) is resumable
    assert (fake.replayed > replayed) is resumable
    await discord_bot.dispatched(message.id)
    await discord_bot.dispatched(interaction.id)
    held_texts = [f"{tag} by message", f"{tag} held message"]
    if gap is not None:
        await discord_bot.dispatched(gap.id)
        held_texts.append(gap.content)
    assert discord_bot.texts(in_thread) == [f"echo: {text}" for text in held_texts]
    assert [m.content for m in fake.responses(interaction)] == [f"echo: {tag} held ask"]

    after = await fake.say(in_thread, f"{tag} after the message")
    again = await fake.command("ask", by_ask, {"prompt": f"{tag} after the ask"})
    await discord_bot.dispatched(after.id)
    await discord_bot.dispatched(again.id)
    assert discord_bot.texts(in_thread)[-1] == f"echo: {tag} after the message"
    assert [m.content for m in fake.responses(again)] == [f"echo: {tag} after the ask"]
    assert user_texts(fake_model.requests_with(f"{tag} after the message")[-1]) == [
        *held_texts,
        f"{tag} after the message",
    ]
    assert user_texts(fake_model.requests_with(f"{tag} after the ask")[-1]) == [
        f"{tag} by ask",
        f"{tag} held ask",
        f"{tag} after the ask",
    ]
    assert discord_bot.adapter.client.ws.session_id == fake.session_id


def _paragraphs(tag: str, count: int) -> str:
    """An answer of `count` paragraphs of ~940 characters: two fit in a message, three do not."""
    return "\n\n".join(" ".join(f"{tag}{p}_{i}" for i in range(150)) for p in range(count))


async def test_a_burst_of_429s_on_every_route_while_threads_answer_at_once(
    discord_bot: DiscordHarness, fake_model: FakeModel, caplog: pytest.LogCaptureFixture
) -> None:
    fake = discord_bot.fake
    threads = []
    for n in range(3):
        start = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> burst thread {n}")
        await discord_bot.dispatched(start.id)
        threads.append(await discord_bot.thread_of(start))
    split, asked, typed = threads
    long_message, long_ask, short = _paragraphs("m", 3), _paragraphs("a", 3), _paragraphs("n", 1)
    assert 2_000 < len(long_message) < 6_000 and len(short) < 2_000
    fake_model.script("burst split", Reply(text=long_message, chunks=30, chunk_delay=0.02))
    fake_model.script("burst ask", Reply(text=long_ask, chunks=30, chunk_delay=0.02))
    fake_model.script("burst new thread", Reply(text=short, chunks=10, chunk_delay=0.02))
    gate = fake_model.hold("burst typing")

    fake.rate_limit("POST", rf"/channels/{typed}/typing", retry_after=0.3, is_global=True)
    for _ in range(2):
        fake.rate_limit("POST", r"/channels/\d+/messages", retry_after=0.2)
        fake.rate_limit("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.2)
        fake.rate_limit("PATCH", r"/webhooks/\d+/token-\d+/messages/@original", retry_after=0.2)
    fake.rate_limit("POST", r"/webhooks/\d+/token-\d+", retry_after=0.2)  # a follow-up

    events = [
        (await fake.say(split, "burst split")).id,
        (ask := await fake.command("ask", asked, {"prompt": "burst ask"})).id,
        (new := await fake.command("ask", TEXT_CHANNEL, {"prompt": "burst new thread"})).id,
        (await fake.say(typed, "burst typing")).id,
    ]
    await fake.wait_for(lambda: any(c.path == f"/channels/{typed}/typing" for c in fake.calls))
    gate.set()
    await asyncio.gather(*(discord_bot.dispatched(event) for event in events))

    assert fake.pending_rate_limits == []
    split_start, *split_parts = discord_bot.texts(split)
    assert split_start == "echo: burst thread 0"
    assert len(split_parts) == 2 and "\n\n".join(split_parts) == long_message
    ask_parts = [m.content for m in fake.responses(ask)]
    assert len(ask_parts) == 2 and "\n\n".join(ask_parts) == long_ask
    new_thread = fake.threads_of(TEXT_CHANNEL)[-1]["id"]
    assert [m.content for m in fake.responses(new)] == ["**ada** asked: burst new thread"]
    assert discord_bot.texts(new_thread) == [short]
    assert discord_bot.texts(typed) == ["echo: burst thread 2", "echo: burst typing"]
    complaints = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
        or (r.name.startswith("adapters") and r.levelno >= logging.WARNING)
    ]
    assert complaints == []


async def test_a_failed_command_sync_is_reported_and_retried_while_mentions_are_served(
    make_discord: DiscordFactory, fake_discord: FakeDiscord
) -> None:
    fake_discord.broken_syncs = 1_000  # Discord answers what discord.py cannot read
    try:
        bot = await make_discord(commands_synced=False)  # it starts all the same
        adapter = bot.adapter
        await fake_discord.wait_for(lambda: adapter.trouble is not None)

        message = await fake_discord.say(TEXT_CHANNEL, f"<@{BOT_ID}> still there?")
        await bot.dispatched(message.id)
        assert bot.texts(await bot.thread_of(message)) == ["echo: still there?"]
        assert "trouble: discord: slash commands not registered" in await bot.app.status.text()
        assert all(bot.app.readiness().values())  # serving: troubles do not make it unready
        assert "slash commands not registered" in bot.app.troubles()["discord"]
    finally:
        fake_discord.broken_syncs = 0
    await asyncio.wait_for(adapter.commands_synced.wait(), 30)  # retried, and registered
    assert adapter.trouble is None and bot.app.troubles() == {}


async def test_a_short_quick_answer_lands_whole_in_its_first_post(
    make_discord: DiscordFactory, fake_model: FakeModel
) -> None:
    bot = await make_discord(edit_interval_s=1.0)  # the adapter's own pacing
    text = "Yes: run `make lint` before you push, and the check passes."
    fake_model.script("quick one", Reply(text=text, chunks=4))
    message = await bot.fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> quick one")
    await bot.dispatched(message.id)
    (reply,) = bot.fake.by_bot(await bot.thread_of(message))
    assert reply.content == text and reply.edits == 0  # whole at once, no edit after


async def test_a_long_answer_goes_on_in_a_new_message_while_the_model_still_writes(
    discord_bot: DiscordHarness, fake_model: FakeModel
) -> None:
    fake = discord_bot.fake
    code = "```python\n" + "\n".join(f"item_{i} = {i}  # one line" for i in range(90)) + "\n```"
    text = code + "\n\n" + "\n\n".join(f"Part {i}: " + "more words " * 15 for i in range(10))
    assert len(code) > 2_000 and len(text) < 6_000
    fake_model.script("long one", Reply(text=text, chunks=80, chunk_delay=0.02))
    message = await fake.say(TEXT_CHANNEL, f"<@{BOT_ID}> long one")
    thread = await discord_bot.thread_of(message)
    # The second message opens while much of the answer is still to come.
    await fake.wait_for(lambda: len(fake.by_bot(thread)) >= 2)
    assert sum(len(part) for part in discord_bot.texts(thread)) < len(text) - 1_500
    await discord_bot.dispatched(message.id)

    parts = discord_bot.texts(thread)
    assert parts == split_text(text, 2_000)  # exactly the answer
    assert parts[0].endswith("\n```") and parts[1].startswith("```python\n")  # closed, reopened
    assert all(part.count("```") % 2 == 0 for part in parts)
