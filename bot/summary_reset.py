"""Summary resets: summarize and reset, so a thread never silently loses its context.

Before the runtime's idle timer or its own compaction can drop anything, the session is
asked for a summary (not shown in the thread), retired (restorable for a while), and the
thread's next message starts a fresh session whose system message carries the summary.
A short note in the thread says so.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing

from bot.config import Settings
from bot.metrics import Metrics
from bot.sessions import SessionManager
from bot.store import Retirement, ThreadRecord
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

SUMMARY_PROMPT = (
    "Summarize our conversation so far so that you could continue it from the summary "
    "alone: keep facts, names, numbers, decisions, open questions and my preferences. "
    "Reply with the summary only."
)

# Why a summary reset happened, as its note says.
_REASONS = {
    "idle": "after a quiet spell",
    "context": "because it was filling my memory",
}


class SummaryReset:
    def __init__(
        self,
        sessions: SessionManager,
        settings: Settings,
        metrics: Metrics,
        tell: Callable[[ThreadKey, str], Awaitable[None]],  # posts a note into a thread
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._metrics = metrics
        self._tell = tell

    async def run(self, thread: ThreadRecord, cause: str) -> ThreadRecord | None:
        """Summarize and reset the thread's session; the caller holds its lane.

        Returns the thread as it now is, or None when no summary could be had (the
        session is then left as it was, and nothing is lost).
        """
        try:
            turn = await self._sessions.start_turn(thread, SUMMARY_PROMPT)
            async with aclosing(turn.events()) as events:
                async for _ in events:  # the summary is for the next session, not the thread
                    pass
        except Exception as exc:
            log.exception("summarizing %s failed", thread.key)
            self._metrics.error("summary reset", f"no summary for {thread.key}: {exc!r}")
            return None
        if turn.error is not None or not turn.answer.strip():
            self._metrics.error("summary reset", f"no summary for {thread.key}: {turn.error}")
            return None
        fresh = await self._sessions.reset(
            thread, Retirement(cause, turn.answer, turn.user_event_id)
        )
        log.info(
            "summary reset (%s) of %s: %s -> %s",
            cause,
            thread.key,
            thread.session_id,
            fresh.session_id,
        )
        if self._settings.summary_reset_notes:
            await self._note(thread, cause)
        return fresh

    async def _note(self, thread: ThreadRecord, cause: str) -> None:
        text = (
            f"I summarized our conversation {_REASONS[cause]} and carry on from "
            "that summary. Say `restore` to go back to the full conversation."
        )
        try:
            await self._tell(thread.key, text)
        except Exception as exc:  # the reset itself is done; only the note is missing
            self._metrics.error("summary reset note", f"{thread.key}: {exc}")
