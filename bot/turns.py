"""Turn: one prompt sent to a live session, read back as reply events until it is idle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence

from copilot import CopilotSession
from copilot.session_events import (
    AssistantMessageData,
    AssistantMessageDeltaData,
    AssistantTurnRetryData,
    AssistantUsageData,
    SessionErrorData,
    SessionEvent,
    SessionIdleData,
    SessionUsageInfoData,
    ToolExecutionCompleteData,
    ToolExecutionStartData,
    UserMessageData,
)

from bot.attachments import Attachment
from bot.replies import (
    ErrorReply,
    FinalText,
    ReplyEvent,
    TextDelta,
    TextRestart,
    ToolProgress,
    Usage,
)
from bot.runtime import CopilotRuntime, RuntimeStopped

log = logging.getLogger(__name__)

_ABORT_GRACE_S = 10.0
NO_ANSWER = "The agent finished without writing an answer."
RUNTIME_STOPPED_MESSAGE = (
    "The agent's runtime stopped unexpectedly while answering, so this answer is cut "
    "short. It is restarting; please send your message again in a moment."
)


def describe_error(error: SessionErrorData) -> str:
    """A runtime error, worded for the person in the thread."""
    code = error.status_code  # the provider's HTTP status
    if "No GitHub OAuth token" in error.message:
        return (
            "I have no model credentials yet. An admin needs to set GITHUB_TOKEN or a "
            "model provider (THREADPILOT_PROVIDER_BASE_URL)."
        )
    if code == 429:
        return "The model provider is rate-limiting requests right now. Please try again shortly."
    if code in (401, 403):
        return (
            "The model provider refused the bot's credentials. "
            "An admin needs to check the provider configuration."
        )
    if code is not None and code >= 500:
        return (
            f"The model provider failed to answer (HTTP {code}), even after retrying. "
            "Please try again in a moment."
        )
    if error.message.startswith("Failed to get response from the AI model"):
        return (
            "I could not get an answer from the model provider: the connection failed or "
            "broke off, even after retrying. Please try again in a moment."
        )
    detail = error.message.strip().splitlines()[0][:300] if error.message.strip() else "unknown"
    return f"The agent ran into an error: {detail}"


class Turn:
    """Call `send()` (it raises SessionNotFound before anything is shown), then iterate
    `events()`. Afterwards the runtime event ids, the answer and any error are set."""

    def __init__(
        self,
        session: CopilotSession,
        prompt: str,
        attachments: Sequence[Attachment],
        timeout_s: float,
        runtime: CopilotRuntime,
    ) -> None:
        self._session = session
        self._runtime = runtime
        self._prompt = prompt
        self._attachments = [attachment.to_runtime() for attachment in attachments]
        self._timeout_s = timeout_s
        self._queue: asyncio.Queue[SessionEvent | RuntimeStopped] = asyncio.Queue()
        self._unsubscribe: Callable[[], None] | None = None
        self._forsaken = False  # another replica owns the thread: nothing to wait for
        self._message_id: str | None = None
        self.user_event_id: str | None = None
        self.answer_event_id: str | None = None
        self.answer = ""
        self.error: str | None = None
        self.usage: Usage | None = None
        self._pieces: list[str] = []
        self._streaming_id: str | None = None
        self._deltas: list[str] = []  # the text streamed so far
        self._kept = 0  # of those deltas, the ones of messages the runtime completed
        self._tools: dict[str, str] = {}
        self.redacted: Counter[str] = Counter()  # removed from what the model is sent
        self.tokens = 0  # prompt and answer tokens of its model calls

    async def send(self) -> None:
        self._unsubscribe = self._session.on(self._queue.put_nowait)
        self._runtime.watch(self._queue)
        try:
            self._message_id = await self._runtime.send(
                self._session, self._prompt, self._attachments
            )
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._runtime.unwatch(self._queue)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def events(self) -> AsyncGenerator[ReplyEvent, None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        started = idle = False
        try:
            while True:
                try:
                    event = await self._next_event(deadline)
                except TimeoutError:
                    idle = True  # _abort waits for it
                    await self._abort()
                    self.error = f"timed out after {self._timeout_s:g}s"
                    yield ErrorReply(
                        f"The agent took longer than {self._timeout_s:g} seconds and was "
                        "stopped. Please try again, perhaps with a smaller request."
                    )
                    return
                if isinstance(event, RuntimeStopped):
                    idle = True  # nothing left to abort
                    self.error = "the Copilot runtime stopped"
                    yield ErrorReply(RUNTIME_STOPPED_MESSAGE)
                    return
                if event.agent_id:  # sub-agent chatter; its results reach the main agent
                    continue
                if not started:
                    started = self._starts_turn(event)
                    if not (started and isinstance(event.data, SessionErrorData)):
                        continue
                if isinstance(event.data, SessionIdleData):
                    idle = True
                    break
                reply = self._translate(event)
                if isinstance(reply, ErrorReply) and len(self._deltas) > self._kept:
                    # The message being streamed will never be finished: take its half back.
                    yield self._withdraw_unfinished()
                if reply is not None:
                    yield reply
            if self.usage is not None:
                yield self.usage
            if self.error is None:
                self.answer = "\n\n".join(self._pieces)
                yield FinalText(self.answer or NO_ANSWER)
        finally:
            if not idle:  # the consumer stopped early: do not leave the agent running
                await self._abort()
            self.close()

    def _starts_turn(self, event: SessionEvent) -> bool:
        """Whether `event` is the first of this turn; earlier ones belong to an earlier turn.

        Normally that is our user message. An error can come first when the runtime
        fails the message before recording it (no credentials, for one).
        """
        match event.data:
            case UserMessageData(message_id=message_id) if message_id == self._message_id:
                self.user_event_id = str(event.id)
                return True
            case SessionErrorData(originating_message_id=origin):
                return origin in (None, self._message_id)
        return False

    async def _next_event(self, deadline: float) -> SessionEvent | RuntimeStopped:
        if not self._queue.empty():
            return self._queue.get_nowait()
        # timeout_at, not wait_for: no extra task and loop round trip for every event.
        async with asyncio.timeout_at(deadline):
            return await self._queue.get()

    def _translate(self, event: SessionEvent) -> ReplyEvent | None:
        """Record what the event tells; return what the thread should see of it."""
        match event.data:
            case AssistantMessageDeltaData(delta_content=text, message_id=message_id) if text:
                # A new message of the same answer (after a tool call): the deltas join
                # up exactly as the final answer does.
                if message_id != self._streaming_id:
                    text = f"\n\n{text}" if self._deltas else text
                    self._streaming_id = message_id
                self._deltas.append(text)
                return TextDelta(text)
            case AssistantMessageData(content=text, chunk_index=chunk) if text:
                if chunk and self._pieces:  # a long message delivered in chunks
                    self._pieces[-1] += text
                else:
                    self._pieces.append(text)
                self.answer_event_id = str(event.id)
                self._kept = len(self._deltas)
            case AssistantTurnRetryData(reason=reason):
                # The stream broke off (the provider dropped it, say) and the runtime asks
                # again: the message it was streaming starts over.
                log.info("model call in %s retried: %s", self._session.session_id, reason)
                return self._withdraw_unfinished()
            case ToolExecutionStartData(tool_call_id=call_id, tool_name=name):
                self._tools[call_id] = name
                return ToolProgress(call_id, name, "running")
            case ToolExecutionCompleteData(tool_call_id=call_id, success=ok):
                name = self._tools.get(call_id, "tool")
                return ToolProgress(call_id, name, "done" if ok else "failed")
            case AssistantUsageData(input_tokens=sent, output_tokens=written):
                self.tokens += (sent or 0) + (written or 0)
            case SessionUsageInfoData(current_tokens=used, token_limit=limit):
                self.usage = Usage(used, limit)
            case SessionErrorData() as error:
                self.error = error.message
                log.warning("turn in %s failed: %s", self._session.session_id, error.message)
                return ErrorReply(describe_error(error))
        return None

    def _withdraw_unfinished(self) -> TextRestart:
        del self._deltas[self._kept :]
        self._streaming_id = None
        return TextRestart("".join(self._deltas))

    def forsake(self) -> None:
        """Another replica owns the thread now: stopping this turn waits for no idle
        session, which its session could not record (its writes are refused)."""
        self._forsaken = True

    async def _abort(self) -> None:
        """Stop the running turn and wait (briefly) until the session is idle again."""
        try:
            await self._session.abort()
        except Exception:
            log.exception("aborting %s failed", self._session.session_id)
            return
        if self._forsaken:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_ABORT_GRACE_S):
                while True:
                    event = await self._queue.get()
                    if isinstance(event, RuntimeStopped) or isinstance(event.data, SessionIdleData):
                        return
