"""What the chat adapters share: splitting long answers, and pacing message edits."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable

_FENCE = re.compile(r"^\s*(```|~~~)")


def _blocks(text: str) -> list[tuple[str, bool]]:
    """Paragraphs and fenced code blocks, in order, each with whether it is a fence."""
    blocks: list[tuple[str, bool]] = []
    lines: list[str] = []
    fence: str | None = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if fence is not None:
            lines.append(line)
            if match and match.group(1) == fence and not line.strip().strip(fence[0]):
                blocks.append(("\n".join(lines), True))
                lines, fence = [], None
        elif match:
            if lines:
                blocks.append(("\n".join(lines), False))
            lines, fence = [line], match.group(1)
        elif line.strip():
            lines.append(line)
        elif lines:
            blocks.append(("\n".join(lines), False))
            lines = []
    if lines:
        blocks.append(("\n".join(lines), fence is not None))
    return blocks


def _hard_split(text: str, limit: int) -> list[str]:
    """Split a paragraph at line breaks, else spaces, else anywhere."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit + 1)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n ") if text[cut : cut + 1] in ("\n", " ") else text[cut:]
    return [*pieces, text] if text else pieces


def _split_fence(block: str, limit: int) -> list[str]:
    """A code block too long for one message: several blocks, each fenced again."""
    first, *rest = block.split("\n")
    closing = rest.pop() if rest and _FENCE.match(rest[-1]) else first.strip()[:3]
    room = limit - len(first) - len(closing) - 2
    pieces = _hard_split("\n".join(rest), max(room, 1))
    return [f"{first}\n{piece}\n{closing}" for piece in pieces]


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into messages of at most `limit` characters, at paragraph boundaries.

    A fenced code block is never cut: it moves whole to the next message, or, when it is
    longer than a message, is split into several blocks that are each fenced again.
    """
    if len(text) <= limit:
        return [text]
    messages: list[str] = []
    current = ""
    for block, is_fence in _blocks(text):
        pieces = [block]
        if len(block) > limit:
            pieces = _split_fence(block, limit) if is_fence else _hard_split(block, limit)
        for piece in pieces:
            candidate = f"{current}\n\n{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
            else:
                messages.append(current)
                current = piece
    if current:
        messages.append(current)
    return messages


class Pacer:
    """Runs `flush` at most once per `interval` seconds while changes keep coming, and
    once more after the last change: message edits that never outrun a rate limit."""

    def __init__(self, flush: Callable[[], Awaitable[None]], interval: float) -> None:
        self._flush = flush
        self._interval = interval
        self._dirty = False
        self._flushing = False
        self._last = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def edited(self) -> None:
        """An edit just happened outside `flush` (the message was posted): pace from now."""
        self._last = asyncio.get_running_loop().time()

    def changed(self) -> None:
        self._dirty = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            await asyncio.sleep(max(0.0, self._last + self._interval - loop.time()))
            self._dirty, self._flushing = False, True
            self._last = loop.time()
            try:
                await self._flush()
            finally:
                self._flushing = False

    async def settle(self) -> None:
        """Stop pacing: wait out an edit in flight (a pending one is dropped), then until
        the interval since the last edit has passed, so a final edit may follow."""
        task, self._task = self._task, None
        self._dirty = False
        if task is not None:
            if not self._flushing:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._last + self._interval - loop.time()))
