"""Scheduler: the bot's timed jobs (APScheduler), and what they last did.

- idle sweep: every live session idle for THREADPILOT_IDLE_TIMEOUT_S minus
  THREADPILOT_RESET_MARGIN_S gets a summary reset, well before the runtime's own idle
  timer (set to twice the timeout) could drop it.
- housekeeping: retired sessions past the restore period leave the runtime's state;
  journal entries past their retention are pruned.

The jobs read time from the injected clock, so tests advance it and call the jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import Clock
from bot.config import Settings
from bot.errors import SessionNotFound
from bot.journal import Journal
from bot.metrics import Metrics
from bot.runtime import CopilotRuntime
from bot.sessions import SessionManager
from bot.store import Store, ThreadRecord
from bot.summary_reset import SummaryReset

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 3600
# Summaries are model calls; a few at once keeps a sweep of many threads short.
_PARALLEL_CHECKPOINTS = 4


@dataclass(slots=True)
class JobReport:
    name: str
    next_run: datetime | None = None
    last_run: float | None = None
    last_result: str = "not run yet"


class Scheduler:
    def __init__(
        self,
        *,
        settings: Settings,
        runtime: CopilotRuntime,
        store: Store,
        journal: Journal,
        sessions: SessionManager,
        summary_reset: SummaryReset,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._runtime = runtime
        self._store = store
        self._journal = journal
        self._sessions = sessions
        self._summary_reset = summary_reset
        self._metrics = metrics
        self._clock = clock
        self._aps: AsyncIOScheduler | None = None
        # Often enough that a session is reset within half the margin of its deadline.
        self.sweep_interval_s = max(1, min(60, settings.reset_margin_s // 2))
        self._reports = {
            "idle sweep": JobReport("idle sweep"),
            "housekeeping": JobReport("housekeeping"),
        }

    def start(self) -> None:
        self._aps = AsyncIOScheduler()
        jobs: dict[str, tuple[Callable[[], Awaitable[str]], int]] = {
            "idle sweep": (self.idle_sweep, self.sweep_interval_s),
            "housekeeping": (self.housekeeping, HOUSEKEEPING_INTERVAL_S),
        }
        for name, (job, seconds) in jobs.items():
            self._aps.add_job(
                self._run,
                IntervalTrigger(seconds=seconds),
                args=(name, job),
                id=name,
                max_instances=1,
                coalesce=True,
            )
        self._aps.start()

    def shutdown(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None

    def jobs(self) -> list[JobReport]:
        """Each job's next run (None when the scheduler is not running) and last result."""
        for report in self._reports.values():
            job = self._aps.get_job(report.name) if self._aps else None
            report.next_run = job.next_run_time if job else None
        return list(self._reports.values())

    async def _run(self, name: str, job: Callable[[], Awaitable[str]]) -> None:
        report = self._reports[name]
        report.last_run = self._clock()
        try:
            report.last_result = await job()
        except Exception as exc:
            log.exception("scheduled %s failed", name)
            report.last_result = f"failed: {exc}"
            self._metrics.error(name, str(exc))

    async def idle_sweep(self) -> str:
        """Summarize+reset every live session idle past the deadline; returns a summary."""
        settings = self._settings
        cutoff = self._clock() - (settings.idle_timeout_s - settings.reset_margin_s)
        idle = await self._store.idle_threads(self._sessions.live_thread_ids(), cutoff)
        gate = asyncio.Semaphore(_PARALLEL_CHECKPOINTS)

        async def reset(thread: ThreadRecord) -> bool:
            async with gate:
                return await self._reset_if_idle(thread, cutoff)

        done = await asyncio.gather(*(reset(thread) for thread in idle))
        return f"{sum(done)} of {len(idle)} idle sessions summarized and reset"

    async def _reset_if_idle(self, thread: ThreadRecord, cutoff: float) -> bool:
        ticket = self._sessions.join(thread.key)
        try:
            if not ticket.first:  # a message is being answered: not idle after all
                return False
            await ticket.ready()
            current = await self._store.thread_by_id(thread.id)
            if current.last_activity >= cutoff or not self._sessions.is_live(current):
                return False
            return await self._summary_reset.run(current, "idle") is not None
        finally:
            ticket.release()

    async def housekeeping(self) -> str:
        """Delete retired sessions past the restore period; prune the journal."""
        now = self._clock()
        deleted = 0
        for session_id in await self._store.expired_sessions(now - self._settings.restore_period_s):
            try:
                await self._runtime.delete(session_id)
            except SessionNotFound:
                pass  # never created in the runtime (reset before its first message)
            except Exception as exc:  # e.g. the runtime is down: next time
                self._metrics.error("housekeeping", f"deleting {session_id}: {exc}")
                continue
            await self._store.mark_deleted(session_id)
            deleted += 1
        pruned = await self._journal.prune(now - self._settings.journal_retention_s)
        return f"{deleted} retired sessions deleted, {pruned} journal entries pruned"
