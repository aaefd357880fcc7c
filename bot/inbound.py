"""Inbound: one message or command from a chat platform, as the core sees it."""

from __future__ import annotations

from dataclasses import dataclass

from bot.attachments import InboundFile
from bot.thread_context import ThreadReader
from bot.thread_key import ThreadKey


@dataclass(frozen=True, slots=True)
class Inbound:
    """What an adapter hands to the router.

    `event_id` is the platform's own id of the delivery (Slack `event_id`, Discord message
    or interaction id); a second delivery with the same id is never answered again.
    `key` is None where the platform does not say which thread (a Slack slash command):
    then only commands that need no thread (status, help) can run.
    `command` is set when the adapter recognised a command form of its platform (a slash
    command, a mention plus one word); the router also recognises text starting with
    `/name`. `message_ref` is the platform's reference of this message, when it is one (the
    journal maps it to the turn, so a later branch can start there). `target_ref` is the
    message a command was used on (a message shortcut), e.g. the branch point.

    The facts the router decides by (bot/routing.py): `addressed` (a mention, a slash
    command, a shortcut: the person asked the bot), `in_dm` (a direct conversation with
    the bot) and `from_bot` (another bot wrote it). `thread` reads the conversation around
    the message, where the platform has one to read.
    """

    event_id: str
    key: ThreadKey | None
    user_id: str
    text: str
    command: str | None = None
    message_ref: str | None = None
    target_ref: str | None = None
    files: tuple[InboundFile, ...] = ()
    platform: str = ""  # defaults to the key's; needed when there is no key
    addressed: bool = True
    in_dm: bool = False
    from_bot: bool = False
    thread: ThreadReader | None = None

    def __post_init__(self) -> None:
        if not self.platform:
            if self.key is None:
                raise ValueError("an inbound without a thread key must name its platform")
            object.__setattr__(self, "platform", self.key.platform)
