"""SlackSink: a reply stream shown in a Slack thread.

While a turn runs: a progress indicator (the assistant status in DMs, a reaction on the
question elsewhere) if the first reply takes a moment; text streamed into one message
with chat.startStream/appendStream/stopStream, or, where Slack refuses that, a message
edited with chat.update; tool activity shown as it happens. Edits never come faster than
one a second per thread. The final answer replaces the preview exactly: in Slack mrkdwn,
split at paragraph boundaries past 4,000 characters, and as a file past 12,000.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import DelayedIndicator, Pacer, split_text
from adapters.slack.mrkdwn import to_mrkdwn
from bot.replies import (
    ErrorReply,
    FinalText,
    Notice,
    OpenedThread,
    ReplyEvent,
    TextDelta,
    ToolFinished,
    ToolStarted,
)
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 3_900  # Slack cuts chat.update text at 4,000; leave room for markers
FILE_THRESHOLD = 12_000
INDICATOR_DELAY_S = 0.5  # a reply quicker than this needs no "working on it"

Respond = Callable[..., Awaitable[Any]]


@dataclass
class StreamingSupport:
    """Whether chat.startStream works for this app; learned from the first refusal."""

    available: bool = True


@dataclass(frozen=True, slots=True)
class Target:
    """Where a reply goes and who asked."""

    client: AsyncWebClient
    team_id: str
    channel: str
    thread_ts: str | None  # None: not in a thread (a slash command's channel)
    user_id: str | None = None  # the asker: ephemeral replies, stream recipient
    question_ts: str | None = None  # the asker's message, for the progress reaction
    respond: Respond | None = None  # a slash command's or shortcut's response_url

    @property
    def is_dm(self) -> bool:
        return self.channel.startswith("D")

    @property
    def thread(self) -> str:
        """The thread; only asked where one is known."""
        if self.thread_ts is None:
            raise RuntimeError(f"no thread in {self.channel}")
        return self.thread_ts


class _LiveMessage:
    """The one message a turn's answer grows in."""

    def __init__(self, target: Target, streaming: StreamingSupport, interval: float) -> None:
        self._target = target
        self._streaming = streaming
        self._pacer = Pacer(self._flush, interval)
        self.text = ""  # the answer so far
        self.ts: str | None = None
        self._stream = False
        self._streamed = 0  # characters of `text` appended to the stream
        self._tools: dict[str, tuple[str, str]] = {}  # call id -> (name, status)
        self._tools_shown: dict[str, str] = {}

    async def add(self, text: str) -> None:
        self.text += text
        await self._changed()

    async def tool(self, call_id: str, name: str, status: str) -> None:
        self._tools[call_id] = (name, status)
        await self._changed()

    async def _changed(self) -> None:
        if self.ts is None:
            await self._open()
            self._pacer.edited()
        else:
            self._pacer.changed()

    def _preview(self) -> str:
        text = to_mrkdwn(self.text[:MESSAGE_LIMIT]) + (
            "…" if len(self.text) > MESSAGE_LIMIT else ""
        )
        running = [name for name, status in self._tools.values() if status == "in_progress"]
        if running:
            text += f"\n_using {', '.join(running)}…_"
        return text or "…"

    def _tool_chunks(self) -> list[dict[str, str]]:
        chunks = [
            {"type": "task_update", "id": call_id, "title": f"Using {name}", "status": status}
            for call_id, (name, status) in self._tools.items()
            if self._tools_shown.get(call_id) != status
        ]
        self._tools_shown = {call_id: status for call_id, (_, status) in self._tools.items()}
        return chunks

    async def _open(self) -> None:
        target = self._target
        if self._streaming.available and target.thread_ts:
            text = self.text[:MESSAGE_LIMIT]
            try:
                response = await target.client.chat_startStream(
                    channel=target.channel,
                    thread_ts=target.thread,
                    markdown_text=text or None,
                    chunks=self._tool_chunks() or None,
                    recipient_team_id=target.team_id,
                    recipient_user_id=target.user_id,
                )
            except SlackApiError as exc:
                log.info("chat.startStream refused (%s): editing a message instead", exc)
                self._streaming.available = False
            else:
                self.ts, self._stream, self._streamed = response["ts"], True, len(text)
                return
        response = await target.client.chat_postMessage(
            channel=target.channel, thread_ts=target.thread_ts, text=self._preview()
        )
        self.ts = response["ts"]

    async def _flush(self) -> None:
        target = self._target
        try:
            if self._stream:
                new = self.text[self._streamed : MESSAGE_LIMIT]
                chunks = self._tool_chunks()
                if new or chunks:
                    await target.client.chat_appendStream(
                        channel=target.channel,
                        ts=str(self.ts),
                        markdown_text=new or None,
                        chunks=chunks or None,
                    )
                    self._streamed += len(new)
            else:
                await target.client.chat_update(
                    channel=target.channel, ts=str(self.ts), text=self._preview()
                )
        except SlackApiError as exc:  # the final edit carries everything anyway
            log.warning("editing the reply in %s failed: %s", target.channel, exc)

    async def finish(self, final: str, post: Callable[[str], Awaitable[str]]) -> list[str]:
        """Show `final` exactly: in this message (and more, or a file, when long)."""
        await self._pacer.settle()
        as_file = len(final) > FILE_THRESHOLD
        parts = [] if as_file else split_text(final, MESSAGE_LIMIT)
        first = (
            f"The answer is {len(final):,} characters long, so here it is as a file."
            if as_file
            else parts.pop(0)
        )
        target = self._target
        if self.ts is None:
            refs = [await post(to_mrkdwn(first))]
        else:
            if self._stream:
                whole = not parts and not as_file and final.startswith(self.text[: self._streamed])
                await self._call(
                    target.client.chat_stopStream,
                    channel=target.channel,
                    ts=self.ts,
                    markdown_text=(final[self._streamed :] if whole else None) or None,
                    chunks=self._tool_chunks() or None,
                )
                if not whole:  # the stream ran past the first part: edit it to that
                    self._pacer.edited()
                    await self._pacer.settle()
                    await self._edit(to_mrkdwn(first), post)
            else:
                await self._edit(to_mrkdwn(first), post)
            refs = [self.ts]
        refs += [await post(to_mrkdwn(part)) for part in parts]
        if as_file:
            response = await target.client.files_upload_v2(
                channel=target.channel,
                thread_ts=target.thread_ts,
                content=final,
                filename="answer.md",
                title="Answer",
            )
            refs.append(f"file:{response['file']['id']}")
        return refs

    async def fail(self, message: str, post: Callable[[str], Awaitable[str]]) -> list[str]:
        await self._pacer.settle()
        warning = f":warning: {message}"
        if self.ts is None:
            return [await post(warning)]
        if self._stream:
            await self._call(
                self._target.client.chat_stopStream,
                channel=self._target.channel,
                ts=self.ts,
                markdown_text=f"\n\n⚠️ {message}",
            )
        else:
            self._tools.clear()
            await self._edit(f"{self._preview()}\n\n{warning}", post)
        return [self.ts]

    async def _edit(self, text: str, post: Callable[[str], Awaitable[str]]) -> None:
        """The last edit of the message; if Slack will not take it, the text is posted."""
        target = self._target
        try:
            await target.client.chat_update(channel=target.channel, ts=str(self.ts), text=text)
        except SlackApiError as exc:
            log.warning("final edit in %s failed (%s): posting it instead", target.channel, exc)
            await post(text)

    async def _call(self, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> None:
        try:
            await method(**kwargs)
        except SlackApiError as exc:
            log.warning("%s in %s failed: %s", method.__name__, self._target.channel, exc)


class SlackSink:
    def __init__(
        self, target: Target, streaming: StreamingSupport, edit_interval_s: float = 1.0
    ) -> None:
        self._target = target
        self._streaming = streaming
        self._edit_interval_s = edit_interval_s

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        live = _LiveMessage(self._target, self._streaming, self._edit_interval_s)
        indicator = DelayedIndicator(self._indicate, self._stop_indicating, INDICATOR_DELAY_S)
        refs: list[str] = []
        try:
            async for event in events:
                indicator.not_needed()
                match event:
                    case TextDelta(text):
                        await live.add(text)
                    case ToolStarted(call_id, name):
                        await live.tool(call_id, name, "in_progress")
                    case ToolFinished(call_id, name, ok):
                        await live.tool(call_id, name, "complete" if ok else "error")
                    case FinalText(text, private) if private or self._target.thread_ts is None:
                        # Outside a thread (a slash command) every answer is for the asker.
                        refs.append(await self._private(text))
                    case FinalText(text):
                        refs += await live.finish(text, self._post)
                    case Notice(text):
                        refs.append(await self._post(f":information_source: {to_mrkdwn(text)}"))
                    case ErrorReply(message):
                        refs += await live.fail(message, self._post)
        finally:
            await indicator.stop()
        return refs

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        client = self._target.client
        origin_link = await self._permalink(origin.channel, origin.thread)
        response = await client.chat_postMessage(
            channel=origin.channel,
            text=f":herb: *{to_mrkdwn(title)}*: a branch of <{origin_link}|this thread>.",
        )
        key = ThreadKey("slack", origin.workspace, origin.channel, response["ts"])
        return OpenedThread(
            key, f"[a new thread]({await self._permalink(key.channel, key.thread)})"
        )

    async def _indicate(self) -> bool:
        """The assistant status in DMs, a reaction on the question elsewhere."""
        target = self._target
        if not target.thread_ts or not (target.is_dm or target.question_ts):
            return False
        return await self._set_indicator(True)

    async def _stop_indicating(self) -> None:
        await self._set_indicator(False)

    async def _set_indicator(self, on: bool) -> bool:
        target = self._target
        try:
            if target.is_dm:
                await target.client.assistant_threads_setStatus(
                    channel_id=target.channel,
                    thread_ts=target.thread,
                    status="is thinking…" if on else "",
                )
            else:
                change = target.client.reactions_add if on else target.client.reactions_remove
                await change(channel=target.channel, timestamp=str(target.question_ts), name="eyes")
        except SlackApiError as exc:  # e.g. a missing scope: the reply comes all the same
            log.info("progress indicator in %s: %s", target.channel, exc)
            return False
        return True

    async def _permalink(self, channel: str, ts: str) -> str:
        response = await self._target.client.chat_getPermalink(channel=channel, message_ts=ts)
        return str(response["permalink"])

    async def _post(self, text: str) -> str:
        target = self._target
        response = await target.client.chat_postMessage(
            channel=target.channel, thread_ts=target.thread_ts, text=text
        )
        return str(response["ts"])

    async def _private(self, text: str) -> str:
        """Only for the asker: via the response URL, else an ephemeral message."""
        target = self._target
        if target.respond is not None:
            await target.respond(text=to_mrkdwn(text), response_type="ephemeral")
            return "ephemeral"
        response = await target.client.chat_postEphemeral(
            channel=target.channel,
            user=str(target.user_id),
            thread_ts=target.thread_ts,
            text=to_mrkdwn(text),
        )
        return f"ephemeral:{response.get('message_ts', '')}"
