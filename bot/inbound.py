"""What adapters hand the core: an inbound message or command, the files and thread it
comes with, and the `Dispatcher` they hand it to.

Adapters program against this module and bot/replies.py alone (and the catalogue of
commands); none of it touches the Copilot runtime or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bot.replies import ApprovalCard, ApprovalChoice, ErrorReply, ReplySink, single
from bot.thread_key import ThreadKey


@dataclass(frozen=True, slots=True)
class InboundFile:
    """A file attached to an inbound message, not yet downloaded."""

    name: str
    mime_type: str
    size: int
    fetch: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """One message of a thread as the platform shows it.

    `text` is None where the platform does not let the bot read it (Discord without the
    Message Content intent). `ref` and `at` are the platform's reference and time (epoch
    seconds); `by_bot` marks this bot's own messages.
    """

    ref: str
    author_id: str
    author_name: str
    text: str | None
    at: float
    files: tuple[str, ...] = ()
    by_bot: bool = False


class ThreadReader(Protocol):
    """What an adapter lets the core read of the conversation an inbound message is in."""

    @property
    def position(self) -> str:
        """Where the inbound message sits in the thread: the platform reference that
        `earlier` reads up to, and the cursor the core keeps for the next read."""
        ...

    async def speaker(self) -> str:
        """The display name of the inbound message's author."""
        ...

    async def earlier(self, after: str | None) -> Sequence[ThreadMessage]:
        """The thread's messages before this one (and after the position `after`, if
        given), oldest first. Raises ThreadUnreadable."""
        ...


@dataclass(frozen=True, slots=True)
class Inbound:
    """What an adapter hands to the router.

    `event_id` is the platform's own id of the delivery (Slack `event_id`, Discord message
    or interaction id); a second delivery with the same id is never answered again.
    `key` is None where the platform does not say which thread (a Slack slash command):
    then only commands that need no thread (status, help) can run.
    `command` is set when the adapter recognised a command form of its platform (a slash
    command, a mention plus one word); the router also recognises text starting with
    `/name`. `message_ref` is the platform's reference of this message, when it is one (the
    journal maps it to the turn, so a later branch can start there). `target_ref` is the
    message a command was used on (a message shortcut), e.g. the branch point.

    The facts the router decides by (bot/routing.py): `addressed` (a mention, a slash
    command, a shortcut: the person asked the bot), `in_dm` (a direct conversation with
    the bot) and `from_bot` (another bot wrote it). Access checks (bot/access.py) also
    read `author_workspace` (the author's own workspace, where it is not the thread's:
    Slack Connect) and `shared` (a conversation shared with another organisation).
    `thread` reads the conversation around the message, where the platform has one.

    Replicas: `redo` is what the adapter can deliver the message again from, on another
    replica (the platform's own payload; None where it cannot); `handed` marks such a
    delivery, handed over by the replica that received it to the one whose thread it is.
    """

    event_id: str
    key: ThreadKey | None
    user_id: str
    text: str
    command: str | None = None
    message_ref: str | None = None
    target_ref: str | None = None
    files: tuple[InboundFile, ...] = ()
    platform: str = ""  # defaults to the key's; needed when there is no key
    addressed: bool = True
    in_dm: bool = False
    from_bot: bool = False
    author_workspace: str | None = None
    shared: bool = False
    thread: ThreadReader | None = None
    redo: str | None = None
    handed: bool = False

    def __post_init__(self) -> None:
        if not self.platform:
            if self.key is None:
                raise ValueError("an inbound without a thread key must name its platform")
            object.__setattr__(self, "platform", self.key.platform)


@runtime_checkable
class Redelivering(Protocol):
    """An adapter that can deliver a message again from its `Inbound.redo`, as if it had
    just received it (with `handed` set)."""

    async def redeliver(self, redo: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """Someone pressed a button of an approval card."""

    approval_id: str
    platform: str
    user_id: str
    choice: ApprovalChoice


@dataclass(frozen=True, slots=True)
class Decided:
    """What the adapter shows for a decision: the card as it now is (None: unchanged)
    and a word for the person who pressed (None: nothing), only to them."""

    card: ApprovalCard | None
    private: str | None = None


class Dispatcher(Protocol):
    """The core, as adapters see it: where inbound messages go (bot/router.py)."""

    async def dispatch(self, inbound: Inbound, sink: ReplySink) -> None:
        """Handle one inbound message completely (answer, keep, or ignore it); never
        raises for a bad message."""
        ...

    async def decide(self, decision: Decision) -> Decided:
        """Take a decision on an approval card; never raises for a bad one."""
        ...


NOT_STARTED = (
    "I could not start just now, so I did not take this message. Please send it again in a moment."
)


class CoreToCome:
    """The core for adapters that connect while it is still starting: what they receive
    waits until `serve` hands over the real dispatcher, so that the platforms take events
    as soon as they connect. Should the core not start (`fail`), each message waiting is
    answered that it was not taken, rather than lost without a word."""

    def __init__(self) -> None:
        self._core: asyncio.Future[Dispatcher | None] = asyncio.get_running_loop().create_future()
        self._waiting = 0  # messages waiting for the core, or being told it did not start
        self._none_waiting = asyncio.Event()
        self._none_waiting.set()

    def serve(self, core: Dispatcher) -> None:
        self._core.set_result(core)

    async def fail(self) -> None:
        """The core did not start: tell what waits for it so, and wait until it is told."""
        if not self._core.done():
            self._core.set_result(None)
        await self._none_waiting.wait()

    @contextlib.asynccontextmanager
    async def _wait(self) -> AsyncIterator[Dispatcher | None]:
        """The core, once it is there (None: it did not start), counted as waiting
        until the block ends."""
        self._waiting += 1
        self._none_waiting.clear()
        try:
            yield await asyncio.shield(self._core)
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._none_waiting.set()

    async def dispatch(self, inbound: Inbound, sink: ReplySink) -> None:
        async with self._wait() as core:
            if core is None:
                await sink.render(single(ErrorReply(NOT_STARTED)))
                return
        await core.dispatch(inbound, sink)

    async def decide(self, decision: Decision) -> Decided:
        async with self._wait() as core:
            if core is None:
                return Decided(None, NOT_STARTED)
        return await core.decide(decision)
