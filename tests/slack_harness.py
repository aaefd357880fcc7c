"""The Slack adapter running against the fake Slack, on an app of the shared runtime."""

from __future__ import annotations

import itertools
from typing import Any

from adapters.slack import SlackAdapter
from bot.app import App
from tests.dispatch_watch import DispatchWatcher
from tests.fake_slack import BOT_USER, FakeSlack, Message


class SlackHarness:
    """Says things in the fake Slack and waits for the bot to have answered them."""

    def __init__(self, fake: FakeSlack, app: App, adapter: SlackAdapter, channel: str) -> None:
        self.fake = fake
        self.app = app
        self.adapter = adapter
        self.channel = channel  # a channel of this test's own
        self.dm = "D" + channel[1:]
        self._watch = DispatchWatcher(app)
        self.dispatched = self._watch.dispatched
        self.handled = self._watch.handled  # event ids the core has handled
        self._channels = itertools.count(1)

    def new_channel(self) -> str:
        return f"{self.channel}X{next(self._channels)}"

    async def handled_as(self, event_id: str) -> str | None:
        """How the core journaled a delivery, once handled (None: ignored)."""
        return await self._watch.handled_as(event_id, "slack")

    async def dispatched_nothing_for(self, event_id: str) -> None:
        """Let an event pass through Bolt; then the core must not have been asked."""
        marker = self.fake.new_ts()  # a later event, answered: the first was passed over
        _, events = self.fake.user_message(self.dm, "ping", ts=marker)
        await self.fake.push("events_api", events[0])
        await self.dispatched(events[0]["event_id"])
        assert event_id not in self._watch.handled

    async def say(
        self,
        text: str,
        *,
        thread_ts: str | None = None,
        channel: str | None = None,
        mention: bool = True,
        user: str = "U1",
        files: list[dict[str, Any]] | None = None,
        wait: bool = True,
    ) -> tuple[str, str]:
        """Post as a person (mentioning the bot unless told not to); returns the message's
        ts and the event id the bot answers (its app_mention, else its message)."""
        channel = channel or self.channel
        text = f"<@{BOT_USER}> {text}" if mention else text
        ts, events = self.fake.user_message(
            channel, text, user=user, thread_ts=thread_ts, files=files
        )
        for event in events:
            await self.fake.push("events_api", event)
        answered = events[-1]["event_id"]
        if wait:
            await self.dispatched(answered)
        return ts, answered

    def replies(self, thread_ts: str, channel: str | None = None) -> list[Message]:
        return self.fake.replies(channel or self.channel, thread_ts)

    def texts(self, thread_ts: str, channel: str | None = None) -> list[str]:
        return [m.text for m in self.replies(thread_ts, channel)]
