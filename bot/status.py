"""Status: the fleet at a glance, for the admin `status` command."""

from __future__ import annotations

from dataclasses import dataclass

from bot.runtime import CopilotRuntime, RuntimeInfo
from bot.sessions import SessionManager
from bot.store import Store


@dataclass(frozen=True, slots=True)
class PlatformSessions:
    live: int  # held in the runtime's memory now
    persisted: int  # resumable from the runtime's state on disk
    total: int  # threads known to the store


@dataclass(frozen=True, slots=True)
class StatusReport:
    runtime: RuntimeInfo
    sessions: dict[str, PlatformSessions]
    turns_running: int
    turns_queued: int
    store_bytes: int


async def collect_status(
    runtime: CopilotRuntime, store: Store, sessions: SessionManager
) -> StatusReport:
    live = sessions.live_by_platform()
    counts = await store.thread_counts()
    per_platform = {
        platform: PlatformSessions(live.get(platform, 0), active, total)
        for platform, (total, active) in sorted(counts.items())
    }
    return StatusReport(
        runtime=await runtime.info(),
        sessions=per_platform,
        turns_running=sessions.lanes.running,
        turns_queued=sessions.lanes.queued,
        store_bytes=store.size_bytes(),
    )


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:.1f} MiB"


def format_status(report: StatusReport) -> str:
    rt = report.runtime
    lines = [
        "threadpilot status",
        f"runtime: Copilot CLI {rt.version} (protocol {rt.protocol_version}), "
        f"pid {rt.pid or '?'}, RSS {_mib(rt.rss_bytes)}, up {rt.uptime_s:.0f}s",
        f"auth: {rt.auth_mode}",
        f"turns: {report.turns_running} running, {report.turns_queued} queued",
        "sessions (live / persisted / total threads):",
    ]
    lines += [
        f"  {platform}: {s.live} / {s.persisted} / {s.total}"
        for platform, s in report.sessions.items()
    ] or ["  none yet"]
    lines.append(f"store: {_mib(report.store_bytes)}")
    return "\n".join(lines)
