"""Discord messages and interactions as the core's Inbound: which thread, which text.

ThreadKey: (discord, guild id, parent channel id, thread id) for threads; a DM is one
conversation per DM channel: (discord, "@me", channel id, channel id).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import aiohttp
import discord

from bot.errors import FileUnavailable
from bot.inbound import InboundFile
from bot.thread_key import NO_SERVER, ThreadKey

THREAD_NAME_LIMIT = 100


def key_of(channel: object) -> ThreadKey | None:
    """The conversation a channel is: a thread, or a DM; None for a plain channel."""
    if isinstance(channel, discord.Thread):
        return ThreadKey("discord", str(channel.guild.id), str(channel.parent_id), str(channel.id))
    if isinstance(channel, discord.DMChannel):
        return ThreadKey("discord", NO_SERVER, str(channel.id), str(channel.id))
    return None


def started_key(channel: discord.TextChannel, message_id: int) -> ThreadKey:
    """The thread a channel message starts when the bot answers it (a thread started from
    a message takes the message's id)."""
    return ThreadKey("discord", str(channel.guild.id), str(channel.id), str(message_id))


def strip_mentions(text: str, bot_id: int) -> str:
    return re.sub(rf"<@!?{bot_id}>", "", text).strip()


def thread_name(text: str) -> str:
    """A thread's name from what started it: its first line, shortened."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "") or "Question"
    return first if len(first) <= THREAD_NAME_LIMIT else first[: THREAD_NAME_LIMIT - 1] + "…"


def _reader(attachment: discord.Attachment) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        try:
            return await attachment.read()
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise FileUnavailable(str(exc) or type(exc).__name__) from exc

    return read


def files_of(message: discord.Message) -> tuple[InboundFile, ...]:
    return tuple(
        InboundFile(
            name=attachment.filename,
            mime_type=attachment.content_type or "application/octet-stream",
            size=attachment.size,
            fetch=_reader(attachment),
        )
        for attachment in message.attachments
    )
