"""Router: where every inbound message goes, and the journal entry that follows it.

For each message: decide whether it is for the bot (bot/routing.py; a message of a bot
thread that is not is journaled, for the agent to read with its next turn); take its
place in the thread's lane (arrival order), claim its event id in the journal (a
duplicate stops here, whichever replica took it first), say so if it waits behind others,
wait for the jobs ahead; hand it over to the replica that holds the thread's session, if
another does; else wait for the thread's lease (bot/leases.py: behind what other
replicas received there before), then run it as a command or a turn, with what the agent
should know of the thread, and let the adapter's sink show the reply stream, for as long
as this replica still owns the thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

from bot.access import Access
from bot.approvals import Approvals
from bot.attachments import accept_files
from bot.budgets import Budgets
from bot.command_handlers import CommandCall, CommandHandlers
from bot.commands import Command, parse
from bot.config import Settings
from bot.errors import LeaseLost, RuntimeUnavailable, StoreError
from bot.inbound import Decided, Decision, Inbound
from bot.journal import Journal, TurnOutcome
from bot.logs import turn_context
from bot.metrics import Metrics
from bot.redaction import removal_note
from bot.replies import ErrorReply, Notice, Queued, ReplyEvent, ReplySink, single
from bot.routing import Route, route
from bot.sessions import SessionManager
from bot.store import Store, ThreadRecord
from bot.summary_reset import SummaryReset
from bot.thread_context import Arrival, ThreadContext, framed, speaker_line
from bot.turns import Turn

log = logging.getLogger(__name__)

EMPTY_PROMPT = "Please write a message for me to answer (it was empty)."
FILES_ONLY_PROMPT = "Please look at the attached files."
PROMPT_TOO_LONG = (
    "Your message is {:,} characters long; I take up to {:,}. "
    "Please shorten it, or attach the long part as a text file."
)
RESTARTING = "My agent runtime is restarting. Please try again in a moment."
STOPPED_FOR_SHUTDOWN = (
    "I had to stop before finishing this answer because I'm restarting. "
    "Please ask again in a minute."
)
_STOPPING_S = 10.0  # for stopped answers to say so and record it
# Shutting down, deliveries the platform libraries received before they stopped may still
# be on their way in (Bolt hands an event over a few steps after it arrived): drain waits
# until none has come for this long.
_SETTLE_S = 0.5
STORE_FAILING = (
    "I couldn't save this conversation: my database refused a write (its disk may be "
    "full), so I stopped rather than lose track of it. Please try again later; an admin "
    "should check my logs."
)
INTERNAL_ERROR = (
    "Sorry, something went wrong on my side while handling that. "
    "Please try again; if it keeps happening, tell an admin."
)
# What people read when handling their message failed, by what failed (else INTERNAL_ERROR).
FAILURE_WORDS: tuple[tuple[type[Exception], str], ...] = (
    (RuntimeUnavailable, RESTARTING),
    (StoreError, STORE_FAILING),
)


async def _stream(
    first: Sequence[ReplyEvent], rest: AsyncIterator[ReplyEvent] | None = None
) -> AsyncIterator[ReplyEvent]:
    for event in first:
        yield event
    if rest is not None:
        async for event in rest:
            yield event


@dataclass(kw_only=True, eq=False)
class Router:
    settings: Settings
    access: Access
    store: Store
    journal: Journal
    sessions: SessionManager
    commands: CommandHandlers
    summary_reset: SummaryReset
    context: ThreadContext
    approvals: Approvals
    budgets: Budgets
    metrics: Metrics
    _draining: bool = field(default=False, init=False)
    _active: set[asyncio.Task[object]] = field(default_factory=set, init=False)
    _arrived: int = field(default=0, init=False)  # deliveries so far

    async def dispatch(self, inbound: Inbound, sink: ReplySink) -> None:
        """Handle one inbound message completely. Never raises for a bad message."""
        # Numbered first thing, in the order messages come (bot/thread_context.py).
        arrival = self.context.arrived(inbound.key) if inbound.key else None
        # Counted from the start, so that shutting down waits for it (`drain`).
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        self._arrived += 1
        try:
            with turn_context(str(inbound.key or inbound.platform), inbound.event_id):
                if await self._for_the_bot(inbound):
                    await self._dispatch(inbound, sink, arrival)
        finally:
            self._active.discard(task)

    async def decide(self, decision: Decision) -> Decided:
        """A button of an approval card was pressed (bot/approvals.py)."""
        try:
            return await self.approvals.decide(decision)
        except Exception as exc:
            log.exception("deciding approval %s failed", decision.approval_id)
            self.metrics.error("approvals", repr(exc))
            return Decided(None, INTERNAL_ERROR)

    async def _for_the_bot(self, inbound: Inbound) -> bool:
        """Route `inbound`: True to answer it; a message of a bot thread that is not for
        the bot is journaled for the agent's next turn there."""
        thread: ThreadRecord | None = None
        try:
            thread = await self.store.thread(inbound.key) if inbound.key else None
        except Exception:  # then only messages that ask the bot are answered (or told why)
            log.exception("could not look up %s", inbound.key)
        decision = route(inbound, thread is not None, self.settings)
        if decision is Route.CONTEXT and thread is not None:
            event_id = f"{inbound.platform}:{inbound.event_id}"
            try:
                await self.journal.heard(event_id, thread.id, inbound.message_ref)
            except Exception:  # the next turn reads the thread all the same
                log.exception("could not journal %s", event_id)
        if decision is not Route.ANSWER:
            log.debug("%s: %s", inbound.event_id, decision.value)
        return decision is Route.ANSWER

    async def drain(self, grace_s: float) -> None:
        """Shutting down (the platforms have stopped delivering where they can): give what
        is under way, and what still comes, `grace_s` seconds to finish, then stop the
        rest (their threads are told). Nothing that arrived is turned away: with
        replicas, nobody would deliver it again."""
        self._draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while True:  # until what was received before has come in
            arrived = self._arrived
            await asyncio.sleep(min(_SETTLE_S, max(0.0, deadline - loop.time())))
            if self._arrived == arrived or loop.time() >= deadline:
                break
        if self._active:
            log.info("waiting up to %gs for %d answers under way", grace_s, len(self._active))
        while self._active and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._active), timeout=left)
        late = set(self._active)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=_STOPPING_S)

    async def _dispatch(self, inbound: Inbound, sink: ReplySink, arrival: Arrival | None) -> None:
        parsed = parse(inbound)
        refusal = self.access.refusal(inbound)
        if refusal is not None:
            await self._refuse(inbound, refusal, "not allowed", sink)
            return
        # Turns count, and commands that act on a thread (a branch is a post and a fork).
        counts = not parsed or parsed[0].needs_thread
        slow_down = await self.access.too_often(inbound) if counts else None
        if slow_down is not None:
            await self._refuse(inbound, slow_down, "rate limited", sink)
            return
        # A command that needs no thread (status, help) waits for nothing in it, and
        # leaves its session and lease alone.
        ticket = self.sessions.join(inbound.key if counts else None)
        turn_id: int | None = None
        leased: int | None = None  # the thread whose lease this holds
        try:
            first = ticket.first
            claim = await self.journal.claim(
                f"{inbound.platform}:{inbound.event_id}",
                inbound.key,
                parsed[0].name if parsed else "turn",
                inbound.message_ref,
                start=first,
                joins=not parsed,  # only a turn makes the bot part of a thread
                handed=inbound.handed,
            )
            if claim is None:
                log.info("ignoring repeated delivery %s in %s", inbound.event_id, inbound.key)
                return
            turn_id = claim.turn_id
            if not first:  # it waits behind others: show it was taken
                await sink.render(single(Queued()))
            await ticket.ready()
            works_on = claim.thread if counts else None
            if works_on and await self._handed_over(inbound, turn_id, works_on.id):
                return
            moved = False
            if works_on is not None:

                async def waiting() -> None:  # behind another replica's work
                    if first:
                        await sink.render(single(Queued()))

                moved = await self.sessions.take(works_on.id, turn_id, waiting)
                leased = works_on.id
            # Queued behind others: read the thread as they left it (reset, branch, ...).
            thread = claim.thread if first and not moved else await self.journal.start(turn_id)
            if parsed:
                await self._command(turn_id, parsed, inbound, thread, sink)
            elif thread is not None and arrival is not None:
                await self._turn(turn_id, inbound, thread, sink, arrival)
            else:  # adapters send nothing but commands without a thread
                raise ValueError(f"a message outside any thread: {inbound.event_id}")
        except asyncio.CancelledError:
            if turn_id is not None and self._draining:
                await self._tell_stopped(turn_id, sink)
            raise
        except LeaseLost as exc:  # the replica that took over tells the thread
            log.warning("stopped %s in %s: %s", inbound.event_id, inbound.key, exc)
        except Exception as exc:
            log.exception("handling %s in %s failed", inbound.event_id, inbound.key)
            await self._report_failure(turn_id, exc, sink)
        finally:
            await self.sessions.leave(ticket, inbound.key, leased)

    async def _handed_over(self, inbound: Inbound, turn_id: int, thread_id: int) -> bool:
        """Replicas: whether the message went to the replica that holds its thread's
        session live, to answer there (moving the session costs a resume; a message
        costs a row). Only what its adapter can deliver again goes."""
        if inbound.redo is None or inbound.handed:
            return False
        owner = await self.sessions.owner_elsewhere(thread_id)
        if owner is None:
            return False
        await self.journal.hand_over(turn_id, owner, inbound.redo)
        log.info("handed %s over to %s", inbound.event_id, owner)
        return True

    async def _tell_stopped(self, turn_id: int, sink: ReplySink) -> None:
        try:
            await sink.render(single(Notice(STOPPED_FOR_SHUTDOWN)))
            await self.journal.interrupt(turn_id)
        except Exception:
            log.exception("could not tell the thread its answer was stopped")

    async def _refuse(self, inbound: Inbound, text: str, why: str, sink: ReplySink) -> None:
        """Say no once per delivery, without making a thread of it."""
        event_id = f"{inbound.platform}:{inbound.event_id}"
        claim = await self.journal.claim(event_id, None, "refused")
        if claim is not None:
            refs = await sink.decline(text)
            outcome = TurnOutcome(ok=False, reply_refs=refs, error=why)
            await self.journal.finish(claim.turn_id, outcome)

    async def _command(
        self,
        turn_id: int,
        parsed: tuple[Command, str],
        inbound: Inbound,
        thread: ThreadRecord | None,
        sink: ReplySink,
    ) -> None:
        command, args = parsed
        call = CommandCall(command.name, args, inbound, thread, sink)
        async with aclosing(self.commands.run(command, call)) as events:
            refs = await sink.render(events)
        session_id = thread.session_id if thread else None
        await self.journal.finish(
            turn_id, TurnOutcome(ok=True, reply_refs=refs, session_id=session_id)
        )

    async def _turn(
        self,
        turn_id: int,
        inbound: Inbound,
        thread: ThreadRecord,
        sink: ReplySink,
        arrival: Arrival,
    ) -> None:
        attachments, notes = await accept_files(inbound.files, self.settings.max_attachment_bytes)
        prompt = inbound.text.strip() or (FILES_ONLY_PROMPT if attachments else "")
        limit = self.settings.max_prompt_chars
        if len(prompt) > limit:
            too_long = ErrorReply(PROMPT_TOO_LONG.format(len(prompt), limit))
            refs = await sink.render(single(too_long))
            await self.journal.finish(
                turn_id, TurnOutcome(ok=False, reply_refs=refs, error="prompt too long")
            )
            return
        if not prompt:  # nothing to answer: say why
            replies: list[ReplyEvent] = [Notice(note) for note in notes]
            refs = await sink.render(_stream(replies or [ErrorReply(EMPTY_PROMPT)]))
            await self.journal.finish(
                turn_id, TurnOutcome(ok=False, reply_refs=refs, error="nothing to answer")
            )
            return
        asker = f"{inbound.platform}:{inbound.user_id}"
        over = await self.budgets.refusal(thread.key, asker, thread.model)
        if over is not None:
            refs = await sink.render(single(ErrorReply(over)))
            await self.journal.finish(
                turn_id, TurnOutcome(ok=False, reply_refs=refs, error="over budget")
            )
            return
        started = time.perf_counter()
        reader = inbound.thread
        if reader is not None:  # else one person at a terminal: nothing to read or name
            block = await self.context.for_turn(reader, thread, turn_id, arrival)
            prompt = framed(block, speaker_line(await reader.speaker(), inbound.user_id, prompt))
        turn = await self.sessions.start_turn(thread, prompt, attachments, asker)
        if (
            turn.redacted
            and not thread.redaction_told
            and await self.store.tell_redaction(thread.id)
        ):
            notes.append(removal_note(turn.redacted))
        async with aclosing(self._owned(thread, turn)) as events:
            refs = await sink.render(_stream([Notice(note) for note in notes], events))
        self.metrics.turn_seconds.observe(time.perf_counter() - started)
        self.metrics.turns.labels("done" if turn.error is None else "failed").inc()
        if turn.error is not None:
            self.metrics.error("turn", f"{thread.key}: {turn.error}")
        outcome = TurnOutcome(
            ok=turn.error is None,
            reply_refs=refs,
            session_id=thread.session_id,
            user_event_id=turn.user_event_id,
            answer_event_id=turn.answer_event_id,
            error=turn.error,
        )
        # Once the runtime has the message, the agent knows the thread up to it.
        told = inbound.thread.position if inbound.thread and turn.user_event_id else None
        # They land in one group commit.
        await asyncio.gather(
            self.sessions.finish_turn(thread, turn, told),
            self.journal.finish(turn_id, outcome),
            self.budgets.spend(thread.key, asker, turn.tokens, thread.model),
        )
        if told is not None:
            self.context.told(thread.id, turn_id, told, arrival)
        if self._context_full(turn):
            # Summarize+reset now, before the runtime would compact on the next turn.
            await self.summary_reset.run(thread, "context")

    async def _owned(self, thread: ThreadRecord, turn: Turn) -> AsyncGenerator[ReplyEvent, None]:
        """The turn's events, each only while this replica still owns the thread: one
        that stalled past its lease shows nothing more (LeaseLost), and lets go of the
        turn at once."""
        async with aclosing(turn.events()) as events:
            async for event in events:
                try:
                    await self.sessions.confirm(thread)
                except LeaseLost:
                    turn.forsake()
                    raise
                yield event

    def _context_full(self, turn: Turn) -> bool:
        usage = turn.usage
        ratio = self.settings.context_reset_ratio
        return (
            usage is not None
            and usage.context_limit > 0
            and usage.context_tokens >= ratio * usage.context_limit
        )

    async def _report_failure(self, turn_id: int | None, exc: Exception, sink: ReplySink) -> None:
        self.metrics.error("router", repr(exc))
        message = next(
            (words for kind, words in FAILURE_WORDS if isinstance(exc, kind)), INTERNAL_ERROR
        )
        refs: list[str] = []
        try:
            refs = await sink.render(single(ErrorReply(message)))
        except Exception:
            log.exception("could not tell the thread about the failure")
        if turn_id is not None:
            try:
                await self.journal.finish(
                    turn_id, TurnOutcome(ok=False, reply_refs=refs, error=repr(exc)[:500])
                )
            except Exception:
                log.exception("could not record the failure in the journal")
