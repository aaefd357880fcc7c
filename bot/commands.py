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
from bot.replies import FinalText, ReplyEvent, ReplySink
from bot.runtime import CopilotRuntime
from bot.sessions import SessionManager
from bot.status import collect_status, format_status
from bot.store import Store, ThreadRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommandCall:
    name: str
    args: str
    inbound: Inbound
    thread: ThreadRecord
    sink: ReplySink


Handler = Callable[[CommandCall], Awaitable[ReplyEvent]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    summary: str
    admin_only: bool
    handler: Handler


class Commands:
    def __init__(
        self,
        settings: Settings,
        runtime: CopilotRuntime,
        store: Store,
        sessions: SessionManager,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._store = store
        self._sessions = sessions
        self.table: dict[str, Command] = {
            command.name: command
            for command in (
                Command(
                    "reset", "forget this thread's conversation and start fresh", False, self._reset
                ),
                Command("branch", "copy this conversation into a new thread", False, self._branch),
                Command("status", "show the bot's health (admins only)", True, self._status),
                Command("help", "show this help", False, self._help),
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
            call.inbound.key.platform, call.inbound.user_id
        ):
            log.warning(
                "refused %s to %s:%s in %s",
                command.name,
                call.inbound.key.platform,
                call.inbound.user_id,
                call.inbound.key,
            )
            yield FinalText(f"Sorry, `{command.name}` is for admins only.", private=True)
            return
        yield await command.handler(call)

    async def _reset(self, call: CommandCall) -> ReplyEvent:
        await self._sessions.reset(call.thread, cause="reset")
        return FinalText(
            "Started a fresh session: I no longer remember anything said above this message."
        )

    async def _branch(self, call: CommandCall) -> ReplyEvent:
        if call.thread.status == "new":
            return FinalText("There is nothing to branch yet: we have not talked in this thread.")
        opened = await call.sink.open_thread(call.args or "Branch", call.thread.key)
        await self._sessions.branch(call.thread, opened.key)
        return FinalText(
            f"Branched this conversation into {opened.link}. "
            "Both threads remember everything up to here and go their own way from now on."
        )

    async def _status(self, call: CommandCall) -> ReplyEvent:
        report = await collect_status(self._runtime, self._store, self._sessions)
        return FinalText(format_status(report), private=True)

    async def _help(self, call: CommandCall) -> ReplyEvent:
        lines = [
            "I am a GitHub Copilot agent with one conversation per thread: "
            "everything said in this thread is my context.",
            "Commands:",
        ]
        lines += [f"  {c.name} - {c.summary}" for c in self.table.values()]
        return FinalText("\n".join(lines))
