"""The live reply: one answer as it streams into a chat, shared by the adapters.

A message grows at a paced rate while the model writes (`Pacer`: at most one edit per
interval), with the tools at work shown under it; then the exact final answer, split into
more messages past a platform's limit or sent as a file; a "working on it" sign when the
first reply takes a moment (`DelayedIndicator`); and `render_reply`, which shows a whole
reply stream that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from adapters.text import split_text
from bot.replies import (
    ErrorReply,
    FinalText,
    Notice,
    Queued,
    ReplyEvent,
    TextDelta,
    TextRestart,
    ToolProgress,
    ToolState,
)

log = logging.getLogger(__name__)


class DelayedIndicator:
    """A "working on it" sign, shown only if the first reply takes a moment (a reply
    quicker than `delay` needs none), and taken down when the reply is complete."""

    def __init__(
        self,
        show: Callable[[], Awaitable[bool]],
        hide: Callable[[], Awaitable[None]],
        delay: float = 0.5,
    ) -> None:
        self._show = show
        self._hide = hide
        self._delay = delay
        self._showing = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        await asyncio.sleep(self._delay)
        self._showing = True  # from here on, not cancelled halfway through a call
        self._showing = await self._show()

    def not_needed(self) -> None:
        """A reply is on its way: no sign, unless it is already up."""
        if not self._showing:
            self._task.cancel()

    async def stop(self) -> None:
        self.not_needed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._showing:
            await self._hide()


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
            try:
                await self._flush()
            finally:
                # Paced from when the edit is done, not begun: a request slow to arrive
                # would otherwise land less than `interval` before the next one.
                self._last = loop.time()
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


class Surface(Protocol):
    """Where a platform shows one reply: a message that grows, and more when needed."""

    async def open(self, text: str) -> str:
        """Post the message the answer grows in; return its reference."""
        ...

    async def edit(self, text: str) -> None:
        """Replace that message's text."""
        ...

    async def post(self, text: str) -> str:
        """Post a further message; return its reference."""
        ...

    async def upload(self, note: str, content: str) -> str:
        """Post `content` as a file, with a short `note`; return its reference."""
        ...


Formatter = Callable[[str], str]


class LiveReply:
    """One reply as it streams: a message edited at a paced rate while the answer grows
    (with the tools at work shown under it), then the exact final answer in that message,
    split into more messages past `limit`, or as a file past `file_threshold`.

    Platforms with their own way of growing a message (Slack's streaming) override the
    `_open`, `_flush`, `_last` and `_fail` steps.
    """

    def __init__(
        self,
        surface: Surface,
        *,
        limit: int,
        file_threshold: int,
        interval: float,
        formatter: Formatter = str,
        tool_line: Callable[[list[str]], str] = lambda names: f"\n_using {', '.join(names)}…_",
    ) -> None:
        self._surface = surface
        self._limit = limit
        self._file_threshold = file_threshold
        self._format = formatter
        self._tool_line = tool_line
        self._pacer = Pacer(self._flush, interval)
        self.text = ""  # the answer so far
        self.ref: str | None = None
        # call id -> (tool name, what it is doing)
        self.tools: dict[str, tuple[str, ToolState]] = {}

    async def add(self, text: str) -> None:
        self.text += text
        await self._changed()

    async def restart(self, text: str) -> None:
        """The answer so far is `text` again (the model call is being retried)."""
        self.text = text
        if self.ref is not None:
            self._pacer.changed()

    async def tool(self, call_id: str, name: str, state: ToolState) -> None:
        self.tools[call_id] = (name, state)
        await self._changed()

    def preview(self) -> str:
        room = self._limit - 100  # for the ellipsis and the tool line
        text = self._format(self.text[:room]) + ("…" if len(self.text) > room else "")
        running = [name for name, state in self.tools.values() if state == "running"]
        if running:
            text += self._tool_line(running)
        return text or "…"

    async def _changed(self) -> None:
        if self.ref is None:
            self.ref = await self._open()
            self._pacer.edited()
        else:
            self._pacer.changed()

    async def _open(self) -> str:
        return await self._surface.open(self.preview())

    async def _flush(self) -> None:
        try:
            await self._surface.edit(self.preview())
        except Exception as exc:  # the final edit carries everything anyway
            log.warning("editing a reply failed: %s", exc)

    async def finish(self, final: str) -> list[str]:
        """Show `final` exactly; return the references of what was posted."""
        await self._pacer.settle()
        as_file = len(final) > self._file_threshold
        parts = [] if as_file else split_text(final, self._limit)
        first = (
            f"The answer is {len(final):,} characters long, so here it is as a file."
            if as_file
            else parts.pop(0)
        )
        refs = [await self._last(first, whole=first == final)]
        refs += [await self._surface.post(self._format(part)) for part in parts]
        if as_file:
            refs.append(await self._surface.upload("The answer:", final))
        return refs

    async def _last(self, first: str, whole: bool) -> str:
        """Put the answer's first part (`whole`: all of it) in the message."""
        return await self._replace(self._format(first))

    async def fail(self, message: str) -> list[str]:
        await self._pacer.settle()
        self.tools.clear()
        return [await self._fail(f"⚠️ {message}")]

    async def _fail(self, warning: str) -> str:
        return await self._replace(f"{self.preview()}\n\n{warning}" if self.text else warning)

    async def _replace(self, text: str) -> str:
        """The last edit of the message (or the message itself, if none was posted yet);
        should the platform refuse the edit, the text is posted anew."""
        if self.ref is None:
            return await self._surface.open(text)
        try:
            await self._surface.edit(text)
        except Exception as exc:
            log.warning("the final edit failed (%s): posting it instead", exc)
            return await self._surface.post(text)
        return self.ref


async def render_reply(
    events: AsyncIterator[ReplyEvent],
    live: LiveReply,
    indicator: DelayedIndicator,
    *,
    private: Callable[[str], Awaitable[list[str]]],
    notice: Callable[[str], Awaitable[str]],
    queued: Callable[[], Awaitable[None]],
    all_private: bool = False,
) -> list[str]:
    """Show a reply stream: the answer grows in `live`; answers meant only for the asker
    (or every answer, with `all_private`) go through `private`, the bot's own notes
    through `notice`, and `queued` signs that the message waits its turn. Returns the
    references of what was posted."""
    refs: list[str] = []
    try:
        async for event in events:
            indicator.not_needed()
            match event:
                case TextDelta(text):
                    await live.add(text)
                case TextRestart(text):
                    await live.restart(text)
                case ToolProgress(call_id, name, state):
                    await live.tool(call_id, name, state)
                case FinalText(text, is_private) if is_private or all_private:
                    refs += await private(text)
                case FinalText(text):
                    refs += await live.finish(text)
                case Notice(text):
                    refs.append(await notice(text))
                case Queued():
                    await queued()
                case ErrorReply(message):
                    refs += await live.fail(message)
    finally:
        await indicator.stop()
    return refs
