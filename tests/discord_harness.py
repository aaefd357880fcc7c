"""The Discord adapter running against the fake Discord, on an app of the shared runtime."""

from __future__ import annotations

from typing import Any

from adapters.discord import DiscordAdapter
from bot.app import App
from tests.dispatch_watch import DispatchWatcher
from tests.fake_discord import FakeDiscord, Interaction, Message


class DiscordHarness:
    """Acts in the fake Discord and waits for the bot to have handled it."""

    def __init__(self, fake: FakeDiscord, app: App, adapter: DiscordAdapter) -> None:
        self.fake = fake
        self.app = app
        self.adapter = adapter
        self._watch = DispatchWatcher(app)
        self.dispatched = self._watch.dispatched

    async def handled_as(self, message: Message) -> str | None:
        """How the core journaled a message, once handled (None: ignored)."""
        return await self._watch.handled_as(message.id, "discord")

    async def dispatched_nothing_for(self, message: Message) -> None:
        """Let a message pass through the client; then the core must not have been asked."""
        ping = await self.fake.say(self.fake.dm_channel(), "ping")  # handled after it
        await self.dispatched(ping.id)
        assert message.id not in self._watch.handled

    async def use(self, name: str, channel_id: str, *args: Any, **kwargs: Any) -> Interaction:
        """Use an application command (as FakeDiscord.command); return once handled."""
        interaction = await self.fake.command(name, channel_id, *args, **kwargs)
        await self.dispatched(interaction.id)
        return interaction

    def texts(self, channel_id: str) -> list[str]:
        return [m.content for m in self.fake.by_bot(channel_id)]

    async def thread_of(self, message: Message) -> str:
        """The thread the bot started from a message (it takes the message's id)."""
        await self.fake.wait_for(lambda: message.id in self.fake.channels)
        return message.id
