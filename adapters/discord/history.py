"""Reading a Discord conversation for the core: a thread's history (with the message it
was started from), a DM's, or the chain of replies a mention answers. Authors' names come
with the messages (members' nicknames, cached by discord.py), so reading costs no calls
beyond the history itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import discord

from bot.errors import ThreadUnreadable
from bot.inbound import ThreadMessage

_LIMIT = 200  # newest messages read: two history pages
_CHAIN = 20  # replies followed back from a mention
_READ_TIMEOUT_S = 10.0
_TEXT_TYPES = (discord.MessageType.default, discord.MessageType.reply)

Conversation = discord.Thread | discord.DMChannel | discord.TextChannel


@dataclass(frozen=True, slots=True)
class DiscordThread:
    """The conversation an inbound message or interaction by `author` (a display name)
    is in, up to `position` (its id). `origin`: a channel message that starts a thread,
    whose earlier context is the chain of messages it replies to; `new`: a thread the bot
    has just opened, with nothing before."""

    channel: Conversation
    position: str
    author: str
    bot_id: int
    reads_content: bool  # the Message Content intent is on
    origin: discord.Message | None = None
    new: bool = False

    async def speaker(self) -> str:
        return self.author

    async def earlier(self, after: str | None) -> Sequence[ThreadMessage]:
        if self.new:
            return []
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                if self.origin is not None:
                    messages = await self._replied_to(self.origin)
                else:
                    messages = await self._history(after)
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            raise ThreadUnreadable(f"history of {self.channel.id}: {exc}") from exc
        return [self._message(m) for m in messages if m.type in _TEXT_TYPES]

    async def _history(self, after: str | None) -> list[discord.Message]:
        newest_first = [
            message
            async for message in self.channel.history(
                limit=_LIMIT,
                before=discord.Object(id=int(self.position)),
                after=discord.Object(id=int(after)) if after else None,
                oldest_first=False,
            )
        ]
        messages = newest_first[::-1]
        if after is None and isinstance(self.channel, discord.Thread):
            starter = await self._starter(self.channel)
            if starter is not None:
                messages.insert(0, starter)
        return messages

    @staticmethod
    async def _starter(thread: discord.Thread) -> discord.Message | None:
        """The channel message a thread was started from (it has the thread's id), if any."""
        parent = thread.parent
        if not isinstance(parent, discord.TextChannel):
            return None
        with contextlib.suppress(discord.NotFound, discord.Forbidden):
            return await parent.fetch_message(thread.id)
        return None

    async def _replied_to(self, message: discord.Message) -> list[discord.Message]:
        chain: list[discord.Message] = []
        reference = message.reference
        while reference is not None and reference.message_id and len(chain) < _CHAIN:
            resolved = reference.resolved
            if not isinstance(resolved, discord.Message):
                try:
                    resolved = await self.channel.fetch_message(reference.message_id)
                except discord.NotFound:  # deleted: the chain ends here
                    break
            chain.append(resolved)
            reference = resolved.reference
        return chain[::-1]

    def _message(self, message: discord.Message) -> ThreadMessage:
        mine = message.author.id == self.bot_id
        mentioned = any(user.id == self.bot_id for user in message.mentions)
        # Without the Message Content intent, Discord blanks others' messages in servers.
        in_dm = isinstance(self.channel, discord.DMChannel)
        readable = self.reads_content or in_dm or mine or mentioned
        return ThreadMessage(
            ref=str(message.id),
            author_id=str(message.author.id),
            author_name=message.author.display_name,
            text=message.content if readable else None,
            at=message.created_at.timestamp(),
            files=tuple(attachment.filename for attachment in message.attachments),
            by_bot=mine,
        )
