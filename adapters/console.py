"""Console adapter: chat with the bot in a terminal, through the same router as every platform.

`/thread NAME` switches threads, `/quit` leaves; everything else goes to the router, so
the in-thread commands (`/reset`, `/branch`, `/restore`, `/status`, `/help`) work as they do
elsewhere.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from typing import TextIO

from adapters.live_reply import DelayedIndicator
from bot.inbound import Dispatcher, Inbound
from bot.replies import (
    ApprovalCard,
    ErrorReply,
    FinalText,
    Notice,
    OpenedThread,
    ReplyEvent,
    ReplySink,
    TextDelta,
    TextRestart,
    ToolProgress,
)
from bot.thread_key import ThreadKey

WORKSPACE = "local"
CHANNEL = "terminal"


def console_key(name: str) -> ThreadKey:
    return ThreadKey("console", WORKSPACE, CHANNEL, name)


async def stdin_lines() -> AsyncIterator[str]:
    """Lines from stdin, read on a daemon thread so a pending read never blocks exit."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, name="console-stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


async def _nothing() -> None:
    """What taking the console's waiting line down takes: nothing, it scrolls away."""


class ConsoleSink:
    """Prints reply streams of one thread as they arrive."""

    def __init__(self, console: ConsoleAdapter, key: ThreadKey) -> None:
        self._console = console
        self._key = key

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        out = self._console.out
        streamed = False
        waiting = DelayedIndicator(self._waiting, _nothing)
        async for event in events:
            waiting.not_needed()
            match event:
                case TextDelta(text):
                    out.write(text)
                    streamed = True
                case TextRestart():
                    out.write("\n[the model was cut off; it starts its answer over]\n")
                case ToolProgress(name=name, state="running"):
                    out.write(f"\n[using {name}...]\n")
                case ToolProgress(name=name, state=state):
                    out.write(f"[{name} {state}]\n")
                case FinalText(text):
                    out.write("\n" if streamed else text + "\n")
                case Notice(text):
                    where = (
                        "" if self._key.thread == self._console.thread else f"[{self._key.thread}] "
                    )
                    out.write(f"~ {where}{text}\n")
                case ErrorReply(message):
                    out.write(("\n" if streamed else "") + f"! {message}\n")
            out.flush()
        await waiting.stop()
        return [f"console:{next(self._console.counter)}"]

    async def _waiting(self) -> bool:
        """Said once a reply takes a moment, so that a quiet terminal is not a hung one."""
        self._console.out.write("~ waiting for the model...\n")
        self._console.out.flush()
        return True

    async def decline(self, text: str) -> list[str]:
        self._console.out.write(f"! {text}\n")
        self._console.out.flush()
        return [f"console:{next(self._console.counter)}"]

    async def show_approval(self, card: ApprovalCard, ref: str | None = None) -> str | None:
        """The console has no buttons: the card is shown, and the request refused."""
        if ref is None:
            self._console.out.write(
                f"~ the agent asked to {card.action}; approvals need Slack or Discord, so no\n"
            )
            self._console.out.flush()
        return None

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        name = f"{origin.thread}-{title.lower().replace(' ', '-')}-{next(self._console.counter)}"
        self._console.out.write(
            f"(opened thread {name!r}, branched from {origin.thread!r}; "
            f"/thread {name} to go there)\n"
        )
        return OpenedThread(console_key(name), f"thread {name!r}")


class ConsoleAdapter:
    name = "console"
    connected = True  # a terminal is always there
    trouble = None

    def __init__(
        self,
        router: Dispatcher,
        lines: AsyncIterator[str],
        out: TextIO = sys.stdout,
        *,
        interactive: bool = False,
    ) -> None:
        self._router = router
        self._lines = lines
        self.out = out
        self._interactive = interactive
        self._user = getpass.getuser()
        self.thread = "main"
        self.counter = itertools.count(1)

    def sink(self, key: ThreadKey) -> ReplySink:
        return ConsoleSink(self, key)

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _prompt(self) -> None:
        if self._interactive:
            self.out.write(f"{self.thread}> ")
            self.out.flush()

    async def run(self) -> None:
        self._say(
            f"threadpilot console - thread {self.thread!r}. Type a message; /help for "
            "commands, /thread NAME to switch threads, /quit to leave."
        )
        self._prompt()
        async for line in self._lines:
            text = line.rstrip("\r\n")
            if text.strip() in ("/quit", "/exit"):
                break
            if text.startswith("/thread"):
                name = text.removeprefix("/thread").strip()
                if name:
                    self.thread = name
                    self._say(f"(now in thread {name!r})")
                else:
                    self._say(f"(in thread {self.thread!r}; /thread NAME switches)")
            elif text.strip():
                key = console_key(self.thread)
                inbound = Inbound(event_id=uuid.uuid4().hex, key=key, user_id=self._user, text=text)
                await self._router.dispatch(inbound, ConsoleSink(self, key))
            self._prompt()
