"""Knowing when the core has handled a delivery, whatever the adapter did with it."""

from __future__ import annotations

import asyncio

from bot.app import App
from bot.inbound import Inbound
from bot.replies import ReplySink


class DispatchWatcher:
    """Wraps the app's router so tests can wait for an event id to have been handled."""

    def __init__(self, app: App) -> None:
        self._app = app
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

    async def handled_as(self, event_id: str, platform: str) -> str | None:
        """Wait until the core has handled a delivery; how it journaled it: None when it
        ignored it, 'context' when it kept it for the agent, else what it answered."""
        await self.dispatched(event_id)
        row = await self._app.store.run(
            lambda conn: conn.execute(
                "SELECT kind FROM turns WHERE event_id = ?", (f"{platform}:{event_id}",)
            ).fetchone()
        )
        return str(row[0]) if row else None
