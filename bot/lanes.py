"""Lanes: one job at a time per thread, in arrival order; different threads in parallel."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class Ticket:
    """A place in one thread's lane. `await ready()` waits for the jobs ahead;
    `release()` (always, e.g. in `finally`) lets the next one go."""

    def __init__(self, lanes: Lanes, key: Hashable, ahead: asyncio.Future[None] | None) -> None:
        self._lanes = lanes
        self._counted = key is not None  # a thread's job, not one of no thread
        self._key = key
        self._ahead = ahead
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done.add_done_callback(lambda done: lanes._left(key, done))
        self._running = False
        self._released = False

    @property
    def first(self) -> bool:
        """Nothing is ahead: `ready()` will not wait."""
        return self._ahead is None or self._ahead.done()

    async def ready(self) -> None:
        if self._ahead is not None:
            # Shielded: a cancelled waiter must not cancel the job ahead of it.
            await asyncio.shield(self._ahead)
        if self._counted:
            self._lanes.queued -= 1
            self._lanes.running += 1
        self._running = True

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._counted and self._running:
            self._lanes.running -= 1
        elif self._counted:
            self._lanes.queued -= 1
        if self._ahead is None or self._ahead.done():
            self._done.set_result(None)
            self._lanes._left(self._key, self._done)  # now: `busy` is asked right after
        else:
            # Leaving before our turn: whoever is behind us still waits for the job ahead.
            self._ahead.add_done_callback(lambda _: self._done.set_result(None))


class Lanes:
    def __init__(self) -> None:
        self._tails: dict[Hashable, asyncio.Future[None]] = {}
        # Jobs of threads (a job of no thread, key None, is not counted: `status` is one).
        self.queued = 0
        self.running = 0

    def join(self, key: Hashable) -> Ticket:
        """Take the next place in `key`'s lane. Synchronous, so arrival order is kept."""
        ticket = Ticket(self, key, self._tails.get(key))
        self._tails[key] = ticket._done
        self.queued += key is not None
        return ticket

    def busy(self, key: Hashable) -> bool:
        """Whether a job for `key` is running or waiting."""
        return key in self._tails

    def _left(self, key: Hashable, done: asyncio.Future[None]) -> None:
        if self._tails.get(key) is done:
            del self._tails[key]
