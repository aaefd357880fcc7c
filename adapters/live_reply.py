"""The live reply: one answer as it streams into a chat, shared by the adapters.

A message grows at a paced rate while the model writes (`Pacer`: at most one edit per
interval), with the tools at work shown under it; it is posted only after a short hold,
so an answer written by then lands whole in one post. A message that fills up while the
model still writes gets its part of the answer for good and the answer goes on in a new
one. Then the exact final answer, split into messages as `split_text` splits it (or sent
as a file); a "working on it" sign when the first reply takes a moment
(`DelayedIndicator`); and `render_reply`, which shows a whole reply stream that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from adapters.text import Cut, cut, split_text
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

# How long the first post waits for more of the answer (never longer than the edit
# interval): an answer written by then lands whole, instead of as a first post and an
# edit an interval later. A constant rather than "until the first sentence": a short
# answer's first sentence comes early, and posting it then would make the rest wait out
# the interval again. 0.35 s is about the time a short answer takes to arrive.
HOLD_S = 0.35
# What a message the answer no longer needs says (a retried answer came out shorter).
ABOVE = "(the answer is above)"


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
    once more after the last change: message edits that never outrun a rate limit. The
    first flush waits `hold` after the first change."""

    def __init__(
        self, flush: Callable[[], Awaitable[None]], interval: float, hold: float = 0.0
    ) -> None:
        self._flush = flush
        self._interval = interval
        self._hold = hold
        self._dirty = False
        self._flushing = False
        self._last = float("-inf")
        self._first: float | None = None  # when the first flush may come
        self._task: asyncio.Task[None] | None = None

    def edited(self) -> None:
        """An edit just happened outside `flush` (the message was posted): pace from now."""
        self._last = asyncio.get_running_loop().time()

    def changed(self) -> None:
        self._dirty = True
        if self._first is None:
            self._first = asyncio.get_running_loop().time() + self._hold
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            due = max(self._last + self._interval, self._first or 0.0)
            await asyncio.sleep(max(0.0, due - loop.time()))
            self._dirty, self._flushing = False, True
            try:
                await self._flush()
            finally:
                # Paced from when the edit is done, not begun: a request slow to arrive
                # would otherwise land less than `interval` before the next one.
                self._last = loop.time()
                self._flushing = False

    async def settle(self) -> None:
        """Stop pacing: wait out an edit in flight (a pending one is dropped, and so is
        the rest of the hold), then until the interval since the last edit has passed,
        so a final edit may follow."""
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
        """Post the message the answer begins in; return its reference."""
        ...

    async def edit(self, ref: str, text: str) -> None:
        """Replace the text of the message `ref`."""
        ...

    async def post(self, text: str) -> str:
        """Post a further message; return its reference."""
        ...

    async def upload(self, note: str, content: str) -> str:
        """Post `content` as a file, with a short `note`; return its reference."""
        ...


Formatter = Callable[[str], str]


@dataclass(slots=True)
class _Filled:
    """A message the answer filled while it was written."""

    ref: str
    part: str  # its part of the answer
    exact: bool  # whether it shows just that (a stream may have run past it)


class LiveReply:
    """One reply as it streams: a message edited at a paced rate while the answer grows
    (with the tools at work shown under it), posted after a short hold (`HOLD_S`); when
    it fills up, it gets its part of the answer and the answer goes on in a new message.
    Then the exact final answer across those messages, split as `split_text` splits it
    past `limit` (so the parts already shown stay as they are), or as a file past
    `file_threshold`.

    Platforms with their own way of growing a message (Slack's streaming) override the
    `_open`, `_grow`, `_close` and `_fail` steps.
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
        self._pacer = Pacer(self._flush, interval, hold=min(HOLD_S, interval))
        self.text = ""  # the answer so far
        self.ref: str | None = None  # the message it grows in
        # call id -> (tool name, what it is doing)
        self.tools: dict[str, tuple[str, ToolState]] = {}
        self._filled: list[_Filled] = []
        # The growing message's part of the answer is `_reopen + text[_resume:]`.
        self._resume = 0
        self._reopen = ""

    def _part(self, text: str) -> str:
        """The growing message's part of the answer, were it `text`."""
        return self._reopen + text[self._resume :]

    @property
    def live(self) -> str:
        return self._part(self.text)

    async def add(self, text: str) -> None:
        self.text += text
        self._pacer.changed()

    async def restart(self, text: str) -> None:
        """The answer so far is `text` again (the model call is being retried)."""
        self.text = text
        if self.ref is not None:
            self._pacer.changed()

    async def tool(self, call_id: str, name: str, state: ToolState) -> None:
        self.tools[call_id] = (name, state)
        self._pacer.changed()

    def preview(self) -> str:
        room = self._limit - 100  # for the ellipsis and the tool line
        live = self.live
        text = self._format(live[:room]) + ("…" if len(live) > room else "")
        running = [name for name, state in self.tools.values() if state == "running"]
        if running:
            text += self._tool_line(running)
        return text or "…"

    async def _flush(self) -> None:
        try:
            await self._trim()
            if self.ref is None:
                self.ref = await self._open()
            elif (at := self._overflow()) is not None:
                await self._roll(at)
            else:
                await self._grow()
        except Exception as exc:  # the final text carries everything anyway
            log.warning("showing a reply as it grows failed: %s", exc)

    async def _trim(self) -> None:
        """Messages a stream ran past their part: edit them to it (an interval on)."""
        for filled in self._filled:
            if not filled.exact:
                await self._surface.edit(filled.ref, self._format(filled.part))
                filled.exact = True

    def _overflow(self) -> Cut | None:
        """Where the growing message is full, if it is; past the file threshold the
        answer will be a file, and more messages would only repeat it."""
        shown = sum(len(filled.part) for filled in self._filled)
        # Cut only once the cut cannot move (see `cut`): where the final split cuts.
        if len(self.live) < self._limit + 2 or shown >= self._file_threshold:
            return None
        return cut(self.live, self._limit)

    async def _roll(self, at: Cut) -> None:
        """The growing message is full: it gets its part for good, and the answer goes on
        in a new message at once, not when it is done."""
        exact = await self._close(self._format(at.head))
        self._filled.append(_Filled(str(self.ref), at.head, exact))
        self._resume += at.resume - len(self._reopen)
        self._reopen = at.reopen
        self.ref = None
        self.ref = await self._open()

    async def _open(self) -> str:
        return await self._post(self.preview())

    async def _post(self, text: str) -> str:
        """Post a message of the answer: the first, or one that goes on from the last."""
        return await (self._surface.post if self._filled else self._surface.open)(text)

    async def _grow(self) -> None:
        await self._surface.edit(str(self.ref), self.preview())

    async def _close(self, text: str) -> bool:
        """Give the growing message its last text; whether it shows just that now."""
        await self._surface.edit(str(self.ref), text)
        return True

    async def finish(self, final: str) -> list[str]:
        """Show `final` exactly; return the references of what was posted."""
        await self._pacer.settle()
        refs = [filled.ref for filled in self._filled]
        if len(final) > self._file_threshold:
            # The parts already shown stay: the file holds the whole answer.
            note = f"The answer is {len(final):,} characters long, so here it is as a file."
            refs.append(await self._replace(note))
            refs.append(await self._surface.upload("The answer:", final))
            return refs
        parts = split_text(final, self._limit)
        # A retried answer may come out shorter than the messages it already filled.
        parts += [ABOVE] * (len(self._filled) + 1 - len(parts))
        for filled, part in zip(self._filled, parts, strict=False):
            if part != filled.part or not filled.exact:  # a retry changed it
                await self._surface.edit(filled.ref, self._format(part))
        parts = parts[len(self._filled) :]
        refs.append(await self._replace(self._format(parts.pop(0))))
        refs += [await self._surface.post(self._format(part)) for part in parts]
        return refs

    async def fail(self, message: str) -> list[str]:
        await self._pacer.settle()
        self.tools.clear()
        return [await self._fail(f"⚠️ {message}")]

    async def _fail(self, warning: str) -> str:
        return await self._replace(f"{self.preview()}\n\n{warning}" if self.live else warning)

    async def _replace(self, text: str) -> str:
        """Give the growing message its last text (or post it, if none is up yet); should
        the platform refuse the edit, the text is posted anew."""
        if self.ref is None:
            return await self._post(text)
        try:
            if not await self._close(text):
                self._pacer.edited()  # a stream that ran past it: edit it when that may be
                await self._pacer.settle()
                await self._surface.edit(self.ref, text)
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
