"""Slack payloads (Events API, slash commands, message shortcuts) as the core's Inbound.

Pure functions: which messages are for the bot, which thread they belong to, and which
command forms they use. Downloading files is left to the `fetch` the caller passes in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot.commands import BY_NAME, COMMANDS
from bot.inbound import Inbound, InboundFile, ThreadReader
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

COMMAND_WORDS = frozenset(BY_NAME)
# Message shortcuts: a command's name is its callback id.
SHORTCUTS = frozenset(command.name for command in COMMANDS if command.shortcut)
# Slash commands: `/threadpilot NAME`, and some commands' own.
SLASH_COMMANDS = ("/threadpilot", *(f"/{c.name}" for c in COMMANDS if c.slack_slash))
# Message subtypes that are someone (a person or a bot) writing; everything else (edits,
# deletes, joins) is not a message.
MESSAGE_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "bot_message"})

Fetch = Callable[[str], Awaitable[bytes]]


def _mention(bot_user_id: str) -> re.Pattern[str]:
    """The bot's mention in Slack's text: `<@UBOT>`, or `<@UBOT|name>`."""
    return re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>")


def mentions(text: str, bot_user_id: str) -> bool:
    return _mention(bot_user_id).search(text) is not None


def strip_mentions(text: str, bot_user_id: str) -> str:
    return _mention(bot_user_id).sub("", text).strip()


# Slack's ids (channels, users, teams) and message timestamps ("1714900000.123456").
_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_TS = re.compile(r"\d{1,12}\.\d{1,9}")


def _malformed(event: dict[str, Any]) -> str | None:
    """What makes a message event unusable, if anything: the one check at the boundary,
    so nothing later meets a missing key or a value of the wrong type."""
    for name, pattern in (("user", _ID), ("channel", _ID), ("ts", _TS)):
        value = author(event) if name == "user" else event.get(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            return f"{name} {value!r}"
    thread_ts = event.get("thread_ts")
    if thread_ts is not None and not (isinstance(thread_ts, str) and _TS.fullmatch(thread_ts)):
        return f"thread_ts {thread_ts!r}"
    if not isinstance(event.get("text") or "", str):
        return "text that is not a string"
    return None


def author(event: dict[str, Any]) -> Any:
    """Who wrote a message: a person's user id, or a bot's id."""
    return event.get("user") or event.get("bot_id")


def is_from_bot(event: dict[str, Any]) -> bool:
    return bool(event.get("bot_id")) or event.get("subtype") == "bot_message"


def is_message(event: dict[str, Any], bot_user_id: str, bot_id: str) -> bool:
    """A well-formed message by a person or another bot: not this bot's own, and not an
    edit, a delete or a join."""
    subtype = event.get("subtype")
    if (
        not (isinstance(subtype, str | None) and subtype in MESSAGE_SUBTYPES)
        or event.get("user") == bot_user_id
        or (bot_id and event.get("bot_id") == bot_id)
    ):
        return False
    problem = _malformed(event)
    if problem is not None:
        log.info("slack: ignoring a malformed %s event: %s", event.get("type"), problem)
    return problem is None


def thread_key(team_id: str, event: dict[str, Any]) -> ThreadKey:
    """A message's thread; a message outside any thread starts one under itself."""
    return ThreadKey("slack", team_id, event["channel"], event.get("thread_ts") or event["ts"])


def _files(event: dict[str, Any], fetch: Fetch) -> tuple[InboundFile, ...]:
    listed = event.get("files")
    files = []
    for file in listed if isinstance(listed, list) else ():
        if not isinstance(file, dict):
            continue
        url = file.get("url_private_download") or file.get("url_private")
        if not isinstance(url, str) or not url:  # e.g. a file Slack hides from the bot
            continue

        async def download(url: str = url) -> bytes:
            return await fetch(url)

        size = file.get("size")
        files.append(
            InboundFile(
                name=str(file.get("name") or file.get("title") or "file"),
                mime_type=str(file.get("mimetype") or "application/octet-stream"),
                # Unknown: 0, and the download itself is then held to the size limit.
                size=size if isinstance(size, int) and size > 0 else 0,
                fetch=download,
            )
        )
    return tuple(files)


def message_inbound(
    body: dict[str, Any],
    event: dict[str, Any],
    bot_user_id: str,
    fetch: Fetch,
    reader: ThreadReader,
) -> Inbound:
    """A message of a conversation. Addressed to the bot (a mention, or anything in a
    DM), `@bot reset` (a mention and one command word) is that command, and so is
    `@bot model gpt-5` for a command that takes an argument."""
    raw = event.get("text") or ""
    in_dm = event.get("channel_type") == "im"
    addressed = in_dm or mentions(raw, bot_user_id)
    text = strip_mentions(raw, bot_user_id)
    first, _, rest = text.partition(" ")
    word, rest = first.rstrip(".!").lower(), rest.strip()
    takes = word in COMMAND_WORDS and (not rest or BY_NAME[word].argument is not None)
    command = word if takes else None
    return Inbound(
        event_id=body["event_id"],
        key=thread_key(team_of(body, event), event),
        user_id=author(event),
        text=rest if command else text,
        command=command,
        message_ref=event["ts"],
        files=_files(event, fetch),
        addressed=addressed,
        in_dm=in_dm,
        from_bot=is_from_bot(event),
        # Slack Connect: the author may belong to another organisation than the delivery.
        author_workspace=_text(event.get("user_team") or event.get("source_team")),
        shared=body.get("is_ext_shared_channel") is True,
        thread=reader,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def team_of(body: dict[str, Any], event: dict[str, Any]) -> str:
    return str(body.get("team_id") or event.get("team") or "")


def slash_command_inbound(body: dict[str, Any]) -> Inbound:
    """`/threadpilot NAME`, or a command's own slash command: Slack does not say which
    thread a slash command was used in, so the core gets none."""
    name = body["command"].lstrip("/")
    text = (body.get("text") or "").strip()
    if name == "threadpilot":
        name, _, text = (text or "help").partition(" ")
        if name.lower() not in COMMAND_WORDS:  # a typo, or a question: show what it takes
            name, text = "help", ""
    return Inbound(
        event_id=f"{body['command']}-{body['trigger_id']}",
        key=None,
        platform="slack",
        user_id=body["user_id"],
        text=text,
        command=name.lower(),
    )


def shortcut_thread_ts(body: dict[str, Any]) -> str:
    message = body["message"]
    return str(message.get("thread_ts") or message["ts"])


def shortcut_inbound(body: dict[str, Any], reader: ThreadReader) -> Inbound:
    """A message shortcut: it carries the message, so the thread (and branch point)."""
    channel = body["channel"]["id"]
    return Inbound(
        event_id=f"{body['callback_id']}-{body['trigger_id']}",
        key=ThreadKey("slack", body["team"]["id"], channel, shortcut_thread_ts(body)),
        user_id=body["user"]["id"],
        text="",
        command=body["callback_id"],
        target_ref=body["message"]["ts"],
        author_workspace=_text(body["user"].get("team_id")),
        thread=reader,
    )
