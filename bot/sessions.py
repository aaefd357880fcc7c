"""SessionManager: each thread's agent session, live in the one runtime or resumable from disk.

A thread's current session is created the first time it is needed and resumed after
that: after a restart, after LRU eviction, and when the runtime dropped it on its own.
Callers hold the thread's lane ticket (`join`) while they use its session.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from copilot import CopilotSession
from copilot.session_events import SessionCompactionCompleteData, SessionEvent

from bot.attachments import Attachment
from bot.clock import Clock, system_clock
from bot.config import Settings
from bot.errors import SessionNotFound
from bot.journal import ForkPoint
from bot.lanes import Lanes, Ticket
from bot.metrics import Metrics
from bot.runtime import CopilotRuntime, SessionSpec
from bot.store import Retirement, Store, ThreadRecord
from bot.thread_context import orientation, start_context
from bot.thread_key import ThreadKey
from bot.turns import Turn

log = logging.getLogger(__name__)

# Retirements `restore` undoes (not a restore itself: that would undo the undo).
RESTORABLE = ("reset", "idle", "context")


@dataclass(slots=True)
class _Live:
    key: ThreadKey
    session_id: str
    session: CopilotSession


class SessionManager:
    def __init__(
        self,
        runtime: CopilotRuntime,
        store: Store,
        settings: Settings,
        metrics: Metrics,
        clock: Clock = system_clock,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._max_live = settings.max_live_sessions
        self._turn_timeout_s = settings.turn_timeout_s
        self._restore_period_s = settings.restore_period_s
        # Thread id -> its live session, least recently used first.
        self._live: OrderedDict[int, _Live] = OrderedDict()
        self.lanes = Lanes()
        # The CLI died: its sessions are gone from memory (not from disk, to resume from).
        runtime.on_down.append(self._live.clear)

    def join(self, key: ThreadKey | None) -> Ticket:
        """A place in the thread's lane: one turn or command at a time, in arrival order."""
        return self.lanes.join(key)

    @property
    def live_count(self) -> int:
        return len(self._live)

    def live_by_platform(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for live in self._live.values():
            counts[live.key.platform] = counts.get(live.key.platform, 0) + 1
        return counts

    def is_live(self, thread: ThreadRecord) -> bool:
        live = self._live.get(thread.id)
        return live is not None and live.session_id == thread.session_id

    async def start_turn(
        self, thread: ThreadRecord, prompt: str, attachments: Sequence[Attachment] = ()
    ) -> Turn:
        """Send `prompt` on the thread's session; iterate the returned turn's events.
        A runtime that is restarting is waited for, up to the turn timeout."""
        await self._runtime.running(self._turn_timeout_s)
        turn = self._turn(await self._session(thread), prompt, attachments)
        try:
            await turn.send()
        except SessionNotFound:
            # The runtime dropped the session behind our back; its history is on disk.
            log.info("runtime no longer holds %s; resuming it", thread.session_id)
            self._live.pop(thread.id, None)
            turn = self._turn(await self._session(thread), prompt, attachments)
            await turn.send()
        return turn

    def _turn(
        self, session: CopilotSession, prompt: str, attachments: Sequence[Attachment]
    ) -> Turn:
        return Turn(session, prompt, attachments, self._turn_timeout_s, self._runtime)

    async def finish_turn(
        self, thread: ThreadRecord, turn: Turn, context_ref: str | None = None
    ) -> None:
        """Record the turn's usage and, if given, how far the agent now knows the thread."""
        usage = turn.usage
        await self._store.touch(
            thread.id,
            usage.context_tokens if usage else 0,
            usage.context_limit if usage else 0,
            context_ref,
        )

    @asynccontextmanager
    async def scratch_turn(self, key: ThreadKey, prompt: str) -> AsyncIterator[Turn]:
        """A turn on a session of its own, without tools, deleted afterwards: for a job on
        a thread (a summary) that must not become part of the thread's conversation."""
        session_id = f"{key.slug}-s{uuid.uuid4().hex[:12]}"
        spec = SessionSpec(session_id, self._runtime.scratch_workspace())
        session = await self._runtime.create(spec, tools=False)
        try:
            turn = self._turn(session, prompt, ())
            await turn.send()
            yield turn
        finally:
            try:
                await session.disconnect()
                await self._runtime.delete(session_id)
            except Exception as exc:  # housekeeping cannot find it: only disk space is lost
                log.warning("could not delete the scratch session %s: %s", session_id, exc)

    async def reset(self, thread: ThreadRecord, why: Retirement) -> ThreadRecord:
        """Retire the thread's session (kept for `restore`); its next message starts a
        fresh one, as `why` says."""
        await self._disconnect(thread.id)
        fresh = await self._store.retire_session(thread, why)
        self._metrics.resets.labels(why.cause).inc()
        return fresh

    async def restore(self, thread: ThreadRecord) -> ThreadRecord | None:
        """Bring back the session the last reset retired; None if there is none."""
        await self._disconnect(thread.id)
        since = self._clock() - self._restore_period_s
        return await self._store.restore_session(thread, RESTORABLE, since)

    async def branch(
        self, thread: ThreadRecord, child: ThreadKey, point: ForkPoint
    ) -> ThreadRecord:
        """Fork the session of `point` into the new thread `child`, keeping the history up
        to that point; parent and child then evolve independently."""
        session_id = await self._runtime.fork(point.session_id, point.to_event_id)
        seed = await self._store.session_seed(point.session_id)
        return await self._store.create_branch(child, session_id, thread, seed, point.turn_id)

    async def close(self) -> None:
        for thread_id in list(self._live):
            await self._disconnect(thread_id)

    async def _session(self, thread: ThreadRecord) -> CopilotSession:
        live = self._live.get(thread.id)
        if live is not None and live.session_id == thread.session_id:
            self._live.move_to_end(thread.id)
            return live.session
        await self._disconnect(thread.id)
        workspace = self._runtime.workspace(thread.key.slug)
        told = start_context(orientation(thread.key.platform), thread.summary)
        spec = SessionSpec(thread.session_id, workspace, told)
        if thread.session_state == "new":
            session = await self._runtime.create(spec)
            await self._store.mark_active(thread.id)
        else:
            try:
                session = await self._runtime.resume(spec)
            except SessionNotFound:
                log.warning(
                    "the runtime has no state for %s (deleted outside threadpilot?); "
                    "starting it empty",
                    thread.session_id,
                )
                session = await self._runtime.create(spec)
        session_id = thread.session_id
        session.on(lambda event: self._watch(session_id, event))
        self._live[thread.id] = _Live(thread.key, thread.session_id, session)
        await self._evict()
        return session

    def _watch(self, session_id: str, event: SessionEvent) -> None:
        # Compaction is the bot's job (a summary reset); when the runtime does it anyway
        # (a turn that outgrew the window by itself), it is recorded and that is all.
        if isinstance(event.data, SessionCompactionCompleteData):
            self._metrics.compactions.inc()
            log.warning("the runtime compacted %s on its own", session_id)

    async def _evict(self) -> None:
        """Disconnect least recently used idle sessions beyond the cap (resumable later)."""
        for thread_id in list(self._live):
            if len(self._live) <= self._max_live:
                return
            if not self.lanes.busy(self._live[thread_id].key):
                log.debug("evicting %s", self._live[thread_id].session_id)
                await self._disconnect(thread_id)

    async def _disconnect(self, thread_id: int) -> None:
        live = self._live.pop(thread_id, None)
        if live is None:
            return
        try:
            await live.session.disconnect()
        except Exception as exc:  # already gone in the runtime: nothing left to release
            log.debug("disconnecting %s: %s", live.session_id, exc)
