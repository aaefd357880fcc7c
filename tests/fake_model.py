"""A fake OpenAI-compatible model provider on 127.0.0.1 for the real Copilot CLI to call.

It speaks `/v1/chat/completions`, streaming (SSE) and not, and answers by script: by
default it echoes the last user message ("echo: <text>"); a test can script a reply
text, an HTTP error, a hang, a gate to hold the answer, or tool calls. Every request
body is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.thread_context import SUMMARY_TAG, orientation

_DATETIME_TAG = re.compile(r"<current_datetime>.*?</current_datetime>\s*", re.S)
# What the bot frames a message with (bot/thread_context.py): the thread's messages it
# had not told the agent yet, and who wrote the message.
_CONTEXT_BLOCK = re.compile(r"<thread_context>\n(.*?)\n</thread_context>\s*", re.S)
_SPEAKER = re.compile(r"^([^\n<]*? <@[^>\s]+>): ")


def content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def _framed_text(content: Any) -> str:
    """A user message as the bot sent it: without the CLI's <current_datetime> prefix and
    without attachments (they come as further parts after the text)."""
    if isinstance(content, list):
        content = content[0].get("text", "") if content else ""
    return _DATETIME_TAG.sub("", str(content or ""))


def _typed_text(content: Any) -> str:
    return _SPEAKER.sub("", _CONTEXT_BLOCK.sub("", _framed_text(content)), count=1)


# How what the bot gives at each session start (orientation, summary) begins: the
# runtime adds it as a user message of its own.
_STARTS = (
    *(str(orientation(platform)) for platform in ("slack", "discord")),
    f"<{SUMMARY_TAG}>",
)


def _user_messages(body: dict[str, Any]) -> list[Any]:
    """What people (and the bot's own prompts) said: not what it gives at session start."""
    return [
        m.get("content")
        for m in body["messages"]
        if m["role"] == "user" and not content_text(m.get("content")).startswith(_STARTS)
    ]


def start_context(body: dict[str, Any]) -> str:
    """What the bot gave at the session's start (orientation, summary), if anything."""
    found = (content_text(m.get("content")) for m in body["messages"] if m["role"] == "user")
    return next((text for text in found if text.startswith(_STARTS)), "")


def oriented(body: dict[str, Any]) -> bool:
    """Whether the request carries the bot's orientation for a multi-person thread."""
    return start_context(body).startswith(_STARTS[:-1])


def user_texts(body: dict[str, Any]) -> list[str]:
    """The user messages of a request as typed: without the CLI's <current_datetime>
    prefix, the bot's thread context and speaker, and attachments."""
    return [_typed_text(content) for content in _user_messages(body)]


def speakers(body: dict[str, Any]) -> list[str | None]:
    """Who the bot said wrote each user message of a request (`Name <@id>`), if anyone."""
    found = [_SPEAKER.match(_CONTEXT_BLOCK.sub("", _framed_text(c))) for c in _user_messages(body)]
    return [match.group(1) if match else None for match in found]


def thread_contexts(body: dict[str, Any]) -> list[str | None]:
    """The thread context the bot gave with each user message of a request, if any."""
    found = [_CONTEXT_BLOCK.search(_framed_text(c)) for c in _user_messages(body)]
    return [match.group(1) if match else None for match in found]


def last_user_text(body: dict[str, Any]) -> str:
    texts = user_texts(body)
    return texts[-1] if texts else ""


def system_text(body: dict[str, Any]) -> str:
    return "\n".join(
        content_text(m.get("content")) for m in body["messages"] if m["role"] == "system"
    )


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class Reply:
    text: str | None = None  # None: "echo: <last user text>"
    status: int = 200  # anything else: that HTTP error instead of an answer
    gate: asyncio.Event | None = None  # hold the answer until the test sets it
    hang: bool = False  # never answer
    tool_calls: list[ToolCall] = field(default_factory=list)
    chunks: int = 3
    chunk_delay: float = 0.0  # seconds between streamed chunks (a model's pace)
    drop_after: int | None = None  # streamed chunks before the connection drops
    prompt_tokens: int | None = None  # reported usage; default: a rough count


@dataclass
class _Rule:
    match: Callable[[dict[str, Any]], bool]
    reply: Reply
    times: int | None


class FakeModel:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []  # each request's Authorization header
        # Called with each request as it arrives: a test checks what holds at that moment.
        self.observers: list[Callable[[dict[str, Any]], None]] = []
        self._rules: list[_Rule] = []
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)
        self._stopping = asyncio.Event()  # ends every hang, so the server can stop
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def script(
        self,
        match: str | Callable[[dict[str, Any]], bool],
        reply: Reply,
        times: int | None = 1,
    ) -> None:
        """Answer requests whose last user message contains `match` (or for which the
        predicate holds) with `reply`, `times` times (None: always)."""
        if isinstance(match, str):
            marker = match

            def match(body: dict[str, Any]) -> bool:
                return marker in last_user_text(body)

        self._rules.append(_Rule(match, reply, times))

    def hold(self, marker: str) -> asyncio.Event:
        """Hold the answer to the next request with `marker` until the returned event is
        set (a slow model, for as long as a test needs one)."""
        gate = asyncio.Event()
        self.script(marker, Reply(gate=gate))
        return gate

    def requests_with(self, marker: str) -> list[dict[str, Any]]:
        """Requests whose last user message contains `marker`."""
        return [body for body in self.requests if marker in last_user_text(body)]

    async def wait_for_request(self, marker: str) -> dict[str, Any]:
        """The first request whose last user message contains `marker`, once it arrives."""
        async with asyncio.timeout(30), self._arrived:
            await self._arrived.wait_for(lambda: bool(self.requests_with(marker)))
        return self.requests_with(marker)[0]

    def _reply_for(self, body: dict[str, Any]) -> Reply:
        for rule in self._rules:
            if rule.times != 0 and rule.match(body):
                if rule.times is not None:
                    rule.times -= 1
                return rule.reply
        return Reply()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.authorizations.append(request.headers.get("Authorization", ""))
        for observe in self.observers:
            observe(body)
        async with self._arrived:
            self._arrived.notify_all()
        reply = self._reply_for(body)
        if reply.gate is not None:
            await reply.gate.wait()
        if reply.hang:
            await self._stopping.wait()
        if reply.status != 200:
            return web.json_response(
                {"error": {"message": f"scripted failure {reply.status}", "type": "server_error"}},
                status=reply.status,
                headers={"Retry-After": "0"},  # keep the CLI's own retries quick
            )
        text = reply.text if reply.text is not None else f"echo: {last_user_text(body)}"
        prompt_tokens = reply.prompt_tokens or sum(
            len(json.dumps(m)) // 4 for m in body["messages"]
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text) // 4 + 1,
            "total_tokens": prompt_tokens + len(text) // 4 + 1,
        }
        if body.get("stream"):
            return await self._stream(request, body, reply, text, usage)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return web.json_response(
            {
                "id": f"fake-{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                    }
                ],
                "usage": usage,
            }
        )

    def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [
            {
                "index": index,
                "id": f"call_{next(self._ids)}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for index, call in enumerate(reply.tool_calls)
        ]

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        reply: Reply,
        text: str,
        usage: dict[str, int],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {
            "id": f"fake-{next(self._ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
        }

        async def send(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            await response.write(f"data: {json.dumps({**chunk, **extra})}\n\n".encode())

        size = max(1, -(-len(text) // max(1, reply.chunks)))
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        for index, piece in enumerate(pieces):
            if index == reply.drop_after:
                assert request.transport is not None
                request.transport.abort()  # the connection drops half-way
                return response
            if index and reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await send(
                {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            )
        if reply.tool_calls:
            await send({"tool_calls": self._tool_calls(reply)})
        await send({}, "tool_calls" if reply.tool_calls else "stop", usage=usage)
        await response.write(b"data: [DONE]\n\n")
        return response


async def _serve_forever() -> None:
    """`python -m tests.fake_model`: serve the echo model until killed; print its URL."""
    model = FakeModel()
    print(await model.start(), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve_forever())
