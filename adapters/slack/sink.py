"""SlackSink: a reply stream shown in a Slack thread.

While a turn runs: a progress indicator (the assistant status in DMs, a reaction on the
question elsewhere) if the first reply takes a moment; text streamed into one message
with chat.startStream/appendStream/stopStream, or, where Slack refuses that, a message
edited with chat.update; tool activity shown as it happens. A message changes at most
once a second; one that fills up (3,900 characters) gets its part of the answer and the
answer goes on in the next. The final answer is exact across them, split at paragraph
boundaries, and goes as a file past 12,000 characters.

Everything goes as Markdown (`markdown_text`), streamed or not, so an answer renders the
same either way; only replies through a response URL, which takes no Markdown, are
converted to Slack's mrkdwn.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.live_reply import DelayedIndicator, LiveReply, render_reply
from adapters.slack.cards import card_message
from adapters.slack.client import Respond, safe
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.text import settled
from bot.replies import (
    ApprovalCard,
    OpenedThread,
    ReplyEvent,
)
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 3_900  # Slack cuts chat.update text at 4,000; leave room for markers
FILE_THRESHOLD = 12_000
# How near its limit a streamed message grows only by whole paragraphs: what follows the
# last one may be cut off into the next message. About a second of a fast model's text.
_SETTLING = 800
INDICATOR_DELAY_S = 0.5  # a reply quicker than this needs no "working on it"
# How Slack's task updates call what a tool is doing.
_TASK_STATUS = {"running": "in_progress", "done": "complete", "failed": "error"}
WORKING = "eyes"  # the reaction on a question being answered
WAITING = "hourglass_flowing_sand"  # on one that waits behind others in its thread
# The end of a text that may still become a link, a mention or a broadcast: a stream
# holds it back until it is whole, since what is streamed cannot be taken back.
_PENDING = re.compile(r"(\[[^\]\n]*(\]\([^)\n]*)?|<[^>\n]*|@\w*)\Z")


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


class SlackSurface:
    """Plain Slack messages in the thread: posted, edited with chat.update, uploaded."""

    def __init__(self, target: Target) -> None:
        self._target = target

    async def open(self, text: str) -> str:
        return await self.post(text)

    async def edit(self, ref: str, text: str) -> None:
        target = self._target
        await target.client.chat_update(channel=target.channel, ts=ref, markdown_text=text)

    async def post(self, text: str) -> str:
        target = self._target
        response = await target.client.chat_postMessage(
            channel=target.channel, thread_ts=target.thread_ts, markdown_text=text
        )
        return str(response["ts"])

    async def upload(self, note: str, content: str) -> str:
        target = self._target
        response = await target.client.files_upload_v2(
            channel=target.channel,
            thread_ts=target.thread_ts,
            content=content,
            filename="answer.md",
            title="Answer",
        )
        return f"file:{response['file']['id']}"


class _SlackReply(LiveReply):
    """The reply grows in a stream (slack_sdk's chat_stream helper: chat.startStream,
    appendStream, stopStream) where Slack streams, with tool activity as task updates;
    else in a message edited with chat.update, tool activity under it. The pacing is
    LiveReply's, so the helper holds nothing back (buffer_size=1)."""

    def __init__(self, target: Target, streaming: StreamingSupport, interval: float) -> None:
        super().__init__(
            SlackSurface(target),
            limit=MESSAGE_LIMIT,
            file_threshold=FILE_THRESHOLD,
            interval=interval,
        )
        self._target = target
        self._streaming = streaming
        self._stream: AsyncChatStream | None = None
        # What the stream has been handed, made safe (a call that failed to go out is
        # sent again by the helper with the next one).
        self._sent = ""
        self._shown: dict[str, str] = {}  # tool call id -> status shown in this stream

    def _tool_chunks(self) -> list[dict[str, str]]:
        chunks = [
            {
                "type": "task_update",
                "id": call_id,
                "title": f"Using {name}",
                "status": _TASK_STATUS[state],
            }
            for call_id, (name, state) in self.tools.items()
            if self._shown.get(call_id) != state
        ]
        self._shown = {call_id: state for call_id, (_, state) in self.tools.items()}
        return chunks

    async def _open(self) -> str:
        target = self._target
        if self._streaming.available and target.thread_ts:
            text = self._stable() or safe(self.live[:MESSAGE_LIMIT])
            self._shown = {}
            stream = await target.client.chat_stream(
                channel=target.channel,
                thread_ts=target.thread,
                recipient_team_id=target.team_id,
                recipient_user_id=target.user_id,
                buffer_size=1,
            )
            try:  # the first append starts the stream
                await stream.append(markdown_text=text, chunks=self._tool_chunks())
            except SlackApiError as exc:
                log.info("chat.startStream refused (%s): editing a message instead", exc)
                self._streaming.available = False
            else:
                self._stream, self._sent = stream, text
                return str(stream.ts)
        return await super()._open()

    async def _grow(self) -> None:
        if self._stream is None:
            return await super()._grow()
        stable = self._stable()
        # Text that made safe no longer begins with what was sent waits for the end.
        new = stable[len(self._sent) :] if stable.startswith(self._sent) else ""
        chunks = self._tool_chunks()
        if new or chunks:
            await self._calling(self._stream.append(markdown_text=new, chunks=chunks or None))
            self._sent += new
        return None

    def _stable(self) -> str:
        """The streamable part of the text, made safe: all but a construct still open,
        and, near the end of a message, only what the message keeps whatever comes
        next (a stream cannot take text back: streamed past its cut, the message would
        show the next one's beginning until it is edited back)."""
        text = self.live[:MESSAGE_LIMIT]
        if len(self.live) > MESSAGE_LIMIT - _SETTLING:
            text = text[: settled(text, MESSAGE_LIMIT)]
        pending = _PENDING.search(text)
        return safe(text[: pending.start()] if pending else text)

    async def restart(self, text: str) -> None:
        if self._stream is not None and not safe(self._part(text)).startswith(self._sent):
            # A stream only grows: end it, and edit the message from here on.
            await self._calling(self._stream.stop())
            self._stream = None
            self._pacer.edited()
        await super().restart(text)

    async def _close(self, text: str) -> bool:
        if self._stream is None:
            return await super()._close(text)
        text, stream, self._stream = safe(text), self._stream, None
        if text.startswith(self._sent):  # the stream was its beginning: stop on the rest
            rest = text[len(self._sent) :] or None
            await self._calling(stream.stop(markdown_text=rest, chunks=self._tool_chunks()))
            return True
        await self._calling(stream.stop())  # it ran past that: to be edited back
        return False

    async def _fail(self, warning: str) -> str:
        if self._stream is None:
            return await super()._fail(warning)
        await self._calling(self._stream.stop(markdown_text=f"\n\n{warning}"))
        return str(self.ref)

    async def _calling(self, call: Awaitable[Any]) -> None:
        """A stream call whose failure leaves the answer to the final text."""
        try:
            await call
        except SlackApiError as exc:
            log.warning("streaming into %s failed: %s", self._target.channel, exc)


class SlackSink:
    def __init__(
        self, target: Target, streaming: StreamingSupport, edit_interval_s: float = 1.0
    ) -> None:
        self._target = target
        self._streaming = streaming
        self._edit_interval_s = edit_interval_s
        self._waiting = False  # the WAITING reaction is up

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        if self._waiting:  # its turn has come
            self._waiting = not await self._react(WAITING, False)
        return await render_reply(
            events,
            _SlackReply(self._target, self._streaming, self._edit_interval_s),
            DelayedIndicator(self._indicate, self._stop_indicating, INDICATOR_DELAY_S),
            private=self._private,
            notice=self._notice,
            queued=self._queued,
            # Outside a thread (a slash command) every answer is for the asker alone.
            all_private=self._target.thread_ts is None,
        )

    async def _notice(self, text: str) -> str:
        return await SlackSurface(self._target).post(f"ℹ️ {text}")

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        client = self._target.client
        origin_link = await self._permalink(origin.channel, origin.thread)
        response = await client.chat_postMessage(
            channel=origin.channel,
            markdown_text=f"🌿 **{title}**: a branch of [this thread]({origin_link}).",
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
        if not target.is_dm:
            return await self._react(WORKING, on)
        try:
            await target.client.assistant_threads_setStatus(
                channel_id=target.channel,
                thread_ts=target.thread,
                status="is thinking…" if on else "",
            )
        except SlackApiError as exc:  # e.g. a missing scope: the reply comes all the same
            log.info("progress indicator in %s: %s", target.channel, exc)
            return False
        return True

    async def _queued(self) -> None:
        if self._target.question_ts:
            self._waiting = await self._react(WAITING, True)

    async def _react(self, name: str, on: bool) -> bool:
        """Add (or take away) a reaction on the question; whether that worked."""
        target = self._target
        change = target.client.reactions_add if on else target.client.reactions_remove
        try:
            await change(channel=target.channel, timestamp=str(target.question_ts), name=name)
        except SlackApiError as exc:  # e.g. a missing scope: the reply comes all the same
            log.info("reaction %s in %s: %s", name, target.channel, exc)
            return False
        return True

    async def _permalink(self, channel: str, ts: str) -> str:
        response = await self._target.client.chat_getPermalink(channel=channel, message_ts=ts)
        return str(response["permalink"])

    async def decline(self, text: str) -> list[str]:
        return await self._private(text)

    async def show_approval(self, card: ApprovalCard, ref: str | None = None) -> str | None:
        target = self._target
        shown = card_message(card)
        if ref is None:
            response = await target.client.chat_postMessage(
                channel=target.channel, thread_ts=target.thread_ts, **shown
            )
            return str(response["ts"])
        await target.client.chat_update(channel=target.channel, ts=ref, **shown)
        return ref

    async def _private(self, text: str) -> list[str]:
        """Only for the asker: via the response URL, else an ephemeral message."""
        target = self._target
        if target.respond is not None:
            # A response URL takes no Markdown: the one place mrkdwn remains.
            await target.respond(text=to_mrkdwn(text), response_type="ephemeral")
            return ["ephemeral"]
        response = await target.client.chat_postEphemeral(
            channel=target.channel,
            user=str(target.user_id),
            thread_ts=target.thread_ts,
            markdown_text=text,
        )
        return [f"ephemeral:{response.get('message_ts', '')}"]
