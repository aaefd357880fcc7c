"""Commands: the platform-neutral in-thread commands (reset, branch, status, help).

Adapters only recognise their platform's command forms and set `Inbound.command`; what a
command does is decided here. Commands never call the model.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from bot.config import Settings
from bot.inbound import Inbound
from bot.journal import Journal, UnknownMessage
from bot.replies import CannotOpenThread, ErrorReply, FinalText, ReplyEvent, ReplySink
from bot.sessions import SessionManager
from bot.status import Status
from bot.store import ThreadRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommandCall:
    name: str
    args: str
    inbound: Inbound
    thread: ThreadRecord | None  # None: used where the platform named no thread
    sink: ReplySink

    @property
    def in_thread(self) -> ThreadRecord:
        """The thread, for commands that need one (`run` makes sure there is one)."""
        if self.thread is None:
            raise RuntimeError(f"{self.name} needs a thread")
        return self.thread


Handler = Callable[[CommandCall], Awaitable[ReplyEvent]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    handler: Handler
    admin_only: bool = False
    needs_thread: bool = True


class Commands:
    def __init__(
        self, settings: Settings, sessions: SessionManager, journal: Journal, status: Status
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._journal = journal
        self._status_source = status
        self.table: dict[str, Command] = {
            command.name: command
            for command in (
                Command("reset", "forget this conversation and start afresh", self._reset),
                Command(
                    "branch",
                    "copy this conversation (up to a message, if you pick one) into a new thread",
                    self._branch,
                ),
                Command("restore", "undo the last reset or checkpoint", self._restore),
                Command(
                    "status",
                    "the bot's health (admins only)",
                    self._status,
                    admin_only=True,
                    needs_thread=False,
                ),
                Command("help", "this help", self._help, needs_thread=False),
            )
        }

    def parse(self, inbound: Inbound) -> tuple[Command, str] | None:
        """The command an inbound message asks for, with its arguments, if any.

        Text starting with `/name` is a command only for known names, so a message
        like "/etc/hosts is empty" still reaches the agent.
        """
        if inbound.command is not None:
            name, args = inbound.command, inbound.text
        elif inbound.text.startswith("/"):
            name, _, args = inbound.text[1:].partition(" ")
        else:
            return None
        command = self.table.get(name.strip().lower())
        return (command, args.strip()) if command else None

    async def run(self, command: Command, call: CommandCall) -> AsyncGenerator[ReplyEvent, None]:
        if command.admin_only and not self._settings.is_admin(
            call.inbound.platform, call.inbound.user_id
        ):
            log.warning(
                "refused %s to %s:%s in %s",
                command.name,
                call.inbound.platform,
                call.inbound.user_id,
                call.inbound.key,
            )
            yield FinalText(f"Sorry, `{command.name}` is for admins only.", private=True)
            return
        if command.needs_thread and call.thread is None:
            yield FinalText(
                f"`{command.name}` works on a thread: use it inside the thread itself "
                "(mention me with the command there, or use the message shortcut).",
                private=True,
            )
            return
        yield await command.handler(call)

    async def _reset(self, call: CommandCall) -> ReplyEvent:
        await self._sessions.reset(call.in_thread, cause="reset")
        return FinalText(
            "Started afresh: I no longer remember anything said above this message. "
            "Say `restore` to undo."
        )

    async def _restore(self, call: CommandCall) -> ReplyEvent:
        if await self._sessions.restore(call.in_thread) is None:
            days = self._settings.restore_period_s / 86400
            return ErrorReply(
                f"There is no earlier conversation to restore here (resets can be undone "
                f"for {days:g} days)."
            )
        return FinalText("Restored: I remember the conversation as it was before the last reset.")

    async def _branch(self, call: CommandCall) -> ReplyEvent:
        try:
            point = await self._journal.fork_point(call.in_thread, call.inbound.target_ref)
        except UnknownMessage:
            return ErrorReply(
                "I can't branch from that message: it is not part of my conversation in "
                "this thread (or too old)."
            )
        if point is None:
            return ErrorReply("There is nothing to branch yet: we have not talked here.")
        try:
            opened = await call.sink.open_thread(call.args or "Branch", call.in_thread.key)
        except CannotOpenThread as exc:
            return ErrorReply(str(exc))
        await self._sessions.branch(call.in_thread, opened.key, point)
        return FinalText(
            f"Branched into {opened.link}: it remembers this conversation up to that point, "
            "and from now on the two threads go their own ways."
        )

    async def _status(self, call: CommandCall) -> ReplyEvent:
        return FinalText(await self._status_source.text(), private=True)

    async def _help(self, call: CommandCall) -> ReplyEvent:
        lines = [
            "I am a GitHub Copilot agent with one conversation per thread: everything said "
            "in this thread is my context, and nothing from other threads is.",
            "Commands:",
        ]
        lines += [f"  {c.name} - {c.summary}" for c in self.table.values()]
        return FinalText("\n".join(lines))
