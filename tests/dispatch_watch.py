"""Knowing when the core has handled a delivery, whatever the adapter did with it."""

from __future__ import annotations

import asyncio

from bot.app import App
from bot.inbound import Inbound
from bot.replies import ReplySink


class DispatchWatcher:
    """Wraps the app's router so tests can wait for an event id to have been handled."""

    def __init__(self, app: App) -> None:
        self.handled: set[str] = set()
        self._done = asyncio.Condition()
        dispatch = app.router.dispatch

        async def watched(inbound: Inbound, sink: ReplySink) -> None:
            try:
                await dispatch(inbound, sink)
            finally:
                async with self._done:
                    self.handled.add(inbound.event_id)
                    self._done.notify_all()

        app.router.dispatch = watched  # type: ignore[method-assign]

    async def dispatched(self, event_id: str) -> None:
        """Wait until the core has handled the delivery with this id (answered or not)."""
        async with asyncio.timeout(60), self._done:
            await self._done.wait_for(lambda: event_id in self.handled)
