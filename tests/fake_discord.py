"""A fake Discord on 127.0.0.1 for the real discord.py client: REST v10 and the gateway.

- REST: users, application commands (sync), channel messages (JSON and multipart, read
  back one by one or as history pages, blanked as Discord blanks them for a bot without
  the Message Content intent), reactions, typing, threads, interaction callbacks and
  webhook follow-ups and edits, attachment downloads. Responses are exactly
  `application/json`; a scripted 429 carries a `Via` header and a JSON `retry_after`, as
  discord.py needs to treat it as a rate limit. A global one holds back every bot-token
  request (not webhooks or interactions) until it has passed: one that comes too soon is
  refused with a global 429 again.
- Gateway: HELLO, IDENTIFY, READY (with a loopback `resume_gateway_url`, and the shard a
  sharded client identified as), GUILD_CREATE,
  heartbeats and acks, RESUME (replaying what the client missed), RECONNECT,
  INVALID_SESSION (resumable, or not: then IDENTIFY gets a new session id; also the
  answer to a RESUME of a session that is gone); zlib-stream and zstd-stream compression.
  Tests dispatch MESSAGE_CREATE and INTERACTION_CREATE as Discord would.
- What people see is kept per channel: messages as posted and edited, and each
  interaction's original response and follow-ups.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import zstandard
from aiohttp import web

from tests.fake_server import FakeServer

TOKEN = "fake-discord-token"
MESSAGE_CONTENT_INTENT = 1 << 15
GATEWAY_MESSAGE_CONTENT = 1 << 18  # an application flag: the intent is switched on
T = TypeVar("T")
_SNOWFLAKES = itertools.count(1_300_000_000_000_000_000)


def snowflake() -> str:
    return str(next(_SNOWFLAKES))


APP_ID, BOT_ID, GUILD_ID, TEXT_CHANNEL = snowflake(), snowflake(), snowflake(), snowflake()
ADMIN_ID, USER_ID, OTHER_BOT_ID, THIRD_ID = snowflake(), snowflake(), snowflake(), snowflake()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def user(user_id: str, name: str, bot: bool = False) -> dict[str, Any]:
    return {
        "id": user_id,
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
    }


BOT_USER = user(BOT_ID, "threadpilot", bot=True)
PEOPLE = {
    USER_ID: user(USER_ID, "ada"),
    ADMIN_ID: user(ADMIN_ID, "grace"),
    THIRD_ID: user(THIRD_ID, "alan"),
}


def member(of: dict[str, Any]) -> dict[str, Any]:
    return {
        "user": of,
        "roles": [],
        "joined_at": _now(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "permissions": "2251799813685247",
    }


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly application/json: discord.py compares the header, and a charset breaks it.
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _rate_limited(retry_after: float, is_global: bool) -> web.Response:
    headers = {
        "Via": "1.1 google",
        "Retry-After": str(retry_after),
        "X-RateLimit-Scope": "global" if is_global else "user",
    }
    if is_global:
        headers["X-RateLimit-Global"] = "true"
    return _json(
        {"message": "You are being rate limited.", "retry_after": retry_after,
         "global": is_global},
        status=429,
        headers=headers,
    )  # fmt: skip


@dataclass
class Message:
    id: str
    channel_id: str
    author: dict[str, Any]
    content: str
    attachments: list[dict[str, Any]] = field(default_factory=list)
    files: list[bytes] = field(default_factory=list)  # what the bot uploaded
    edits: int = 0
    interaction_token: str | None = None  # a response or follow-up of this interaction
    ephemeral: bool = False
    reply_to: Message | None = None  # the message this one replies to
    allowed_mentions: Any = None  # as the bot sent it with its last create or edit
    components: list[dict[str, Any]] = field(default_factory=list)  # its rows of buttons

    def payload(self, guild_id: str | None, nested: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "channel_id": self.channel_id,
            "author": self.author,
            "content": self.content,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [BOT_USER] if f"<@{BOT_ID}>" in self.content else [],
            "mention_roles": [],
            "attachments": self.attachments,
            "embeds": [],
            "pinned": False,
            "type": 19 if self.reply_to else 0,
            "flags": 64 if self.ephemeral else 0,
            "components": self.components,
        }
        if self.reply_to is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": self.reply_to.id,
                "channel_id": self.reply_to.channel_id,
            }
            if not nested:  # Discord resolves one level of replies
                data["referenced_message"] = self.reply_to.payload(guild_id, nested=True)
        if guild_id is not None:
            data["guild_id"] = guild_id
            data["member"] = {k: v for k, v in member(self.author).items() if k != "user"}
        return data


@dataclass
class Interaction:
    id: str
    token: str
    channel_id: str
    callbacks: list[tuple[int, float, dict[str, Any]]] = field(default_factory=list)
    original: Message | None = None
    message: Message | None = None  # a component's: the message whose button was pressed
    created: float = field(default_factory=time.monotonic)


@dataclass
class Call:
    method: str
    path: str
    body: Any
    at: float


@dataclass
class _RateLimit:
    method: str
    path: re.Pattern[str]
    retry_after: float
    is_global: bool


class FakeDiscord(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.channels: dict[str, dict[str, Any]] = {
            TEXT_CHANNEL: {
                "id": TEXT_CHANNEL,
                "type": 0,
                "guild_id": GUILD_ID,
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
                "nsfw": False,
                "parent_id": None,
                "rate_limit_per_user": 0,
            }
        }
        self.messages: dict[str, Message] = {}
        self.reactions: list[tuple[str, str, str]] = []  # (PUT or DELETE, message id, emoji)
        self.interactions: dict[str, Interaction] = {}
        self.calls: list[Call] = []
        self.synced: dict[str, list[dict[str, Any]]] = {}  # "global" or guild id -> commands
        self.broken_syncs = 0  # command syncs still to answer with what no client can read
        self.identified: list[dict[str, Any]] = []  # IDENTIFY payloads
        self.resumes = 0
        self.readies = 0  # READY and GUILD_CREATE sent after an IDENTIFY
        self.replayed = 0  # dispatches sent again on RESUME
        self._rate_limits: list[_RateLimit] = []
        self._global_until = 0.0  # monotonic time a global rate limit ends
        self._files: dict[str, tuple[str, bytes]] = {}
        self._compress: Callable[[bytes], bytes] | None = None
        self._ready = asyncio.Event()
        self._sequence = 0
        self._sent: list[dict[str, Any]] = []  # dispatches, for replay on RESUME
        self.session_id = "fake-session"
        # What the Developer Portal has switched on (GATEWAY_MESSAGE_CONTENT), as
        # GET /oauth2/applications/@me reports it.
        self.application_flags = GATEWAY_MESSAGE_CONTENT

    # --- running ----------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway/", self._gateway)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.base.removeprefix('http://')}/gateway/"

    @property
    def env(self) -> dict[str, str]:
        """What a threadpilot process needs to reach this Discord (commands synced at once)."""
        return {
            "DISCORD_TOKEN": TOKEN,
            "DISCORD_API_URL": self.api_url,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_GUILD_IDS": GUILD_ID,
        }

    def rate_limit(
        self, method: str, path: str, retry_after: float, is_global: bool = False
    ) -> None:
        """Answer the next request matching `method` and the `path` regex with a 429 (one
        per call: call again for a burst); `is_global` limits the whole bot token."""
        self._rate_limits.append(_RateLimit(method, re.compile(path), retry_after, is_global))

    @property
    def pending_rate_limits(self) -> list[str]:
        """Scripted 429s no request has met yet."""
        return [f"{limit.method} {limit.path.pattern}" for limit in self._rate_limits]

    def in_channel(self, channel_id: str) -> list[Message]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    def by_bot(self, channel_id: str) -> list[Message]:
        return [m for m in self.in_channel(channel_id) if m.author["id"] == BOT_ID]

    def threads_of(self, channel_id: str) -> list[dict[str, Any]]:
        return [c for c in self.channels.values() if c.get("parent_id") == channel_id]

    # --- gateway ----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        compression = request.query.get("compress")
        if compression == "zlib-stream":
            deflate = zlib.compressobj()
            self._compress = lambda data: deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
        elif compression == "zstd-stream":
            zstd = zstandard.ZstdCompressor().compressobj()
            self._compress = lambda data: (
                zstd.compress(data) + zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            )
        else:
            self._compress = None
        self.compression = compression
        self._socket = socket
        await self._send({"op": 10, "d": {"heartbeat_interval": 41_250}})
        async for frame in socket:
            if frame.type == aiohttp.WSMsgType.TEXT:
                await self._on_op(json.loads(frame.data))
        if self._socket is socket:
            self._socket = None
            self._ready.clear()
        return socket

    async def _send(self, payload: dict[str, Any]) -> None:
        assert self._socket is not None
        data = json.dumps(payload).encode()
        if self._compress is not None:
            await self._socket.send_bytes(self._compress(data))
        else:
            await self._socket.send_str(data.decode())

    async def _on_op(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == 1:  # heartbeat
            await self._send({"op": 11})
        elif op == 2:  # identify
            self.identified.append(message["d"])
            self._sequence, self._sent = 0, []
            ready = self._ready_payload()
            if "shard" in message["d"]:  # Discord says which shard this session is
                ready["shard"] = message["d"]["shard"]
            await self._dispatch("READY", ready, replayable=False)
            await self._dispatch("GUILD_CREATE", self._guild(), replayable=False)
            self.readies += 1
            self._ready.set()
        elif op == 6 and message["d"]["session_id"] != self.session_id:
            await self._send({"op": 9, "d": False})  # that session is gone
        elif op == 6:  # resume
            for event in self._sent:
                if event["s"] > (message["d"].get("seq") or 0):
                    self.replayed += 1
                    await self._send(event)
            await self._dispatch("RESUMED", {}, replayable=False)
            self.resumes += 1
            self._ready.set()
        await self._notify()

    def _ready_payload(self) -> dict[str, Any]:
        return {
            "v": 10,
            "user": BOT_USER,
            "guilds": [{"id": GUILD_ID, "unavailable": True}],
            "session_id": self.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": APP_ID, "flags": 0},
        }

    def _guild(self) -> dict[str, Any]:
        return {
            "id": GUILD_ID,
            "name": "Fake Guild",
            "icon": None,
            "owner_id": ADMIN_ID,
            "roles": [
                {
                    "id": GUILD_ID,
                    "name": "@everyone",
                    "color": 0,
                    "hoist": False,
                    "position": 0,
                    "permissions": "2251799813685247",
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": [c for c in self.channels.values() if c["type"] == 0],
            "threads": [c for c in self.channels.values() if c["type"] == 11],
            "members": [member(BOT_USER)],
            "member_count": 3,
            "large": False,
            "unavailable": False,
            "joined_at": _now(),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "afk_timeout": 300,
        }

    async def _dispatch(self, name: str, data: dict[str, Any], replayable: bool = True) -> None:
        self._sequence += 1
        event = {"op": 0, "t": name, "s": self._sequence, "d": data}
        if replayable:
            self._sent.append(event)
        if self._socket is not None and not self._socket.closed:
            await self._send(event)

    async def connected(self) -> None:
        async with asyncio.timeout(30):
            await self._ready.wait()

    async def reconnect(self) -> None:
        """Op 7: the client is to reconnect and resume."""
        resumes = self.resumes
        await self._send({"op": 7, "d": None})
        await self.wait_for(lambda: self.resumes > resumes and self._ready.is_set())

    async def invalidate_session(
        self, resumable: bool, meanwhile: Awaitable[T] | None = None, on_resume: bool = False
    ) -> T | None:
        """Op 9: the session is invalid. Resumable, the client is to RESUME it; else the
        session is gone and the client must IDENTIFY afresh (READY with a new session id).
        `on_resume`: the session expires while the client reconnects (op 7), and its RESUME
        is what gets the op 9. `meanwhile` (say, a message) happens right after the op,
        before the client is back. Returns once it is, with what `meanwhile` returned."""
        assert not (resumable and on_resume), "an expired session cannot be resumed"
        resumes, readies = self.resumes, self.readies
        if not resumable:
            self.session_id = f"fake-session-{snowflake()}"
        await self._send({"op": 7, "d": None} if on_resume else {"op": 9, "d": resumable})
        done = await meanwhile if meanwhile is not None else None
        await self.wait_for(lambda: self.resumes > resumes if resumable else self.readies > readies)
        return done

    # --- what people do ---------------------------------------------------------------

    async def say(self, channel_id: str, content: str, **how: Any) -> Message:
        """A person (or another bot) posts, as `post` (`how`: its options); dispatched
        as MESSAGE_CREATE."""
        await self.connected()
        message = self.post(channel_id, content, **how)
        await self._dispatch("MESSAGE_CREATE", self._as_seen(message))
        return message

    def post(
        self,
        channel_id: str,
        content: str,
        author: str = USER_ID,
        attachments: list[dict[str, Any]] | None = None,
        reply_to: Message | None = None,
    ) -> Message:
        """A message posted while the bot is not looking (nothing dispatched)."""
        who = PEOPLE.get(author) or user(author, "otherbot", bot=True)
        message = Message(snowflake(), channel_id, who, content, attachments or [])
        message.reply_to = reply_to
        self.messages[message.id] = message
        return message

    def _as_seen(self, message: Message) -> dict[str, Any]:
        """A message as the bot gets it. Without the privileged MESSAGE_CONTENT intent,
        Discord blanks what a bot may not read: others' messages in servers that do not
        mention it."""
        guild = self._guild_of(message.channel_id)
        payload = message.payload(guild)
        may_read = self.identified[-1]["intents"] & MESSAGE_CONTENT_INTENT
        mine = message.author["id"] == BOT_ID
        if not (may_read or mine) and guild and f"<@{BOT_ID}>" not in message.content:
            payload.update(content="", attachments=[], embeds=[])
        return payload

    async def open_thread(self, channel_id: str, name: str, starter: Message | None) -> str:
        """A person starts a thread (from `starter`, if given); returns its id."""
        await self.connected()
        thread = await self._thread(channel_id, name, starter.id if starter else None)
        return str(thread["id"])

    def attachment(self, name: str, content_type: str, data: bytes) -> dict[str, Any]:
        attachment_id = snowflake()
        self._files[attachment_id] = (content_type, data)
        url = f"{self.base}/attachments/{attachment_id}/{name}"
        return {
            "id": attachment_id,
            "filename": name,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    def delete_attachment(self, attachment_id: str) -> None:
        """The attachment is gone (its message deleted) before the bot downloads it."""
        del self._files[attachment_id]

    async def _attachment(self, request: web.Request) -> web.Response:
        if request.match_info["id"] not in self._files:
            return web.Response(status=404)
        content_type, data = self._files[request.match_info["id"]]
        return web.Response(body=data, headers={"Content-Type": content_type})

    def dm_channel(self, with_user: str = USER_ID) -> str:
        channel_id = snowflake()
        self.channels[channel_id] = {
            "id": channel_id,
            "type": 1,
            "recipients": [PEOPLE[with_user]],
            "last_message_id": None,
        }
        return channel_id

    def _guild_of(self, channel_id: str) -> str | None:
        return self.channels.get(channel_id, {}).get("guild_id")

    async def command(
        self,
        name: str,
        channel_id: str,
        options: dict[str, Any] | None = None,
        author: str = USER_ID,
        target: Message | None = None,
    ) -> Interaction:
        """A person uses a slash command (or, with `target`, a message command)."""
        data: dict[str, Any] = {"id": snowflake(), "name": name, "type": 1}
        if options:
            data["options"] = [
                {"name": key, "type": 3, "value": value} for key, value in options.items()
            ]
        if target is not None:
            data.update(
                type=3,
                target_id=target.id,
                resolved={"messages": {target.id: target.payload(self._guild_of(channel_id))}},
            )
        channel = self.channels[channel_id]
        interaction, payload = self.interaction(
            data, channel_id, author, guild_id=channel.get("guild_id"), channel=channel
        )
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def interaction(
        self,
        data: dict[str, Any],
        channel_id: str,
        author: str,
        *,
        guild_id: str | None,
        channel: dict[str, Any] | None,
    ) -> tuple[Interaction, dict[str, Any]]:
        """An INTERACTION_CREATE payload as Discord sends it, for `data` (the command), in a
        guild or a DM; registered here so responses to it are recorded, not yet sent."""
        interaction = Interaction(snowflake(), f"token-{snowflake()}", channel_id)
        self.interactions[interaction.token] = interaction
        payload: dict[str, Any] = {
            "id": interaction.id,
            "application_id": APP_ID,
            "type": 2,
            "data": data,
            "channel_id": channel_id,
            "token": interaction.token,
            "version": 1,
            "app_permissions": "2251799813685247",
            "attachment_size_limit": 10 * 2**20,
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": GUILD_ID},
            "context": 0 if guild_id else 1,
        }
        if channel is not None:
            payload["channel"] = channel
        if guild_id:
            payload.update(guild_id=guild_id, guild_locale="en-US")
            payload["member"] = member(PEOPLE[author])
        else:
            payload["user"] = PEOPLE[author]
        return interaction, payload

    async def press(self, message: Message, custom_id: str, author: str = USER_ID) -> Interaction:
        """A person presses the button `custom_id` of the bot's `message`."""
        (button,) = [
            item
            for row in message.components
            for item in row["components"]
            if item.get("custom_id") == custom_id
        ]
        channel = self.channels[message.channel_id]
        guild_id = channel.get("guild_id")
        data = {"custom_id": button["custom_id"], "component_type": button["type"]}
        interaction, payload = self.interaction(
            data, message.channel_id, author, guild_id=guild_id, channel=channel
        )
        interaction.message = message
        payload.update(type=3, message=message.payload(guild_id))
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    async def dispatch(self, name: str, payload: dict[str, Any]) -> None:
        """Send any gateway dispatch, once the bot is connected."""
        await self.connected()
        await self._dispatch(name, payload)

    def responses(self, interaction: Interaction) -> list[Message]:
        """The interaction's original response, then its follow-ups."""
        return [m for m in self.messages.values() if m.interaction_token == interaction.token]

    # --- REST -------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["path"]
        body, files = await self._body(request)
        self.calls.append(Call(request.method, path, body, time.monotonic()))
        try:
            return await self._answer(request, path, body, files)
        finally:
            await self._notify()

    async def _answer(
        self, request: web.Request, path: str, body: Any, files: list[bytes]
    ) -> web.Response:
        # Webhooks and interactions are outside the bot's global rate limit.
        is_webhook = path.startswith(("/webhooks/", "/interactions/"))
        now = time.monotonic()
        if not is_webhook and now < self._global_until:
            return _rate_limited(self._global_until - now, is_global=True)
        for limit in self._rate_limits:
            if limit.method == request.method and limit.path.fullmatch(path):
                self._rate_limits.remove(limit)
                if limit.is_global:
                    self._global_until = now + limit.retry_after
                return _rate_limited(limit.retry_after, limit.is_global)
        if not is_webhook and request.headers.get("Authorization") != f"Bot {TOKEN}":
            return _json({"message": "401: Unauthorized", "code": 0}, status=401)
        return await self._route(request.method, path, body, files, dict(request.query))

    async def _body(self, request: web.Request) -> tuple[Any, list[bytes]]:
        if request.content_type == "application/json":
            return await request.json(), []
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            files: list[bytes] = []
            async for part in await request.multipart():
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    payload = json.loads(data)
                else:
                    files.append(bytes(data))
            return payload, files
        return None, []

    async def _route(
        self, method: str, path: str, body: Any, files: list[bytes], query: dict[str, str]
    ) -> web.Response:
        parts = path.strip("/").split("/")
        match method, parts:
            case "GET", ["users", "@me"]:
                return _json(BOT_USER)
            case "GET", ["users", "@me", "guilds"]:
                return _json(
                    [{"id": GUILD_ID, "name": "Fake", "icon": None, "owner": False,
                      "permissions": "2251799813685247", "features": []}]
                )  # fmt: skip
            case "GET", ["oauth2", "applications", "@me"]:
                return _json(
                    {"id": APP_ID, "name": "threadpilot", "icon": None, "description": "",
                     "bot_public": True, "bot_require_code_grant": False, "verify_key": "00",
                     "owner": PEOPLE[ADMIN_ID], "team": None, "flags": self.application_flags,
                     "summary": ""}
                )  # fmt: skip
            case "GET", ["applications", _, "commands"]:
                return _json(self.synced.get("global", []))
            case "GET", ["applications", _, "guilds", guild, "commands"]:
                return _json(self.synced.get(guild, []))
            case "PUT", ["applications", _, "commands"]:
                return _json(self._sync("global", body))
            case "PUT", ["applications", _, "guilds", guild, "commands"]:
                return _json(self._sync(guild, body))
            case "POST", ["channels", channel, "typing"]:
                return web.Response(status=204)
            case "GET", ["channels", channel, "messages"]:
                return _json(self._history(channel, query))
            case "GET", ["channels", channel, "messages", message_id]:
                found = self.messages.get(message_id)
                if found is None or found.channel_id != channel:
                    return _json({"message": "Unknown Message", "code": 10008}, status=404)
                return _json(self._as_seen(found))
            case ("PUT" | "DELETE") as verb, [
                "channels", _, "messages", message_id, "reactions", emoji, "@me"
            ]:  # fmt: skip
                self.reactions.append((verb, message_id, urllib.parse.unquote(emoji)))
                return web.Response(status=204)
            case "POST", ["channels", channel, "messages"]:
                message = Message(snowflake(), channel, BOT_USER, (body or {}).get("content") or "")
                message.files = files
                message.components = (body or {}).get("components") or []
                message.allowed_mentions = (body or {}).get("allowed_mentions")
                replied = ((body or {}).get("message_reference") or {}).get("message_id")
                message.reply_to = self.messages.get(str(replied)) if replied else None
                self.messages[message.id] = message
                return _json(message.payload(self._guild_of(channel)))
            case "PATCH", ["channels", channel, "messages", message_id]:
                message = self.messages[message_id]
                return _json(self._edit(message, body, files))
            case "POST", ["channels", channel, "messages", message_id, "threads"]:
                return _json(await self._thread(channel, body["name"], message_id))
            case "POST", ["channels", channel, "threads"]:
                return _json(await self._thread(channel, body["name"], None))
            case "POST", ["interactions", _, token, "callback"]:
                return _json(self._callback(token, body, files))
            case "GET", ["webhooks", _, token, "messages", "@original"]:
                original = self.interactions[token].original
                assert original is not None, "read of an interaction never responded to"
                return _json(original.payload(self._guild_of(original.channel_id)))
            case "PATCH", ["webhooks", _, token, "messages", "@original"]:
                original = self.interactions[token].original
                assert original is not None, "edit of an interaction never responded to"
                return _json(self._edit(original, body, files))
            case "PATCH", ["webhooks", _, token, "messages", message_id]:
                return _json(self._edit(self.messages[message_id], body, files))
            case "POST", ["webhooks", _, token]:
                interaction = self.interactions[token]
                data = body or {}
                message = Message(
                    snowflake(), interaction.channel_id, BOT_USER,
                    data.get("content") or "", interaction_token=token,
                    ephemeral=bool((data.get("flags") or 0) & 64),
                    allowed_mentions=data.get("allowed_mentions"),
                )  # fmt: skip
                message.files = files
                self.messages[message.id] = message
                return _json(message.payload(self._guild_of(message.channel_id)))
        return _json({"message": f"404: Not Found ({method} {path})", "code": 0}, status=404)

    def _callback(self, token: str, body: Any, files: list[bytes]) -> dict[str, Any]:
        """An interaction's response: recorded, and shown where it shows."""
        interaction = self.interactions[token]
        data = body.get("data") or {}
        interaction.callbacks.append((body["type"], time.monotonic(), data))
        if body["type"] == 7:  # UPDATE_MESSAGE: the pressed component's message
            assert interaction.message is not None, "update of no message"
            self._edit(interaction.message, data, files)
        if body["type"] in (4, 5):  # a message, or "thinking…" to be edited later
            channel = interaction.channel_id
            message = Message(
                snowflake(), channel, BOT_USER, data.get("content") or "",
                interaction_token=token, ephemeral=bool((data.get("flags") or 0) & 64),
                allowed_mentions=data.get("allowed_mentions"),
            )  # fmt: skip
            self.messages[message.id] = message
            interaction.original = message
        original = interaction.original
        # with_response=true: what discord.py asks for
        return {
            "interaction": {
                "id": interaction.id,
                "type": 2,
                "response_message_id": original.id if original else None,
                "response_message_loading": body["type"] == 5,
                "response_message_ephemeral": bool(original and original.ephemeral),
            }
        }

    def _history(self, channel: str, query: dict[str, str]) -> list[dict[str, Any]]:
        """A page of a channel's messages, newest first, as GET .../messages answers."""
        limit = int(query.get("limit") or 50)
        before, after = int(query.get("before") or 2**64), int(query.get("after") or 0)
        found = [
            m for m in self.in_channel(channel) if after < int(m.id) < before and not m.ephemeral
        ]
        found.sort(key=lambda m: int(m.id), reverse=True)
        # Discord pages `after` from the oldest side, and still lists each page newest first.
        page = found[-limit:] if "after" in query and "before" not in query else found[:limit]
        return [self._as_seen(m) for m in page]

    def _edit(self, message: Message, body: Any, files: list[bytes]) -> dict[str, Any]:
        body = body or {}
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        if "content" in body:
            message.content = body["content"] or ""
        if "components" in body:
            message.components = body["components"] or []
        if files:
            message.files = files
        message.edits += 1
        return message.payload(self._guild_of(message.channel_id))

    def _sync(self, where: str, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.broken_syncs:
            self.broken_syncs -= 1
            return [{"name": command["name"]} for command in commands]  # no id, no type
        synced = [
            {"description": "", "options": [], "dm_permission": True, **command,
             "id": snowflake(), "application_id": APP_ID, "version": snowflake()}
            for command in commands
        ]  # fmt: skip
        self.synced[where] = synced
        return synced

    async def _thread(self, channel_id: str, name: str, message_id: str | None) -> dict[str, Any]:
        thread_id = message_id or snowflake()  # a thread from a message takes its id
        thread = {
            "id": thread_id,
            "type": 11,
            "guild_id": GUILD_ID,
            "parent_id": channel_id,
            "owner_id": BOT_ID,
            "name": name,
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now(),
                "locked": False,
            },
        }
        self.channels[thread_id] = thread
        await self._dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread
