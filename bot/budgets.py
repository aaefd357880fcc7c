"""Budgets: how many turns and model tokens a person, and a channel, may use a day.

A profile's `budgets` (bot/profiles.py) sets the limits, per UTC day:

    budgets:
      per_user: {turns: 50, tokens: 200000}
      per_channel: {turns: 500}

Every turn is counted for its asker and its channel, with the tokens the model calls
used (the runtime's usage events); a turn is refused, politely and saying when the day
resets, once either has reached a limit. Commands are not counted. A turn under way is
never cut short, so a day's tokens can run over by one turn's. Counts live in the store
(`spending`), so replicas share them; admins see the day's top spenders in `status`, and
/metrics counts turns and tokens by profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from bot.clock import Clock
from bot.database import Connection
from bot.thread_key import ThreadKey

if TYPE_CHECKING:  # profiles hold budgets (and so does all that imports them)
    from bot.metrics import Metrics
    from bot.profiles import Profiles
    from bot.store import Store

_DAY_S = 86400


class Limit(BaseModel):
    """A day's allowance; what is left out is unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    turns: int | None = Field(default=None, ge=0)
    tokens: int | None = Field(default=None, ge=0)


class DailyBudgets(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    per_user: Limit | None = None
    per_channel: Limit | None = None

    def describe(self) -> str:
        parts = []
        for whom, limit in (("each person", self.per_user), ("the channel", self.per_channel)):
            if limit is not None:
                caps = [f"{limit.turns} turns"] if limit.turns is not None else []
                caps += [f"{limit.tokens:,} tokens"] if limit.tokens is not None else []
                parts.append(f"{whom}: {' and '.join(caps) or 'unlimited'} a day")
        return "; ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class Spender:
    """Who used how much today, for `status`."""

    who: str  # platform:user
    turns: int
    tokens: int


def _day(now: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def _until_reset(now: float) -> str:
    left = _DAY_S - int(now) % _DAY_S
    hours, minutes = divmod((left + 59) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class Budgets:
    def __init__(self, store: Store, clock: Clock, profiles: Profiles, metrics: Metrics) -> None:
        self._store = store
        self._clock = clock
        self._profiles = profiles
        self._metrics = metrics

    async def refusal(self, key: ThreadKey, user: str, chosen: str | None = None) -> str | None:
        """Why `user` (platform:user) may not have another turn in `key`'s thread today,
        or None if they may."""
        budgets = self._profiles.resolve(key, chosen).budgets
        if budgets is None:
            return None
        now = self._clock()
        spent = await self._spent(_day(now), (f"user:{user}", _channel(key)))
        checks = (
            (budgets.per_user, spent.get(f"user:{user}"), "You have used your"),
            (budgets.per_channel, spent.get(_channel(key)), "This channel has used its"),
        )
        for limit, used, whose in checks:
            if limit is None:
                continue
            turns, tokens = used or (0, 0)
            over = (
                f"{limit.turns} turns"
                if limit.turns is not None and turns >= limit.turns
                else f"{limit.tokens:,} model tokens"
                if limit.tokens is not None and tokens >= limit.tokens
                else None
            )
            if over is not None:
                return (
                    f"{whose} {over} for today, so I can't answer this one. The budget "
                    f"resets at 00:00 UTC, in {_until_reset(now)}."
                )
        return None

    async def spend(
        self, key: ThreadKey, user: str, tokens: int, chosen: str | None = None
    ) -> None:
        """Count a turn of `user` in `key`'s thread that used `tokens`."""
        profile = self._profiles.resolve(key, chosen)
        self._metrics.profile_turns.labels(profile.name).inc()
        self._metrics.profile_tokens.labels(profile.name).inc(tokens)
        day = _day(self._clock())

        def work(conn: Connection) -> None:
            for who in (f"user:{user}", _channel(key)):
                conn.execute(
                    "INSERT INTO spending (day, who, turns, tokens) VALUES (?, ?, 1, ?) "
                    "ON CONFLICT (day, who) DO UPDATE SET turns = spending.turns + 1, "
                    "tokens = spending.tokens + excluded.tokens",
                    (day, who, tokens),
                )

        await self._store.run(work)

    async def top_spenders(self, count: int = 5) -> list[Spender]:
        """Today's biggest users, by tokens."""
        day = _day(self._clock())

        def work(conn: Connection) -> list[Spender]:
            rows = conn.execute(
                "SELECT who, turns, tokens FROM spending WHERE day = ? AND who LIKE 'user:%' "
                "ORDER BY tokens DESC, turns DESC LIMIT ?",
                (day, count),
            ).fetchall()
            return [Spender(str(r[0]).removeprefix("user:"), r[1], r[2]) for r in rows]

        return await self._store.run(work)

    async def _spent(self, day: str, who: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        def work(conn: Connection) -> dict[str, tuple[int, int]]:
            rows = conn.execute(
                "SELECT who, turns, tokens FROM spending WHERE day = ? AND who IN (?, ?)",
                (day, *who),
            ).fetchall()
            return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

        return await self._store.run(work)


def _channel(key: ThreadKey) -> str:
    return f"channel:{key.platform}:{key.channel}"
