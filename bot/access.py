"""Access: who may talk to the bot where, and how often.

Allow-lists (THREADPILOT_ALLOWED_WORKSPACES, _CHANNELS, _USERS; empty means everyone) say
where the bot answers and whom; admins are always let in, and so is the console, whose
user already owns the process. Rate limits (turns per minute, per user and per thread)
keep one person or one runaway thread from taking the agent for everyone.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque

from bot.clock import Clock
from bot.config import Settings
from bot.inbound import Inbound

log = logging.getLogger(__name__)

NOT_ALLOWED = "Sorry, I'm not available to you here. Ask an admin if you think you should be."
NOT_SHARED = (
    "Sorry, I don't answer in channels shared with other organisations. Ask an admin if "
    "you think I should."
)
_WINDOW_S = 60.0


class _Window:
    """Events in the last minute, per key."""

    def __init__(self, limit: int, clock: Clock) -> None:
        self._limit = limit
        self._clock = clock
        self._events: defaultdict[str, deque[float]] = defaultdict(deque)

    def wait(self, key: str) -> float:
        """Seconds until another event for `key` fits in the window (0: now)."""
        if self._limit <= 0:
            return 0.0
        now = self._clock()
        events = self._events[key]
        while events and events[0] <= now - _WINDOW_S:
            events.popleft()
        if len(events) >= self._limit:
            return events[0] + _WINDOW_S - now
        return 0.0

    def add(self, key: str) -> None:
        if self._limit > 0:
            self._events[key].append(self._clock())


class Access:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._per_user = _Window(settings.user_turns_per_minute, clock)
        self._per_thread = _Window(settings.thread_turns_per_minute, clock)

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

    def too_often(self, inbound: Inbound) -> str | None:
        """A polite "slow down" if this turn is over a rate limit, else None (and it
        counts)."""
        user = f"{inbound.platform}:{inbound.user_id}"
        thread = str(inbound.key)
        wait = max(self._per_user.wait(user), self._per_thread.wait(thread))
        if wait > 0:
            log.warning("rate limited %s in %s for %.0fs", user, thread, wait)
            return (
                "You're sending messages faster than I can take them. "
                f"Please wait {wait:.0f} seconds and try again."
            )
        self._per_user.add(user)
        self._per_thread.add(thread)
        return None
