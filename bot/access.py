"""Access: who may talk to the bot where, and how often.

Allow-lists (THREADPILOT_ALLOWED_WORKSPACES, _CHANNELS, _USERS; empty means everyone) say
where the bot answers and whom; admins are always let in, and so is the console, whose
user already owns the process. Rate limits (turns per minute, per user and per thread)
keep one person or one runaway thread from taking the agent for everyone; they are counted
in the store, so replicas count them together.
"""

from __future__ import annotations

import logging

from bot.clock import Clock
from bot.config import Settings
from bot.database import Connection
from bot.inbound import Inbound
from bot.store import Store

log = logging.getLogger(__name__)

NOT_ALLOWED = "Sorry, I'm not available to you here. Ask an admin if you think you should be."
NOT_SHARED = (
    "Sorry, I don't answer in channels shared with other organisations. Ask an admin if "
    "you think I should."
)
_WINDOW_S = 60.0


def _waits(conn: Connection, limits: dict[str, int], now: float) -> float:
    """Seconds until one more turn fits every key's window (0: now, and it is counted)."""
    counted = [key for key, limit in limits.items() if limit > 0]
    wait = 0.0
    for key in counted:
        conn.execute("DELETE FROM rate_events WHERE key = ? AND at <= ?", (key, now - _WINDOW_S))
        limit = limits[key]
        rows = conn.execute(
            "SELECT at FROM rate_events WHERE key = ? ORDER BY at DESC LIMIT ?", (key, limit)
        ).fetchall()
        if len(rows) >= limit:  # the oldest of the last `limit` must leave the window
            wait = max(wait, rows[-1][0] + _WINDOW_S - now)
    if wait == 0.0:
        for key in counted:
            conn.execute("INSERT INTO rate_events (key, at) VALUES (?, ?)", (key, now))
    return wait


class Access:
    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock

    def refusal(self, inbound: Inbound) -> str | None:
        """Why this message may not reach the bot (logged), or None if it may."""
        platform, settings = inbound.platform, self._settings
        if inbound.shared and not settings.slack_connect:  # the operator has not opted in
            log.warning("refused %s:%s: a channel shared with another organisation",
                        platform, inbound.user_id)  # fmt: skip
            return NOT_SHARED
        if platform == "console" or settings.is_admin(platform, inbound.user_id):
            return None
        checks = [("user", settings.allowed_users, inbound.user_id)]
        if inbound.author_workspace is not None:  # the author's own, not just the thread's
            checks.append(("workspace", settings.allowed_workspaces, inbound.author_workspace))
        if inbound.key is not None:
            checks += [
                ("workspace", settings.allowed_workspaces, inbound.key.workspace),
                ("channel", settings.allowed_channels, inbound.key.channel),
            ]
        for what, allowed, value in checks:
            if allowed and f"{platform}:{value}" not in allowed:
                log.warning("refused %s:%s: %s %s is not allowed", platform,
                            inbound.user_id, what, value)  # fmt: skip
                return NOT_ALLOWED
        return None

    async def too_often(self, inbound: Inbound) -> str | None:
        """A polite "slow down" if this turn is over a rate limit, else None (and it
        counts)."""
        settings, now = self._settings, self._clock()
        user = f"{inbound.platform}:{inbound.user_id}"
        thread = str(inbound.key)
        limits = {
            f"user:{user}": settings.user_turns_per_minute,
            f"thread:{thread}": settings.thread_turns_per_minute,
        }
        if not any(limit > 0 for limit in limits.values()):
            return None
        wait = await self._store.run(lambda conn: _waits(conn, limits, now))
        if wait > 0:
            log.warning("rate limited %s in %s for %.0fs", user, thread, wait)
            return (
                "You're sending messages faster than I can take them. "
                f"Please wait {wait:.0f} seconds and try again."
            )
        return None
