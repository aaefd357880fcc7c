"""SessionManager: each thread's agent session, live in one runtime or resumable from disk.

A thread's current session is created the first time it is needed and resumed after
that: after a restart, after LRU eviction, when the runtime dropped it on its own, when
its runtime died (then in another, as the pool places it), and when another replica ran
the thread meanwhile. The manager keeps one handle per thread, so a session is never live
twice in a replica, and uses it only under the thread's lease (bot/leases.py), so never in
two replicas at once. Callers hold the thread's lane ticket (`join`) and its lease
(`take`) while they use its session, and `leave` when done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from copilot import CopilotSession
from copilot.session_events import (
    SessionCompactionCompleteData,
    SessionEvent,
    SessionMcpServerStatusChangedData,
)

from bot.approvals import ApprovalRequest, Approvals
from bot.attachments import Attachment
from bot.clock import Clock, system_clock
from bot.config import Settings
from bot.errors import LeaseLost, SessionNotFound
from bot.journal import ForkPoint
from bot.lanes import Lanes, Ticket
from bot.leases import Fence, Leases
from bot.mcp import McpHealth
from bot.metrics import Metrics
from bot.profiles import Profiles, ThreadProfile
from bot.redaction import Redaction
from bot.runtime import CopilotRuntime, SessionSpec
from bot.runtime_pool import RuntimePool
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
    runtime: CopilotRuntime
    fence: Fence | None  # the lease it went live under
    profile: ThreadProfile  # the agent it went live as

    @property
    def held(self) -> bool:
        """False once its runtime let go of it (the CLI died or stopped)."""
        return self.session_id in self.runtime.live


class SessionManager:
    def __init__(
        self,
        runtimes: RuntimePool,
        store: Store,
        settings: Settings,
        metrics: Metrics,
        *,
        leases: Leases,
        profiles: Profiles,
        approvals: Approvals,
        mcp: McpHealth,
        clock: Clock = system_clock,
    ) -> None:
        self.mcp = mcp
        self._runtimes = runtimes
        self._profiles = profiles
        self._approvals = approvals
        # Thread id -> whoever its current turn answers (platform:user): who may approve.
        self._askers: dict[int, str] = {}
        self._store = store
        self._leases = leases
        self._metrics = metrics
        self._clock = clock
        self._max_live = settings.max_live_sessions
        self._turn_timeout_s = settings.turn_timeout_s
        self._restore_period_s = settings.restore_period_s
        # Thread id -> its live session, least recently used first.
        self._live: OrderedDict[int, _Live] = OrderedDict()
        self.lanes = Lanes()
        # Disconnects under way, by thread: the thread's session is not resumed before.
        self._releasing: dict[int, asyncio.Task[None]] = {}

    def join(self, key: ThreadKey | None) -> Ticket:
        """A place in the thread's lane: one turn or command at a time, in arrival order."""
        return self.lanes.join(key)

    async def take(
        self, thread_id: int, entry_id: int | None, waiting: Callable[[], Awaitable[None]]
    ) -> bool:
        """Hold the thread's lease (behind its earlier journal entries, wherever they
        were received); whether the thread may have changed since this replica last had
        it. `waiting` is called once if it must wait."""
        return await self._leases.hold(thread_id, entry_id, waiting)

    async def owner_elsewhere(self, thread_id: int) -> str | None:
        """Another live replica that holds the thread's session live, if one does."""
        return await self._leases.owner_elsewhere(thread_id)

    async def take_now(self, thread_id: int) -> bool:
        """Hold the thread's lease if nobody else does; whether it does."""
        return await self._leases.take(thread_id) is not None

    async def leave(self, ticket: Ticket, key: ThreadKey | None, thread_id: int | None) -> None:
        """Give up the ticket; with nothing more queued in the thread here, let go of its
        lease too, so another replica may run what it receives there."""
        ticket.release()
        if thread_id is not None and not self.lanes.busy(key):
            await self._leases.let_go(thread_id)

    async def confirm(self, thread: ThreadRecord) -> None:
        """Raise LeaseLost unless this replica still owns the thread."""
        fence = self._leases.held(thread.id)
        if fence is None:
            raise LeaseLost(f"thread {thread.id} was taken over")
        await self._leases.confirm(fence)

    @property
    def live_count(self) -> int:
        return sum(live.held for live in self._live.values())

    def live_by_platform(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for live in self._live.values():
            if live.held:
                counts[live.key.platform] = counts.get(live.key.platform, 0) + 1
        return counts

    def is_live(self, thread: ThreadRecord) -> bool:
        return self._current(thread) is not None

    def _current(self, thread: ThreadRecord) -> _Live | None:
        """The handle on the thread's current session, while a runtime holds it live."""
        live = self._live.get(thread.id)
        if live is not None and live.session_id == thread.session_id and live.held:
            return live
        return None

    async def start_turn(
        self,
        thread: ThreadRecord,
        prompt: str,
        attachments: Sequence[Attachment] = (),
        asker: str | None = None,
    ) -> Turn:
        """Send `prompt` on the thread's session, for `asker` (platform:user, who may
        approve what the agent asks to do); iterate the returned turn's events. With no
        runtime up, one is waited for, up to the turn timeout."""
        if asker is not None:
            self._askers[thread.id] = asker
        turn = self._turn(await self._session(thread), prompt, attachments)
        try:
            await turn.send()
        except SessionNotFound:
            # The runtime dropped the session behind our back; its history is on disk.
            log.info("runtime no longer holds %s; resuming it", thread.session_id)
            await self._disconnect(thread.id)
            turn = self._turn(await self._session(thread), prompt, attachments)
            await turn.send()
        return turn

    def _turn(self, live: _Live, prompt: str, attachments: Sequence[Attachment]) -> Turn:
        """A turn as the model may see it: redacted, if the thread's profile says so."""
        removed: Counter[str] = Counter()
        redact = live.profile.redact
        if redact is not None:
            prompt, attachments, removed = _redacted(redact, prompt, attachments)
        turn = Turn(live.session, prompt, attachments, self._turn_timeout_s, live.runtime)
        turn.redacted = removed
        return turn

    async def finish_turn(
        self, thread: ThreadRecord, turn: Turn, context_ref: str | None = None
    ) -> None:
        """Record the turn's usage and, if given, how far the agent now knows the thread;
        bring the live sessions back under the cap, which busy threads may have exceeded."""
        usage = turn.usage
        await self._store.touch(
            thread.id,
            usage.context_tokens if usage else 0,
            usage.context_limit if usage else 0,
            context_ref,
        )
        self._evict()

    @asynccontextmanager
    async def scratch_turn(self, key: ThreadKey, prompt: str) -> AsyncIterator[Turn]:
        """A turn on a session of its own, without tools, deleted afterwards: for a job on
        a thread (a summary) that must not become part of the thread's conversation."""
        session_id = f"{key.slug}-s{uuid.uuid4().hex[:12]}"
        runtime = await self._runtimes.place(key)
        profile = self._profiles.resolve(key)
        spec = SessionSpec(session_id, self._runtimes.scratch_workspace(key), profile)
        session = await runtime.create(spec, tools=False)
        try:
            turn = self._turn(_Live(key, session_id, session, runtime, None, profile), prompt, ())
            await turn.send()
            yield turn
        finally:
            try:
                await runtime.disconnect(session)
                await runtime.delete(session_id)
            except Exception as exc:  # housekeeping cannot find it: only disk space is lost
                log.warning("could not delete the scratch session %s: %s", session_id, exc)

    async def choose_model(self, thread: ThreadRecord, model: str | None) -> None:
        """Answer the thread with `model` from its next turn on (None: its profile's):
        the session is resumed with it, history kept (`_session` sees the profile
        changed)."""
        await self._store.set_model(thread.id, model)

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
        runtime = await self._runtimes.place(thread.key)
        session_id = await runtime.fork(point.session_id, point.to_event_id)
        seed = await self._store.session_seed(point.session_id)
        return await self._store.create_branch(child, session_id, thread, seed, point.turn_id)

    async def close(self) -> None:
        for thread_id in list(self._live):
            self._release(thread_id)
        await asyncio.gather(*self._releasing.values())

    async def _session(self, thread: ThreadRecord) -> _Live:
        fence = self._leases.held(thread.id)
        profile = self._profiles.resolve(thread.key, thread.model)
        live = self._current(thread)
        if live is not None:
            if live.fence == fence and live.profile == profile:
                self._live.move_to_end(thread.id)
                return live
            if live.fence != fence:
                # Another replica ran the thread meanwhile: this handle's history is behind.
                log.info("%s moved here from another replica; resuming it", thread.session_id)
            else:  # the runtime takes a new configuration when a session is resumed
                log.info("%s has a new profile; resuming it with that", thread.session_id)
        await self._disconnect(thread.id)
        runtime = await self._runtimes.place(thread.key)
        workspace = profile.working_directory or self._runtimes.workspace(thread.key)
        told = start_context(orientation(thread.key.platform), thread.summary)
        thread_id, key = thread.id, thread.key

        async def approve(request: ApprovalRequest) -> str | None:
            asker = self._askers.get(thread_id, "")
            return await self._approvals.ask(key, thread_id, asker, profile, request)

        session_id = thread.session_id
        spec = SessionSpec(
            session_id,
            workspace,
            profile,
            told,
            fence,
            approve,
            watch=lambda event: self._watch(key, session_id, event),
            confirm=lambda: self.confirm(thread),
        )
        if thread.session_state == "new":
            session = await runtime.create(spec)
            await self._store.mark_active(thread.id)
        else:
            try:
                session = await runtime.resume(spec)
            except SessionNotFound:
                log.warning(
                    "the runtime has no state for %s (deleted outside threadpilot?); "
                    "starting it empty",
                    thread.session_id,
                )
                session = await runtime.create(spec)
        live = self._live[thread.id] = _Live(
            thread.key, session_id, session, runtime, fence, profile
        )
        self._evict()
        return live

    def _watch(self, key: ThreadKey, session_id: str, event: SessionEvent) -> None:
        # Compaction is the bot's job (a summary reset); when the runtime does it anyway
        # (a turn that outgrew the window by itself), it is recorded and that is all.
        match event.data:
            case SessionCompactionCompleteData():
                self._metrics.compactions.inc()
                log.warning("the runtime compacted %s on its own", session_id)
            case SessionMcpServerStatusChangedData(server_name=server, status=status, error=error):
                self.mcp.report(key, server, status.value, error)

    def _evict(self) -> None:
        """Release least recently used idle sessions beyond the cap (resumable later);
        forget those their runtime let go of."""
        for thread_id, live in list(self._live.items()):
            if not live.held:
                del self._live[thread_id]
        excess = len(self._live) - self._max_live
        for thread_id, live in list(self._live.items()):
            if excess <= 0:
                return
            if not self.lanes.busy(live.key):
                log.debug("evicting %s", live.session_id)
                self._release(thread_id)
                excess -= 1

    def _release(self, thread_id: int) -> None:
        """Start letting go of the thread's live session, if it has one."""
        live = self._live.pop(thread_id, None)
        if live is not None and live.held:
            release = asyncio.create_task(live.runtime.disconnect(live.session))
            self._releasing[thread_id] = release
            release.add_done_callback(lambda _: self._forget_release(thread_id, release))

    def _forget_release(self, thread_id: int, release: asyncio.Task[None]) -> None:
        if self._releasing.get(thread_id) is release:
            del self._releasing[thread_id]

    async def _disconnect(self, thread_id: int) -> None:
        """Let go of the thread's live session, and wait until no runtime holds it: only
        then may it go live again (two handles on one session fork its history)."""
        self._release(thread_id)
        release = self._releasing.get(thread_id)
        if release is not None:
            await asyncio.shield(release)


def _redacted(
    redact: Redaction, prompt: str, attachments: Sequence[Attachment]
) -> tuple[str, list[Attachment], Counter[str]]:
    """The prompt and text attachments with what `redact` names removed; images left out,
    since nothing can be removed from them."""
    redacted = redact.apply(prompt)
    removed = Counter(redacted.counts)
    kept: list[Attachment] = []
    for attachment in attachments:
        if not attachment.is_text:
            removed["image"] += 1
            continue
        text = redact.apply(attachment.data.decode("utf-8"))
        removed.update(text.counts)
        kept.append(dataclasses.replace(attachment, data=text.text.encode("utf-8")))
    return redacted.text, kept, removed
