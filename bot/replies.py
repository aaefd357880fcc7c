"""The reply stream: platform-neutral events a turn or command produces, and the sink
protocol adapters implement to show them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.thread_key import ThreadKey


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer as the model streams it."""

    text: str


@dataclass(frozen=True, slots=True)
class TextRestart:
    """The model call under way failed part-way and is being retried: what it streamed is
    void, and the answer so far is `text` again."""

    text: str


ToolState = Literal["running", "done", "failed"]


@dataclass(frozen=True, slots=True)
class ToolProgress:
    """A tool the agent uses has started (`running`) or finished (`done`, `failed`)."""

    call_id: str
    name: str
    state: ToolState


@dataclass(frozen=True, slots=True)
class Usage:
    """How full the session's context window is after this turn's model calls."""

    context_tokens: int
    context_limit: int


@dataclass(frozen=True, slots=True)
class FinalText:
    """The complete answer (or command reply). `private` replies go only to the asker
    where the platform can do that (ephemeral messages)."""

    text: str
    private: bool = False


@dataclass(frozen=True, slots=True)
class Notice:
    """A short note from the bot itself (a summary reset, ...), not from the agent."""

    text: str


@dataclass(frozen=True, slots=True)
class Queued:
    """The message was taken and waits behind others in its thread; the sink's next
    stream for it takes the sign down."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Something went wrong; `message` is written for the person in the thread."""

    message: str


@dataclass(frozen=True, slots=True)
class ApprovalCard:
    """The agent asks to do something its profile allows only once approved
    (bot/approvals.py): a message in the thread with the choices while it is open, and
    how it ended once it is not. The buttons carry `approval_id` and a choice."""

    approval_id: str
    asker: str  # the platform user id of whoever the agent was answering
    action: str  # what the agent wants to do, in words
    detail: str  # the command, diff or URL, shortened
    outcome: str | None = None  # None: open; else how it ended, in a line


ApprovalChoice = Literal["once", "thread", "deny"]
# An approval card's buttons, in order: the choice each makes, and its label.
APPROVAL_CHOICES: tuple[tuple[ApprovalChoice, str], ...] = (
    ("once", "Approve once"),
    ("thread", "Approve for this thread"),
    ("deny", "Deny"),
)


@dataclass(frozen=True, slots=True)
class OpenedThread:
    """A thread an adapter opened for the core; `link` is Markdown (a link, or the
    platform's own mention syntax) leading to it."""

    key: ThreadKey
    link: str


ReplyEvent = (
    TextDelta | TextRestart | ToolProgress | Usage | FinalText | Notice | Queued | ErrorReply
)


async def single(event: ReplyEvent) -> AsyncIterator[ReplyEvent]:
    """A reply stream of one event (command answers, notes, errors)."""
    yield event


class ReplySink(Protocol):
    """An adapter's handle on the thread an inbound message came from."""

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        """Show the stream in the thread; return references of the messages posted."""
        ...

    async def decline(self, text: str) -> list[str]:
        """Say no (not allowed here, too many messages): to the asker alone where the
        platform can, opening nothing (no thread, no progress sign); return references
        of what was posted."""
        ...

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        """Start a new thread next to `origin` (for /branch), linking back to it, or raise
        CannotOpenThread."""
        ...

    async def show_approval(self, card: ApprovalCard, ref: str | None = None) -> str | None:
        """Post `card` in the thread (or, given the `ref` of its message, show its new
        state there); its message's reference, None where the platform shows no cards."""
        ...


class Platform(Protocol):
    """What the core needs of an adapter beyond the sink of one inbound message."""

    name: str  # the ThreadKey platform it serves

    @property
    def connected(self) -> bool:
        """Whether it can currently reach its chat service (for /readyz)."""
        ...

    @property
    def trouble(self) -> str | None:
        """What keeps it from working fully while it serves (for admins: the log, /readyz
        and `status`), or None."""
        ...

    def sink(self, key: ThreadKey) -> ReplySink:
        """A sink posting into an existing thread, for messages nobody asked for
        (summary reset notes)."""
        ...
