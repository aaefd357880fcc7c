"""Scheduler: the bot's timed jobs (APScheduler), and what they last did.

- idle sweep: every live session idle for THREADPILOT_IDLE_TIMEOUT_S minus
  THREADPILOT_RESET_MARGIN_S gets a summary reset, well before the runtime's own idle
  timer (set to twice the timeout) could drop it; tenants' runtimes idle for
  THREADPILOT_TENANT_IDLE_S are stopped.
- takeover: the journal entries of replicas whose heartbeat stopped (bot/leases.py)
  become interrupted, and their threads are told (once, by one replica); messages other
  replicas handed over that were not taken up yet are.
- housekeeping: retired sessions past the restore period leave the runtime's state;
  journal entries past their retention are pruned.
- profiles: the profiles file is read again when it changed (bot/profiles.py).

The jobs read time from the injected clock, so tests advance it and call the jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import Clock
from bot.config import Settings
from bot.errors import SessionNotFound
from bot.journal import Journal
from bot.leases import Leases
from bot.metrics import Metrics
from bot.profiles import Profiles
from bot.runtime_pool import RuntimePool
from bot.sessions import SessionManager
from bot.store import Store, ThreadRecord
from bot.summary_reset import SummaryReset
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_S = 3600
PROFILES_INTERVAL_S = 2
# Summaries are model calls; a few at once keeps a sweep of many threads short.
_PARALLEL_CHECKPOINTS = 4


@dataclass(slots=True)
class JobReport:
    name: str
    next_run: datetime | None = None
    last_run: float | None = None
    last_result: str = "not run yet"


@dataclass(kw_only=True, eq=False)
class Scheduler:
    settings: Settings
    runtimes: RuntimePool
    store: Store
    journal: Journal
    sessions: SessionManager
    summary_reset: SummaryReset
    leases: Leases
    tell_interrupted: Callable[[Sequence[ThreadKey]], Awaitable[None]]
    take_up: Callable[[], Awaitable[int]]  # what other replicas handed over
    profiles: Profiles
    metrics: Metrics
    clock: Clock
    _aps: AsyncIOScheduler | None = field(default=None, init=False)
    _reports: dict[str, JobReport] = field(init=False)

    def __post_init__(self) -> None:
        names = ["takeover", "idle sweep", "housekeeping"]
        if self.settings.profiles is not None:
            names.append("profiles")
        self._reports = {name: JobReport(name) for name in names}

    @property
    def sweep_interval_s(self) -> int:
        """Often enough that a session is reset within half the margin of its deadline."""
        return max(1, min(60, self.settings.reset_margin_s // 2))

    def start(self) -> None:
        self._aps = AsyncIOScheduler()
        jobs: dict[str, tuple[Callable[[], Awaitable[str]], float]] = {
            "takeover": (self.takeover, self.leases.interval_s),
            "idle sweep": (self.idle_sweep, self.sweep_interval_s),
            "housekeeping": (self.housekeeping, HOUSEKEEPING_INTERVAL_S),
        }
        if self.settings.profiles is not None:
            jobs["profiles"] = (self.check_profiles, PROFILES_INTERVAL_S)
        for name, (job, seconds) in jobs.items():
            self._aps.add_job(
                self._run,
                IntervalTrigger(seconds=seconds),
                args=(name, job),
                id=name,
                max_instances=1,
                coalesce=True,
                # Late is better than never: a busy loop must not skip a run.
                misfire_grace_time=None,
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
        report.last_run = self.clock()
        try:
            report.last_result = await job()
        except Exception as exc:
            log.exception("scheduled %s failed", name)
            report.last_result = f"failed: {exc}"
            self.metrics.error(name, str(exc))

    async def takeover(self) -> str:
        """Take over what replicas that stopped left (their entries are interrupted), and
        take up what the others handed over, should their word have been missed."""
        taken_up = await self.take_up()
        interrupted = await self.journal.recover(self.leases.alive_since())
        if interrupted:
            log.warning("a replica stopped while answering in %d threads", len(interrupted))
            await self.tell_interrupted(interrupted)
        return (
            f"{len(interrupted)} threads a stopped replica left were told, "
            f"{taken_up} messages handed over taken up"
        )

    async def idle_sweep(self) -> str:
        """Summary-reset every session idle past the deadline, live or evicted; returns a
        summary."""
        settings = self.settings
        cutoff = self.clock() - (settings.idle_timeout_s - settings.reset_margin_s)
        idle = await self.store.quiet_threads(cutoff, active=True)
        gate = asyncio.Semaphore(_PARALLEL_CHECKPOINTS)

        async def reset(thread: ThreadRecord) -> bool:
            async with gate:
                return await self._reset_if_idle(thread, cutoff)

        done = await asyncio.gather(*(reset(thread) for thread in idle))
        report = f"{sum(done)} of {len(idle)} idle sessions summarized and reset"
        stopped = await self.runtimes.stop_idle()
        return (
            f"{report}; the runtimes of {len(stopped)} idle tenants stopped" if stopped else report
        )

    async def _reset_if_idle(self, thread: ThreadRecord, cutoff: float) -> bool:
        ticket = self.sessions.join(thread.key)
        held = False
        try:
            if not ticket.first:  # a message is being answered: not idle after all
                return False
            await ticket.ready()
            # Another replica is at work there (or resetting it): not idle after all.
            held = await self.sessions.take_now(thread.id)
            if not held:
                return False
            current = await self.store.thread_by_id(thread.id)
            if current.last_activity >= cutoff or current.session_state != "active":
                return False
            return await self.summary_reset.run(current, "idle") is not None
        finally:
            await self.sessions.leave(ticket, thread.key, thread.id if held else None)

    async def check_profiles(self) -> str:
        return self.profiles.check()

    async def housekeeping(self) -> str:
        """Delete retired sessions past the restore period; prune the journal, and the
        working directories of threads quiet for as long."""
        now = self.clock()
        deleted = 0
        for key, session_id in await self.store.expired_sessions(
            now - self.settings.restore_period_s
        ):
            try:
                await (await self.runtimes.place(key)).delete(session_id)
            except SessionNotFound:
                pass  # never created in the runtime (reset before its first message)
            except Exception as exc:  # e.g. the runtime is down: next time
                self.metrics.error("housekeeping", f"deleting {session_id}: {exc}")
                continue
            await self.store.mark_deleted(session_id)
            deleted += 1
        quiet_since = now - self.settings.journal_retention_s
        pruned = await self.journal.prune(quiet_since)
        removed = 0
        for thread in await self.store.quiet_threads(quiet_since, active=False):
            removed += await asyncio.to_thread(self.runtimes.remove_workspace, thread.key)
        return (
            f"{deleted} retired sessions deleted, {pruned} journal entries pruned, "
            f"{removed} working directories removed"
        )
