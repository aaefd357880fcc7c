"""Status: the fleet at a glance, for the admin `status` command and `threadpilot status`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.budgets import Budgets, Spender
from bot.leases import Leases, ReplicaSeen
from bot.metrics import Metrics, RecentError
from bot.profiles import Profiles
from bot.runtime import RuntimeInfo, RuntimeLoad
from bot.runtime_pool import RuntimePool
from bot.scheduler import JobReport, Scheduler
from bot.sessions import SessionManager
from bot.store import Store


@dataclass(frozen=True, slots=True)
class PlatformSessions:
    live: int  # held in the runtime's memory now
    persisted: int  # resumable from the runtime's state on disk
    total: int  # threads known to the store


@dataclass(frozen=True, slots=True)
class StatusReport:
    runtime: RuntimeInfo | None  # of the first runtime up; None when none is
    runtimes: list[RuntimeLoad]
    isolation: str  # shared or tenant (THREADPILOT_RUNTIME_ISOLATION)
    auth_mode: str
    sessions: dict[str, PlatformSessions]
    turns_running: int
    turns_queued: int
    jobs: list[JobReport]
    lifecycle: dict[str, int]  # resets by cause, restores, branches
    compactions: int  # by the runtime itself, since start
    recent_errors: list[RecentError]
    store_bytes: int
    troubles: dict[str, str]  # by platform: what keeps it from working fully
    replicas: list[ReplicaSeen]  # this one first
    profiles: str  # which file, how many, whether its last change was taken
    spenders: list[Spender]  # today's biggest users of turns and tokens
    mcp: list[str]  # the MCP servers seen, each with its last state


@dataclass(frozen=True, slots=True)
class Status:
    """Makes the report from the parts it describes; `troubles` says what keeps each
    platform from working fully."""

    runtimes: RuntimePool
    store: Store
    sessions: SessionManager
    scheduler: Scheduler
    metrics: Metrics
    leases: Leases
    profiles: Profiles
    budgets: Budgets
    troubles: Callable[[], dict[str, str]]

    async def report(self) -> StatusReport:
        live = self.sessions.live_by_platform()
        counts = await self.store.thread_counts()
        return StatusReport(
            runtime=await self.runtimes.info(),
            runtimes=self.runtimes.loads(),
            isolation="tenant" if self.runtimes.isolated else "shared",
            auth_mode=self.runtimes.auth_mode,
            sessions={
                platform: PlatformSessions(live.get(platform, 0), active, total)
                for platform, (total, active) in sorted(counts.items())
            },
            turns_running=self.sessions.lanes.running,
            turns_queued=self.sessions.lanes.queued,
            jobs=self.scheduler.jobs(),
            lifecycle=await self.store.lifecycle_counts(),
            compactions=self.metrics.compactions_total(),
            recent_errors=list(self.metrics.recent_errors)[-5:],
            store_bytes=await self.store.size_bytes(),
            troubles=self.troubles(),
            replicas=await self.leases.fleet(),
            profiles=self.profiles.describe(),
            spenders=await self.budgets.top_spenders(),
            mcp=self.sessions.mcp.lines(),
        )

    async def text(self) -> str:
        return format_status(await self.report())


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


def _seconds(s: float | None) -> str:
    return "-" if s is None else f"{s:.0f}s"


def _when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + "Z"


def format_status(report: StatusReport) -> str:
    rt = report.runtime
    version = f"Copilot CLI {rt.version} (protocol {rt.protocol_version})" if rt else "none up"
    lines = [
        "threadpilot status",
        f"runtimes: {version}, {len(report.runtimes)} {report.isolation}",
    ]
    lines += [
        f"  {r.name}: {'up' if r.up else 'down'}, pid {r.pid or '-'}, RSS {_mib(r.rss_bytes)}, "
        f"{r.live_sessions} live sessions, {r.turns} turns under way, {r.restarts} restarts, "
        f"up {_seconds(r.uptime_s)}"
        for r in report.runtimes
    ]
    lines += [
        f"auth: {report.auth_mode}",
        report.profiles,
        "MCP servers:" if report.mcp else "MCP servers: none started",
        *report.mcp,
        "today's top spenders: "
        + (
            "; ".join(f"{s.who} {s.turns} turns, {s.tokens:,} tokens" for s in report.spenders)
            or "nobody yet"
        ),
        f"turns: {report.turns_running} running, {report.turns_queued} queued",
        "sessions (live / persisted / total threads):",
    ]
    lines += [
        f"  {platform}: {s.live} / {s.persisted} / {s.total}"
        for platform, s in report.sessions.items()
    ] or ["  none yet"]
    lifecycle = ", ".join(f"{action} {n}" for action, n in report.lifecycle.items()) or "none"
    lines.append(f"lifecycle: {lifecycle}; runtime compactions {report.compactions}")
    lines.append("scheduler:")
    lines += [
        f"  {job.name}: next {_when(job.next_run.timestamp() if job.next_run else None)}, "
        f"last {_when(job.last_run)}: {job.last_result}"
        for job in report.jobs
    ]
    lines += [f"trouble: {platform}: {trouble}" for platform, trouble in report.troubles.items()]
    lines.append("recent errors:" if report.recent_errors else "recent errors: none")
    lines += [f"  {_when(e.at)} {e.where}: {e.message}" for e in report.recent_errors]
    lines.append(f"store: {_mib(report.store_bytes)}")
    lines.append(f"replicas: {len(report.replicas)}")
    lines += [
        f"  {r.id}{' (this one)' if r.this else ''}: seen {r.seen_s:.0f}s ago, "
        f"{r.leases} threads held"
        for r in report.replicas
    ]
    return "\n".join(lines)
