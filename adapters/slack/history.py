"""Reading a Slack thread for the core: `conversations.replies`, following its cursor, and
authors' display names from `users.info`, each resolved once and kept a while."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import MESSAGE_SUBTYPES, author
from bot.errors import ThreadUnreadable
from bot.inbound import ThreadMessage

log = logging.getLogger(__name__)

_PAGE = 200  # messages per conversations.replies call (Slack allows up to 1,000)
_PAGES = 5  # a longer thread is read up to its first 1,000 messages
_READ_TIMEOUT_S = 10.0  # a rate limit's Retry-After can be a minute: go without instead
_NAME_TTL_S = 3600.0
_NAMES_KEPT = 5_000


class SlackNames:
    """Display names by user id (`users.info`), kept for an hour."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._names: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def name(self, user_id: str) -> str:
        """The name people see, else the user id (the call failed, or no such user)."""
        kept = self._names.get(user_id)
        if kept is not None and time.monotonic() - kept[1] < _NAME_TTL_S:
            return kept[0]
        try:
            response = await self._client.users_info(user=user_id)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.info("slack: no name for %s: %s", user_id, exc)
            return user_id
        user: dict[str, Any] = response.get("user") or {}
        profile: dict[str, Any] = user.get("profile") or {}
        name = str(
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
            or user_id
        )
        self._names[user_id] = (name, time.monotonic())
        self._names.move_to_end(user_id)
        while len(self._names) > _NAMES_KEPT:
            self._names.popitem(last=False)
        return name


class SlackHistory:
    """Reads Slack threads for the core, as the bot user `bot_user_id` (app `bot_id`)."""

    def __init__(self, client: AsyncWebClient, bot_user_id: str, bot_id: str) -> None:
        self.client = client
        self.names = SlackNames(client)
        self._bot_user_id = bot_user_id
        self._bot_id = bot_id

    def thread(self, channel: str, thread_ts: str, position: str, user_id: str) -> SlackThread:
        """The thread `thread_ts` as the message (or shortcut) at `position`, by
        `user_id`, finds it."""
        return SlackThread(self, channel, thread_ts, position, user_id)

    def is_mine(self, message: dict[str, Any]) -> bool:
        return message.get("user") == self._bot_user_id or (
            bool(self._bot_id) and message.get("bot_id") == self._bot_id
        )


@dataclass(frozen=True, slots=True)
class SlackThread:
    """The thread `thread_ts` an inbound Slack message or shortcut by `user_id` is in, up
    to `position` (the message's ts, or the time a shortcut was used)."""

    history: SlackHistory
    channel: str
    thread_ts: str
    position: str
    user_id: str

    async def speaker(self) -> str:
        return await self.history.names.name(self.user_id)

    async def earlier(self, after: str | None) -> Sequence[ThreadMessage]:
        if self.position == self.thread_ts:  # the thread starts with this message
            return []
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                raw = await self._replies(after)
                return await self._messages(raw, after)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            raise ThreadUnreadable(f"conversations.replies in {self.channel}: {exc}") from exc

    async def _replies(self, after: str | None) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_PAGES):
            response = await self.history.client.conversations_replies(
                channel=self.channel,
                ts=self.thread_ts,
                oldest=after,
                latest=self.position,
                inclusive=False,
                limit=_PAGE,
                cursor=cursor,
            )
            messages += response.get("messages") or []
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                break
        return messages

    async def _messages(self, raw: list[dict[str, Any]], after: str | None) -> list[ThreadMessage]:
        # Slack returns the thread's first message with every page, whatever the bounds:
        # keep to them, and to each message once.
        low, high = _ts(after or "0"), _ts(self.position)
        within = {
            m["ts"]: m
            for m in raw
            if isinstance(m, dict)
            and m.get("subtype") in MESSAGE_SUBTYPES
            and isinstance(author(m), str)
            and low < _ts(m.get("ts")) < high
        }
        kept = sorted(within.values(), key=lambda m: _ts(m["ts"]))
        mine = self.history.is_mine
        people = sorted({m["user"] for m in kept if m.get("user") and not mine(m)})
        found = await asyncio.gather(*map(self.history.names.name, people))
        names = dict(zip(people, found, strict=True))
        return [
            ThreadMessage(
                ref=str(m["ts"]),
                author_id=str(author(m)),
                author_name=names.get(m.get("user") or "") or _bot_name(m),
                text=str(m.get("text") or ""),
                at=_ts(m["ts"]),
                files=tuple(
                    str(f.get("name") or "file")
                    for f in m.get("files") or []
                    if isinstance(f, dict)
                ),
                by_bot=mine(m),
            )
            for m in kept
        ]


def _ts(value: object) -> float:
    """A Slack timestamp as a number (-1 for anything else, which no bound admits)."""
    try:
        return float(str(value))
    except ValueError:
        return -1.0


def _bot_name(message: dict[str, Any]) -> str:
    profile = message.get("bot_profile") or {}
    return str(message.get("username") or profile.get("name") or "a bot")
