"""Approvals: the agent asks, in its thread, before it does what the thread's profile
allows only with approval (`ask:` in bot/profiles.py).

The thread gets a card saying what the agent wants to do (the command, the file and its
diff, the URL), with Approve once, Approve for this thread and Deny. Whoever the agent
was answering may decide, and so may the profile's approvers; anyone else is told, only
them, that it is not theirs. The decision edits the card (who, when), is kept in the
store (the `approvals` table is the audit log) and is what the runtime gets back. What
nobody answers within the profile's `approval_timeout_s` is denied, the card saying so.
A card whose agent stopped waiting because the bot restarted (or its replica died) is
marked expired; pressing it then changes nothing.

Approving widens what the agent may use, never what a tool can reach: the tool policy
(bot/tool_policy.py) confines paths and URLs the same way before anyone is asked, and
commands run in the sandbox whatever was approved.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.clock import Clock
from bot.database import Connection
from bot.inbound import Decided, Decision
from bot.profiles import Profiles, ThreadProfile
from bot.replies import ApprovalCard, ReplySink
from bot.store import Store, select_thread_by_id, statement
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

_DETAIL_CHARS = 1500  # of a command, diff or URL on the card
_POLL_S = 1.0  # how often a waiting agent looks whether another replica took the decision
APPROVED = ("once", "thread")


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What the agent asks to do."""

    tool: str
    scope: str  # what approving it for the thread covers, in words: "running commands"
    action: str  # in words, e.g. "run a command"
    detail: str  # the command, diff or URL


# Asks the thread on behalf of one session: None once approved, else why not.
Approver = Callable[[ApprovalRequest], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class _Row:
    id: str
    key: ThreadKey
    asker: str  # platform:user
    tool: str
    scope: str
    action: str
    detail: str
    card_ref: str | None
    state: str
    decided_by: str | None
    decided_at: float | None

    @property
    def card(self) -> ApprovalCard:
        return ApprovalCard(self.id, self.asker.partition(":")[2], self.action, self.detail,
                            self._outcome())  # fmt: skip

    def _outcome(self) -> str | None:
        who = f"<@{(self.decided_by or '').partition(':')[2]}>"
        when = time.strftime("%H:%M UTC", time.gmtime(self.decided_at or 0))
        match self.state:
            case "once":
                return f"✅ Approved once by {who} at {when}."
            case "thread":
                return (
                    f"✅ Approved for this thread by {who} at {when}: I won't ask again "
                    f"here before {self.scope}."
                )
            case "denied":
                return f"❌ Denied by {who} at {when}."
            case "timed_out":
                return f"⌛ Nobody answered by {when}, so I did not do it."
            case "expired":
                return (
                    "⌛ Expired: I was restarted before anyone answered, so I did not do it. "
                    "Ask me again if it is still needed."
                )
        return None


def _short(detail: str) -> str:
    detail = detail.strip()
    if len(detail) <= _DETAIL_CHARS:
        return detail
    return f"{detail[:_DETAIL_CHARS]}\n… ({len(detail) - _DETAIL_CHARS:,} more characters)"


class Approvals:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        replica: str,
        profiles: Profiles,
        sink: Callable[[ThreadKey], ReplySink],
    ) -> None:
        self._store = store
        self._clock = clock
        self._replica = replica
        self._profiles = profiles
        self._sink = sink  # where a thread's cards go
        self._waiting: dict[str, asyncio.Future[str]] = {}

    async def ask(
        self,
        key: ThreadKey,
        thread_id: int,
        asker: str,
        profile: ThreadProfile,
        request: ApprovalRequest,
    ) -> str | None:
        """Ask the thread; None once approved, else why not (for the agent)."""
        if await self._granted(thread_id, request.scope):
            return None
        row = await self._add(thread_id, key, asker, request)
        try:  # no platform serves the thread (LookupError), or it refused the post
            ref = await self._sink(key).show_approval(row.card)
        except Exception:
            log.exception("could not post the approval card in %s", key)
            ref = None
        if ref is None:
            await self._settle(row.id, "expired", None)
            return "This needs someone's approval, and nobody could be asked here."
        await self._store.run(
            statement("UPDATE approvals SET card_ref = ? WHERE id = ?", (ref, row.id))
        )
        state = await self._outcome(row.id, profile.approval_timeout_s)
        if state is None:  # nobody answered in time
            if await self._settle(row.id, "timed_out", None):
                await self._show(key, row.id)
            state = (await self._row(row.id) or row).state
        log.info("approval %s (%s in %s): %s", row.id, request.tool, key, state)
        if state in APPROVED:
            return None
        if state == "denied":
            return "Denied by a person in the thread: do not do this; ask what they want instead."
        return "Nobody approved this in time, so it was not done."

    async def _outcome(self, approval_id: str, timeout_s: float) -> str | None:
        """The decision once taken, here or (looked up every second) on another replica;
        None when there is none after `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiter = self._waiting[approval_id] = loop.create_future()
        try:
            while (left := deadline - loop.time()) > 0:
                try:
                    return await asyncio.wait_for(asyncio.shield(waiter), min(left, _POLL_S))
                except TimeoutError:
                    row = await self._row(approval_id)
                    if row is not None and row.state != "pending":
                        return row.state
            return None
        finally:
            del self._waiting[approval_id]

    async def decide(self, decision: Decision) -> Decided:
        row = await self._row(decision.approval_id)
        if row is None:
            return Decided(None, "I don't know that request any more.")
        if row.state != "pending":
            return Decided(row.card, "This request was decided already.")
        who = f"{decision.platform}:{decision.user_id}"
        approvers = self._profiles.resolve(row.key).approvers
        if who != row.asker and who not in approvers:
            log.warning("%s may not decide approval %s", who, row.id)
            return Decided(None, "Not yours to approve: only the person I was answering or "
                                 "this channel's approvers can decide.")  # fmt: skip
        state = "denied" if decision.choice == "deny" else decision.choice
        if not await self._settle(row.id, state, who):
            settled = await self._row(row.id)
            return Decided(settled.card if settled else None, "This request was decided already.")
        waiter = self._waiting.get(row.id)
        if waiter is not None and not waiter.done():
            waiter.set_result(state)
        decided = await self._row(row.id)
        return Decided(decided.card if decided else None)

    async def expire_left(self) -> int:
        """Mark expired the open cards of replicas gone (this one's earlier runs too:
        their agents wait no more), and show it on the cards; how many."""
        now = self._clock()

        def work(conn: Connection) -> list[str]:
            rows = conn.execute(
                "UPDATE approvals SET state = 'expired', decided_at = ? WHERE state = 'pending' "
                "AND replica <> ? AND replica NOT IN (SELECT id FROM replicas) RETURNING id",
                (now, self._replica),
            ).fetchall()
            return [str(row[0]) for row in rows]

        expired = await self._store.run(work)
        for approval_id in expired:
            row = await self._row(approval_id)
            if row is not None:
                await self._show(row.key, approval_id)
        return len(expired)

    async def _show(self, key: ThreadKey, approval_id: str) -> None:
        row = await self._row(approval_id)
        if row is None or row.card_ref is None:
            return
        try:
            await self._sink(key).show_approval(row.card, row.card_ref)
        except Exception as exc:  # the record is right; only the card lags
            log.warning("could not update the approval card %s: %s", approval_id, exc)

    async def _granted(self, thread_id: int, scope: str) -> bool:
        def work(conn: Connection) -> bool:
            return (
                conn.execute(
                    "SELECT 1 FROM approvals "
                    "WHERE thread_id = ? AND scope = ? AND state = 'thread'",
                    (thread_id, scope),
                ).fetchone()
                is not None
            )

        return await self._store.run(work)

    async def _add(
        self, thread_id: int, key: ThreadKey, asker: str, request: ApprovalRequest
    ) -> _Row:
        row = _Row(secrets.token_urlsafe(12), key, asker, request.tool, request.scope,
                   request.action, _short(request.detail), None, "pending", None, None)  # fmt: skip
        values = (row.id, thread_id, self._replica, asker, row.tool, row.scope, row.action,
                  row.detail, self._clock())  # fmt: skip

        def work(conn: Connection) -> None:
            conn.execute(
                "INSERT INTO approvals (id, thread_id, replica, asker, tool, scope, action, "
                "detail, state, asked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                values,
            )

        await self._store.run(work)
        return row

    async def _settle(self, approval_id: str, state: str, by: str | None) -> bool:
        """Decide an open approval; whether it was still open (one decision wins)."""
        now = self._clock()

        def work(conn: Connection) -> bool:
            cursor = conn.execute(
                "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? "
                "WHERE id = ? AND state = 'pending'",
                (state, by, now, approval_id),
            )
            return bool(cursor.rowcount)

        return await self._store.run(work)

    async def _row(self, approval_id: str) -> _Row | None:
        def work(conn: Connection) -> _Row | None:
            row = conn.execute(
                "SELECT id, thread_id, asker, tool, scope, action, detail, card_ref, state, "
                "decided_by, decided_at FROM approvals WHERE id = ?",
                (approval_id,),
            ).fetchone()
            if row is None:
                return None
            key = select_thread_by_id(conn, row["thread_id"]).key
            return _Row(row["id"], key, row["asker"], row["tool"], row["scope"], row["action"],
                        row["detail"], row["card_ref"], row["state"], row["decided_by"],
                        row["decided_at"])  # fmt: skip

        return await self._store.run(work)
