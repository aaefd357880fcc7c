"""DiscordSink: a reply stream shown in a Discord thread or DM, or as an interaction's reply.

While a turn runs: the typing indicator if the first reply takes a moment; the answer in
a message edited at most once a second, with tool activity under it, going on in the next
message when one fills up (2,000 characters; code fences closed and opened again). The
final answer is exact across them, and goes as a file when very long. Discord renders
Markdown itself, so the text goes as it is. A question that waits behind others in its
thread gets a ⏳ reaction until its turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import discord

from adapters.discord.cards import card_content, card_view
from adapters.discord.events import key_of, thread_name
from adapters.live_reply import DelayedIndicator, LiveReply, render_reply
from adapters.text import honest_links
from bot.errors import CannotOpenThread
from bot.replies import ApprovalCard, OpenedThread, ReplyEvent
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2_000
FILE_THRESHOLD = 6_000  # past three messages, a file reads better
WAITING = "⏳"
_PRIVATE_ONLY = "That answer is only for you: use the slash command to see it."
Messageable = discord.Thread | discord.DMChannel | discord.TextChannel


def _file(content: str) -> discord.File:
    return discord.File(io.BytesIO(content.encode()), filename="answer.md")


def _tool_line(names: list[str]) -> str:
    return f"\n-# using {', '.join(names)}…"  # Discord's small grey subtext


class ChannelSurface:
    """Messages in a thread or DM channel."""

    def __init__(self, channel: Messageable) -> None:
        self._channel = channel

    async def open(self, text: str) -> str:
        return await self.post(text)

    async def edit(self, ref: str, text: str) -> None:
        await self._channel.get_partial_message(int(ref)).edit(content=text)

    async def post(self, text: str) -> str:
        return str((await self._channel.send(text)).id)

    async def upload(self, note: str, content: str) -> str:
        return str((await self._channel.send(note, file=_file(content))).id)


class InteractionSurface:
    """A deferred interaction: its "thinking…" response becomes the answer, and further
    messages are its follow-ups (private ones for a private response)."""

    def __init__(self, interaction: discord.Interaction, private: bool = False) -> None:
        self._interaction = interaction
        self._private = private
        self._original: str | None = None  # the response's message

    async def open(self, text: str) -> str:
        message = await self._interaction.edit_original_response(content=text)
        self._original = str(message.id)
        return self._original

    async def edit(self, ref: str, text: str) -> None:
        if ref == self._original:
            await self._interaction.edit_original_response(content=text)
        else:
            await self._interaction.followup.edit_message(int(ref), content=text)

    async def post(self, text: str) -> str:
        followup = self._interaction.followup
        return str((await followup.send(text, wait=True, ephemeral=self._private)).id)

    async def upload(self, note: str, content: str) -> str:
        followup = self._interaction.followup
        message = await followup.send(note, file=_file(content), wait=True, ephemeral=self._private)
        return str(message.id)


@dataclass(frozen=True, slots=True)
class ThreadStart:
    """How to open the thread an answer goes in, and how to answer without one."""

    open: Callable[[], Awaitable[discord.Thread]]
    decline: Callable[[str], Awaitable[str]]  # say this instead; the reference of it


class DiscordSink:
    def __init__(
        self,
        surface: ChannelSurface | InteractionSurface,
        channel: Messageable,
        edit_interval_s: float = 1.0,
        *,
        question: tuple[discord.Message, discord.abc.Snowflake] | None = None,
    ) -> None:
        self._surface = surface
        self._channel = channel
        self._edit_interval_s = edit_interval_s
        # The message answered, where it is one, and the bot (whose reactions these are).
        self._question = question
        self._waiting = False  # its WAITING reaction is up
        self._start: ThreadStart | None = None
        self._stop_typing = asyncio.Event()
        self._typing_task: asyncio.Task[None] | None = None

    @classmethod
    def starting(
        cls,
        start: ThreadStart,
        surface: ChannelSurface | InteractionSurface,
        channel: discord.TextChannel,
        edit_interval_s: float,
        question: tuple[discord.Message, discord.abc.Snowflake] | None = None,
    ) -> DiscordSink:
        """A sink for something asked in a channel whose answer goes in a thread of its
        own, opened when an answer starts: a refusal or a "slow down" opens none."""
        sink = cls(surface, channel, edit_interval_s, question=question)
        sink._start = start
        return sink

    async def decline(self, text: str) -> list[str]:
        if self._start is not None:  # said where it was asked: no thread for a "no"
            return [await self._start.decline(text)]
        if isinstance(self._surface, InteractionSurface):  # deferred as privately as it can
            return [await self._surface.open(text)]
        if self._question is not None:
            return [str((await self._question[0].reply(text)).id)]
        return [await self._surface.post(text)]

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        if self._start is not None:
            thread = await self._start.open()
            self._start = None
            self._surface, self._channel = ChannelSurface(thread), thread
        if self._waiting:  # its turn has come
            self._waiting = not await self._react(False)
        live = LiveReply(
            self._surface,
            limit=MESSAGE_LIMIT,
            file_threshold=FILE_THRESHOLD,
            interval=self._edit_interval_s,
            formatter=honest_links,
            tool_line=_tool_line,
        )
        return await render_reply(
            events,
            live,
            DelayedIndicator(self._type, self._stop),
            # An interaction's response is as private as it was deferred (the commands
            # with private answers defer privately); a plain message has no private way.
            private=live.finish if isinstance(self._surface, InteractionSurface) else self._refer,
            notice=lambda text: self._surface.post(f"-# {text}"),
            queued=self._queued,
        )

    async def _queued(self) -> None:
        if self._question is not None:
            self._waiting = await self._react(True)

    async def _react(self, on: bool) -> bool:
        """Put up (or take down) the WAITING reaction on the question; whether it worked."""
        assert self._question is not None
        message, me = self._question
        try:
            if on:
                await message.add_reaction(WAITING)
            else:
                await message.remove_reaction(WAITING, me)
        except discord.HTTPException as exc:  # e.g. no permission: the answer comes anyway
            log.info("reaction in %s: %s", self._channel.id, exc)
            return False
        return True

    async def _refer(self, text: str) -> list[str]:
        return [await self._surface.post(_PRIVATE_ONLY)]

    async def _type(self) -> bool:
        self._typing_task = asyncio.create_task(self._typing())
        return True

    async def _typing(self) -> None:
        try:
            async with self._channel.typing():
                await self._stop_typing.wait()
        except discord.HTTPException as exc:  # the reply comes all the same
            log.info("typing indicator in %s: %s", self._channel.id, exc)

    async def _stop(self) -> None:
        self._stop_typing.set()
        if self._typing_task is not None:
            await self._typing_task

    async def show_approval(self, card: ApprovalCard, ref: str | None = None) -> str | None:
        view = card_view(card)
        if ref is None:
            assert view is not None  # a card is posted open
            message = await self._channel.send(card_content(card), view=view)
            view.stop()  # the buttons stay; presses come to the adapter's on_interaction
            return str(message.id)
        await self._channel.get_partial_message(int(ref)).edit(
            content=card_content(card), view=view
        )
        return ref

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        parent = self._channel.parent if isinstance(self._channel, discord.Thread) else None
        if not isinstance(parent, discord.TextChannel):
            raise CannotOpenThread("Branches need a server channel: there are no threads in DMs.")
        starter = await parent.send(
            f"🌿 **{honest_links(title)}**: a branch of <#{origin.thread}>."
        )
        thread = await starter.create_thread(name=thread_name(title))
        with contextlib.suppress(discord.HTTPException):
            await thread.send(f"Branched from <#{origin.thread}>: I remember that conversation.")
        key = key_of(thread)
        assert key is not None
        return OpenedThread(key, f"<#{thread.id}>")
