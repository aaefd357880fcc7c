"""What the fake platform servers share: an aiohttp app on 127.0.0.1, a socket to close,
and waiting for a condition on what clients have done so far."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web


class FakeServer:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._socket: web.WebSocketResponse | None = None
        self._changed = asyncio.Condition()
        self.base = ""

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application(client_max_size=50 * 2**20)
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, predicate: Callable[[], Any]) -> Any:
        """Wait until `predicate()` is truthy (re-checked after every request)."""
        async with asyncio.timeout(30), self._changed:
            await self._changed.wait_for(predicate)
        return predicate()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
