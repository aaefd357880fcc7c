"""A fake Slack on 127.0.0.1, speaking the wire protocol the real slack-bolt and slack-sdk
clients use, so they run unmodified against it.

- Web API at `/api/<method>`: form, JSON and query encodings; `ok: false` errors and 429s
  with Retry-After can be scripted per method. Messages posted, edited, streamed and
  uploaded are kept per channel and thread, as a person in Slack would see them, and
  read back by `conversations.replies` (bounds, cursor pagination, the thread's first
  message on every page, as Slack returns it); `users.info` names people.
- Socket Mode: `apps.connections.open` hands out a WebSocket that says hello, carries
  envelopes (events, slash commands, shortcuts), records acks, and can send `disconnect`.
  With several connections open (replicas), each envelope goes to one of them at random,
  as Slack does; an event not acknowledged within 3 s is delivered again (on request),
  to another connection where there is one.
- HTTP mode: signed (or badly signed) deliveries to the bot's `/slack/events`.
- Files people attach, downloaded with the bot token: plainly, or answered as a test
  scripts it (`Served`: streamed without a size, encoded, redirected, stalled).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import random
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.fake_server import FakeServer

TEAM, BOT_USER, BOT_ID, APP_ID = "T01", "UBOT", "BBOT", "A01"
# Display names of the people tests have write; anyone else is "Person <id>".
PEOPLE = {"U1": "Ada", "U2": "Grace", "U3": "Alan", "UADMIN": "Admin"}
_MANIFEST = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "deploy" / "slack-app-manifest.yml").read_text()
)
BOT_TOKEN, APP_TOKEN, SIGNING_SECRET = "xoxb-fake-bot", "xapp-fake-app", "fake-signing-secret"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float


@dataclass
class Message:
    channel: str
    ts: str
    thread_ts: str | None
    user: str
    text: str = ""
    streaming: bool = False  # a chat.startStream message not stopped yet
    file: bytes | None = None  # the content of an uploaded file
    shown: list[str] = field(default_factory=list)  # every text it showed, in order
    files: list[dict[str, Any]] = field(default_factory=list)  # files a person attached
    bot_id: str | None = None  # set on messages from bots
    username: str | None = None  # another bot's name
    blocks: list[dict[str, Any]] = field(default_factory=list)  # Block Kit, as last posted

    def payload(self) -> dict[str, Any]:
        """The message as conversations.replies describes it."""
        data: dict[str, Any] = {"type": "message", "text": self.text, "ts": self.ts}
        if self.user:
            data["user"] = self.user
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.bot_id:
            data["bot_id"] = self.bot_id
        if self.username:
            data.update(subtype="bot_message", username=self.username)
        if self.files:
            data["files"] = self.files
        return data

    def show(self, text: str) -> None:
        self.text = text
        self.shown.append(text)


@dataclass
class Scripted:
    error: str | None = None  # `ok: false` with this error
    retry_after: int | None = None  # HTTP 429 with this Retry-After
    times: int = 1


@dataclass
class Served:
    """How an attached file's download is answered, when not plainly, and what came of it:
    the body goes in chunks without a Content-Length, as a server streaming it would."""

    body: Iterable[bytes] = field(default=(), repr=False)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)  # Content-Encoding, Location
    hold: asyncio.Event | None = None  # after the first chunk, nothing more until it is set
    sent: int = 0  # body bytes written
    done: bool = False  # the answer is over: the body all written, or the client gone


@dataclass
class Envelope:
    envelope_id: str
    socket: web.WebSocketResponse  # the connection it went to: one client of several
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    ack_payload: dict[str, Any] | None = None


class FakeSlack(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.messages: list[Message] = []
        self.ephemeral: list[dict[str, Any]] = []  # postEphemeral and response_url replies
        self.reactions: list[tuple[str, str, str]] = []  # (action, ts, name)
        self.statuses: dict[tuple[str, str], str] = {}  # (channel, thread_ts) -> assistant status
        self.streaming_enabled = True
        # The bot token's scopes: an app created from deploy/slack-app-manifest.yml.
        self.scopes: set[str] = set(_MANIFEST["oauth_config"]["scopes"]["bot"])
        self._scripts: dict[str, list[Scripted]] = {}
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._socket_ready = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []  # open, oldest first
        self._pick = random.Random(15)  # which connection gets an envelope
        self._retries: set[asyncio.Task[None]] = set()
        self.connections = 0
        self._envelopes: dict[str, Envelope] = {}
        self._uploads: dict[str, bytes] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._served: dict[str, Served] = {}

    # --- running ----------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        app.router.add_post("/upload/{id}", self._upload)
        app.router.add_get("/files/{id}", self._download)
        app.router.add_post("/respond/{id}", self._respond)

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    @property
    def env(self) -> dict[str, str]:
        """What a threadpilot process needs to reach this Slack in Socket Mode."""
        return {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": self.api_url,
        }

    def script(self, method: str, scripted: Scripted) -> None:
        self._scripts.setdefault(method, []).append(scripted)

    def unscript(self) -> dict[str, int]:
        """Drop the scripted answers not served yet; return how many there were, by method."""
        left = {
            method: sum(scripted.times for scripted in scripts)
            for method, scripts in self._scripts.items()
            if scripts
        }
        self._scripts.clear()
        return left

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    # --- what a person sees -----------------------------------------------------------

    def new_ts(self) -> str:
        n = next(self._ts)
        return f"{1_800_000_000 + n}.{n:06d}"

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's messages in a thread, in order."""
        return [
            m
            for m in self.messages
            if m.channel == channel and m.thread_ts == thread_ts and m.user == BOT_USER
        ]

    def top_level(self, channel: str) -> list[Message]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    # --- Web API ----------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(await request.post())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or args.get(
            "token"
        )
        self.calls.append(Call(method, args, time.monotonic()))
        try:
            scripts = self._scripts.get(method)
            if scripts:
                scripted = scripts[0]
                scripted.times -= 1
                if scripted.times <= 0:
                    scripts.pop(0)
                if scripted.retry_after is not None:
                    return web.json_response(
                        {"ok": False, "error": "ratelimited"},
                        status=429,
                        headers={"Retry-After": str(scripted.retry_after)},
                    )
                return web.json_response({"ok": False, "error": scripted.error})
            expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
            if token != expected:
                return web.json_response({"ok": False, "error": "invalid_auth"})
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is None:
                return web.json_response({"ok": False, "error": "unknown_method"})
            result = handler(args)
            return web.json_response(
                {"ok": True, **result} if "error" not in result else result,
                headers={"x-oauth-scopes": ",".join(sorted(self.scopes))},  # as Slack does
            )
        finally:
            await self._notify()

    def _message(self, ts: str) -> Message | None:
        return next((m for m in self.messages if m.ts == ts), None)

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "threadpilot",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://{self.base.removeprefix('http://')}/link/?ticket={next(self._ids)}"}

    def _post(self, args: dict[str, Any], text: str, streaming: bool = False) -> Message:
        message = Message(
            channel=args["channel"],
            ts=self.new_ts(),
            thread_ts=args.get("thread_ts") or None,
            user=BOT_USER,
            streaming=streaming,
            bot_id=BOT_ID,
        )
        message.show(text)
        self.messages.append(message)
        return message

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        text = _shown(args)
        if len(text) > 40_000:
            return {"ok": False, "error": "msg_too_long"}
        message = self._post(args, text)
        message.blocks = _blocks(args)
        return {"channel": message.channel, "ts": message.ts, "message": {"text": text}}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._message(args["ts"])
        text = _shown(args)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if len(text) > 4_000:  # chat.update text is capped at 4,000 characters
            return {"ok": False, "error": "msg_too_long"}
        message.show(text)
        if "blocks" in args:
            message.blocks = _blocks(args)
        return {"channel": message.channel, "ts": message.ts, "text": text}

    def _chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.streaming_enabled:
            return {"ok": False, "error": "feature_not_enabled"}
        if not args.get("thread_ts"):
            return {"ok": False, "error": "invalid_arguments"}
        if args["channel"].startswith("C") and not (
            args.get("recipient_team_id") and args.get("recipient_user_id")
        ):
            return {"ok": False, "error": "missing_recipient_user_id"}
        message = self._post(args, _streamed(args), streaming=True)
        return {"channel": message.channel, "ts": message.ts}

    def _chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._stream_more(args, stop=False)

    def _chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._stream_more(args, stop=True)

    def _stream_more(self, args: dict[str, Any], stop: bool) -> dict[str, Any]:
        message = self._message(args["ts"])
        if message is None or not message.streaming:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        message.show(message.text + _streamed(args))
        message.streaming = not stop
        return {"channel": message.channel, "ts": message.ts}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args["channel"], args["ts"]
        thread = sorted(
            (m for m in self.messages if m.channel == channel and ts in (m.ts, m.thread_ts)),
            key=lambda m: float(m.ts),
        )
        if not thread or thread[0].ts != ts:
            return {"ok": False, "error": "thread_not_found"}
        inclusive = str(args.get("inclusive", "0")).lower() in ("1", "true")
        low, high = float(args.get("oldest") or 0), float(args.get("latest") or "inf")

        def within(m: Message) -> bool:
            at = float(m.ts)
            return (low <= at <= high) if inclusive else (low < at < high)

        replies = [m for m in thread[1:] if within(m)]
        offset, limit = int(args.get("cursor") or 0), int(args.get("limit") or 100)
        page = replies[offset : offset + limit]
        more = offset + limit < len(replies)
        return {
            "messages": [m.payload() for m in [thread[0], *page]],
            "has_more": more,
            "response_metadata": {"next_cursor": str(offset + limit) if more else ""},
        }

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = args["user"]
        name = PEOPLE.get(user_id, f"Person {user_id}")
        return {
            "user": {
                "id": user_id,
                "name": name.lower(),
                "real_name": name,
                "profile": {"display_name": name, "real_name": name},
            }
        }

    def _chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = args["message_ts"].replace(".", "")
        return {"permalink": f"https://fake.slack.com/archives/{args['channel']}/p{ts}"}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self.ephemeral.append({**args, "text": _shown(args)})
        return {"message_ts": self.new_ts()}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        self.reactions.append(("add", args["timestamp"], args["name"]))
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        self.reactions.append(("remove", args["timestamp"], args["name"]))
        return {}

    def _assistant_threads_setStatus(self, args: dict[str, Any]) -> dict[str, Any]:
        self.statuses[(args["channel_id"], args["thread_ts"])] = args.get("status") or ""
        return {}

    def _files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids)}"
        return {"upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args["files"]
        files = json.loads(files) if isinstance(files, str) else files
        for entry in files:
            message = self._post(
                {"channel": args["channel_id"], "thread_ts": args.get("thread_ts")},
                entry.get("title") or "",
            )
            message.file = self._uploads.get(entry["id"], b"")
        return {"files": [{"id": entry["id"], "title": entry.get("title")} for entry in files]}

    def _files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"file": {"id": args["file"]}}

    async def _upload(self, request: web.Request) -> web.Response:
        if request.content_type.startswith("multipart/"):
            data = b""
            async for part in await request.multipart():
                data = await part.read()  # type: ignore[union-attr]
        else:
            data = await request.read()
        self._uploads[request.match_info["id"]] = data
        return web.Response(text=f"OK - {len(data)}")

    # --- files people attach --------------------------------------------------------

    def add_file(
        self, name: str, mimetype: str, data: bytes = b"", served: Served | None = None
    ) -> dict[str, Any]:
        """A file as Slack describes it in a message event; `served`: its download is
        answered that way instead of with `data`."""
        file_id = f"F{next(self._ids)}"
        self._files[file_id] = (mimetype, data)
        if served is not None:
            self._served[file_id] = served
        return {
            "id": file_id,
            "name": name,
            "mimetype": mimetype,
            "size": len(data),
            "url_private_download": f"{self.base}/files/{file_id}",
        }

    def delete_file(self, file_id: str) -> None:
        """The file is deleted after the message that shared it was sent."""
        del self._files[file_id]

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.Response(status=403)
        if request.match_info["id"] not in self._files:
            return web.Response(status=404)
        mimetype, data = self._files[request.match_info["id"]]
        served = self._served.get(request.match_info["id"])
        if served is None:
            return web.Response(body=data, content_type=mimetype)
        response = web.StreamResponse(
            status=served.status, headers={"Content-Type": mimetype, **served.headers}
        )
        try:
            await response.prepare(request)
            for chunk in served.body:
                await response.write(chunk)
                served.sent += len(chunk)
                if served.hold is not None:
                    await served.hold.wait()
            await response.write_eof()
        except ConnectionError:
            pass  # the client hung up: what it was sent is counted
        finally:
            served.done = True
            await self._notify()
        return response

    async def _respond(self, request: web.Request) -> web.Response:
        # Which response URL it came to: replies to several commands may cross.
        self.ephemeral.append({**await request.json(), "response_url": str(request.url)})
        await self._notify()
        return web.Response(text="ok")

    # --- Socket Mode ------------------------------------------------------------------

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        self.connections += 1
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "connection_info": {"app_id": APP_ID},
            }
        )
        self._socket_ready.set()
        await self._notify()
        async for frame in socket:
            if frame.type == aiohttp.WSMsgType.TEXT:
                ack = json.loads(frame.data)
                envelope = self._envelopes.get(ack.get("envelope_id", ""))
                if envelope is not None:
                    envelope.ack_payload = ack.get("payload")
                    envelope.acked.set()
        self._sockets.remove(socket)
        if not self._sockets:
            self._socket_ready.clear()
        return socket

    @property
    def open_connections(self) -> int:
        return len(self._sockets)

    async def push(
        self,
        kind: str,
        payload: dict[str, Any],
        retry_attempt: int = 0,
        *,
        redeliver: bool = False,
        avoid: web.WebSocketResponse | None = None,
    ) -> Envelope:
        """Send an envelope (events_api, slash_commands, interactive) over a socket; with
        `redeliver`, an event is sent again, up to 3 times, while it is not acknowledged."""
        async with asyncio.timeout(30):
            await self._socket_ready.wait()
        others = [open_ for open_ in self._sockets if open_ is not avoid]
        socket = self._pick.choice(others or self._sockets)
        envelope = Envelope(f"env-{next(self._ids)}", socket)
        self._envelopes[envelope.envelope_id] = envelope
        message: dict[str, Any] = {
            "envelope_id": envelope.envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        if kind == "events_api":
            message["retry_attempt"] = retry_attempt
            message["retry_reason"] = "timeout" if retry_attempt else ""
        with contextlib.suppress(ConnectionError):  # closing: as good as unacknowledged
            await socket.send_json(message)
        if redeliver and kind == "events_api" and retry_attempt < 3:
            again = self._redeliver(envelope, kind, payload, retry_attempt + 1, socket)
            task = asyncio.create_task(again)
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
        return envelope

    async def _redeliver(
        self,
        envelope: Envelope,
        kind: str,
        payload: dict[str, Any],
        attempt: int,
        avoid: web.WebSocketResponse,
    ) -> None:
        try:
            async with asyncio.timeout(3.0):
                await envelope.acked.wait()
        except TimeoutError:
            await self.push(kind, payload, attempt, redeliver=True, avoid=avoid)

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """What Slack sends before it drops a socket; the client is to reconnect."""
        connections = self.connections
        await self._sockets[-1].send_json({"type": "disconnect", "reason": reason})
        await self.wait_for(lambda: self.connections > connections and self._socket_ready.is_set())

    # --- payloads as Slack sends them -----------------------------------------------

    def user_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = "U1",
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        ts: str | None = None,
        user_team: str | None = None,
        shared: bool = False,
    ) -> tuple[str, list[dict[str, Any]]]:
        """A person writes: the message is recorded and the event callbacks Slack would
        deliver are returned (a `message`, plus an `app_mention` when it names the bot).
        `user_team`: the author's own workspace (Slack Connect); `shared`: the channel is
        shared with another organisation."""
        ts = ts or self.new_ts()
        self.messages.append(Message(channel, ts, thread_ts, user, text, files=files or []))
        event: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "channel": channel,
            "team": TEAM,
            "channel_type": "im" if channel.startswith("D") else "channel",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event["files"], event["subtype"] = files, "file_share"
        if user_team:
            event["user_team"] = event["source_team"] = user_team
        events = [self.event_callback(event)]
        if f"<@{BOT_USER}>" in text and not channel.startswith("D"):
            mention = {k: v for k, v in event.items() if k not in ("channel_type", "subtype")}
            events.append(self.event_callback({**mention, "type": "app_mention"}))
        for callback in events:
            callback["is_ext_shared_channel"] = shared
        return ts, events

    def bot_message(
        self, channel: str, text: str, thread_ts: str, bot_id: str = "BCI", name: str = "ci"
    ) -> tuple[str, dict[str, Any]]:
        """Another bot posts in a thread: recorded, and the event callback returned."""
        message = Message(channel, self.new_ts(), thread_ts, "", text, bot_id=bot_id)
        message.username = name
        self.messages.append(message)
        event = {**message.payload(), "channel": channel, "channel_type": "channel"}
        return message.ts, self.event_callback(event)

    def event_callback(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            "token": "verification-token",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }

    def slash_command(
        self, command: str, text: str, channel: str, user: str = "U1"
    ) -> dict[str, Any]:
        n = next(self._ids)
        return {
            "command": command,
            "text": text,
            "team_id": TEAM,
            "channel_id": channel,
            "user_id": user,
            "trigger_id": f"trigger-{n}",
            "response_url": f"{self.base}/respond/{n}",
            "api_app_id": APP_ID,
        }

    def shortcut(
        self, callback_id: str, channel: str, message: Message, user: str = "U1"
    ) -> dict[str, Any]:
        shown: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
        if message.thread_ts:
            shown["thread_ts"] = message.thread_ts
        return self.message_action(callback_id, channel, shown, user)

    def block_action(self, message: Message, action_id: str, user: str = "U1") -> dict[str, Any]:
        """The `block_actions` payload of `user` pressing the button `action_id` of
        `message`, as Slack sends it."""
        (button,) = [
            element
            for block in message.blocks
            if block["type"] == "actions"
            for element in block["elements"]
            if element["action_id"] == action_id
        ]
        n = next(self._ids)
        shown = {
            "type": "message",
            "ts": message.ts,
            "text": message.text,
            "thread_ts": message.thread_ts,
            "blocks": message.blocks,
        }
        return {
            "type": "block_actions",
            "user": {"id": user, "team_id": TEAM},
            "team": {"id": TEAM},
            "api_app_id": APP_ID,
            "trigger_id": f"trigger-{n}",
            "response_url": f"{self.base}/respond/{n}",
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "channel": {"id": message.channel},
            "message": shown,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "approval",
                    "value": button["value"],
                    "action_ts": self.new_ts(),
                }
            ],
        }

    def message_action(
        self, callback_id: str, channel: str, shown: dict[str, Any], user: str = "U1"
    ) -> dict[str, Any]:
        """A message shortcut's payload, on `shown` (the message as Slack describes it)."""
        n = next(self._ids)
        return {
            "type": "message_action",
            "callback_id": callback_id,
            "trigger_id": f"trigger-{n}",
            "response_url": f"{self.base}/respond/{n}",
            "team": {"id": TEAM},
            "channel": {"id": channel},
            "user": {"id": user},
            "message": shown,
            "message_ts": shown["ts"],
            "action_ts": self.new_ts(),
            "api_app_id": APP_ID,
        }

    # --- HTTP mode ------------------------------------------------------------------

    async def deliver_http(
        self,
        url: str,
        body: str,
        content_type: str = "application/json",
        *,
        secret: str = SIGNING_SECRET,
        retry_num: int | None = None,
        age_s: int = 0,
    ) -> tuple[int, str]:
        """POST a delivery to the bot, signed as Slack signs (with `secret`), stamped
        `age_s` seconds ago (negative: in the future), as a replayed request would be."""
        timestamp = str(int(time.time()) - age_s)
        digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={digest.hexdigest()}",
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body.encode(), headers=headers) as response,
        ):
            return response.status, await response.text()


def _blocks(args: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = args.get("blocks") or []
    return list(json.loads(blocks) if isinstance(blocks, str) else blocks)


def _shown(args: dict[str, Any]) -> str:
    """What a posted or edited message shows: its Markdown, else its mrkdwn text."""
    return str(args.get("markdown_text") or args.get("text") or "")


def _streamed(args: dict[str, Any]) -> str:
    """The text a stream call adds: its `markdown_text`, and its markdown_text chunks."""
    chunks = args.get("chunks") or []
    chunks = json.loads(chunks) if isinstance(chunks, str) else chunks
    texts = [c.get("text") or "" for c in chunks if c.get("type") == "markdown_text"]
    return str(args.get("markdown_text") or "") + "".join(texts)


def form(payload: dict[str, Any]) -> str:
    return urllib.parse.urlencode(payload)
