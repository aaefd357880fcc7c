"""Command handlers: what each command of the catalogue (bot/commands.py) does.

The handler of a command is the method of `CommandHandlers` of the same name; `run`
applies what the catalogue says of every command (admins only, needs a thread, private
answer) before and around it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from bot.commands import COMMANDS, Command
from bot.config import Settings
from bot.errors import CannotOpenThread, ThreadUnreadable, UnknownMessage
from bot.inbound import Inbound
from bot.journal import Journal
from bot.profiles import Profiles, ThreadProfile
from bot.replies import ErrorReply, FinalText, ReplyEvent, ReplySink
from bot.sessions import SessionManager
from bot.status import Status
from bot.store import Retirement, ThreadRecord
from bot.thread_context import ThreadContext

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


# A command's reply: one event, or a stream of them (a summary as the model writes it).
Handler = Callable[[CommandCall], Awaitable[ReplyEvent] | AsyncGenerator[ReplyEvent, None]]

SUMMARIZE_PROMPT = (
    "Summarize the chat thread below for the people in it, in short bullet points under "
    "the headings Decisions, Open questions and Who owes what (name people as the thread "
    "does). Leave out a heading with nothing under it, and write nothing else."
)


@dataclass(eq=False)
class CommandHandlers:
    settings: Settings
    sessions: SessionManager
    journal: Journal
    status_report: Status
    context: ThreadContext
    profiles: Profiles
    _handlers: dict[str, Handler] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Every command of the catalogue has its handler (else this fails at start).
        self._handlers = {c.name: getattr(self, c.name) for c in COMMANDS}

    async def run(self, command: Command, call: CommandCall) -> AsyncGenerator[ReplyEvent, None]:
        if command.admin_only and not self.settings.is_admin(
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
        if command.needs_thread and call.inbound.key is None:
            yield FinalText(
                f"`{command.name}` works on a thread: use it inside the thread itself "
                "(mention me with the command there, or use the message shortcut).",
                private=True,
            )
            return
        if command.needs_conversation and call.thread is None:
            yield FinalText(
                f"I have not talked in this thread, so there is nothing to {command.name} "
                "here. Mention me with a question to start.",
                private=True,
            )
            return
        reply = self._handlers[command.name](call)
        if isinstance(reply, AsyncGenerator):
            async with aclosing(reply) as events:
                async for event in events:
                    yield _privately(event) if command.private else event
        else:
            event = await reply
            yield _privately(event) if command.private else event

    async def reset(self, call: CommandCall) -> ReplyEvent:
        # Nothing said before the reset reaches the new session, not even as thread context.
        reader = call.inbound.thread
        position = reader.position if reader else None
        await self.sessions.reset(call.in_thread, Retirement("reset", context_ref=position))
        return FinalText(
            "Started afresh: I no longer remember anything said above this message. "
            "Say `restore` to undo."
        )

    async def restore(self, call: CommandCall) -> ReplyEvent:
        if await self.sessions.restore(call.in_thread) is None:
            days = self.settings.restore_period_s / 86400
            return ErrorReply(
                f"There is no earlier conversation to restore here (resets can be undone "
                f"for {days:g} days)."
            )
        return FinalText("Restored: I remember the conversation as it was before the last reset.")

    async def branch(self, call: CommandCall) -> ReplyEvent:
        try:
            point = await self.journal.fork_point(call.in_thread, call.inbound.target_ref)
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
        await self.sessions.branch(call.in_thread, opened.key, point)
        return FinalText(
            f"Branched into {opened.link}: it remembers this conversation up to that point, "
            "and from now on the two threads go their own ways."
        )

    async def summarize(self, call: CommandCall) -> AsyncGenerator[ReplyEvent, None]:
        reader, key = call.inbound.thread, call.inbound.key
        if reader is None or key is None:
            yield ErrorReply("I can't read this conversation, so I can't summarize it.")
            return
        try:
            transcript = await self.context.transcript(reader)
        except ThreadUnreadable:
            yield ErrorReply(
                "I couldn't read this thread (I may not be a member of this channel, or its "
                "service is busy). Please invite me or try again in a minute."
            )
            return
        if not transcript:
            yield ErrorReply("There is nothing in this thread to summarize yet.")
            return
        prompt = f"{SUMMARIZE_PROMPT}\n\n{transcript}"
        async with (
            self.sessions.scratch_turn(key, prompt) as turn,
            aclosing(turn.events()) as events,
        ):
            async for event in events:
                yield event

    async def profile(self, call: CommandCall) -> ReplyEvent:
        return FinalText(self._profile_of(call).explain())

    async def model(self, call: CommandCall) -> ReplyEvent:
        profile = self._profile_of(call)
        choices = ", ".join(f"`{name}`" for name in profile.choices)
        if not call.args:
            current = f"`{profile.model}`" if profile.model else "the runtime's default"
            if len(profile.choices) < 2:
                return FinalText(f"I answer with {current} here; this channel offers no other.")
            return FinalText(
                f"I answer with {current} here. This channel offers {choices}: "
                "say `model NAME` to switch this thread."
            )
        name = call.args.split()[0].strip("`")
        if name not in profile.choices:
            offered = f"it offers {choices}" if choices else "it offers no choice"
            return ErrorReply(f"This channel's profile does not offer `{name}`: {offered}.")
        if call.thread is None:
            return ErrorReply("Ask me something here first; then you can switch my model.")
        await self.sessions.choose_model(call.thread, name)
        return FinalText(
            f"Switched this thread to `{name}`: the conversation so far stays, and my next "
            "answer comes from it."
        )

    def _profile_of(self, call: CommandCall) -> ThreadProfile:
        key = call.inbound.key
        assert key is not None  # the command needs a thread
        return self.profiles.resolve(key, call.thread.model if call.thread else None)

    async def status(self, call: CommandCall) -> ReplyEvent:
        text = await self.status_report.text()
        if call.inbound.key is not None:  # asked in a thread: which profile is its, and why
            text += f"\nprofiles of this thread: {self._profile_of(call).applies}"
        return FinalText(text)

    async def help(self, call: CommandCall) -> ReplyEvent:
        lines = [
            "I am a GitHub Copilot agent with one conversation per thread: everything said "
            "in this thread is my context, and nothing from other threads is.",
            "Commands:",
        ]
        lines += [f"  {c.name} - {c.summary}" for c in COMMANDS]
        return FinalText("\n".join(lines))


def _privately(event: ReplyEvent) -> ReplyEvent:
    """The answer of a command whose answers only the asker sees."""
    return dataclasses.replace(event, private=True) if isinstance(event, FinalText) else event
