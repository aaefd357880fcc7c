"""SlackAdapter: slack-bolt's AsyncApp wired to the router.

Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode (`/slack/events` on the bot's HTTP
port, signatures verified by Bolt). Bolt acknowledges each delivery before the listener
runs; repeated deliveries (retries, Socket Mode redelivery) are answered once because
the core journals every `event_id`.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import (
    SHORTCUT_COMMANDS,
    is_from_a_person,
    mentions,
    message_inbound,
    shortcut_inbound,
    slash_command_inbound,
    thread_key,
)
from adapters.slack.sink import Respond, SlackSink, StreamingSupport, Target
from bot.attachments import FileUnavailable
from bot.config import Settings
from bot.inbound import Inbound
from bot.router import Router
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
SLASH_COMMANDS = ("/reset", "/branch", "/threadpilot")
# Subscribed (see deploy/slack-app-manifest.yml) but nothing to do: acknowledged only.
_QUIET_EVENTS = ("assistant_thread_started", "assistant_thread_context_changed")


class SlackAdapter:
    name = "slack"

    def __init__(self, router: Router, settings: Settings, edit_interval_s: float = 1.0) -> None:
        if settings.slack_bot_token is None:
            raise ValueError("SLACK_BOT_TOKEN is not set")
        self._router = router
        self._settings = settings
        self._token = settings.slack_bot_token.get_secret_value()
        self._edit_interval_s = edit_interval_s
        self.client = AsyncWebClient(token=self._token, base_url=settings.slack_api_url)
        # A 429 waits out its Retry-After; a 5xx is tried again: no reply text is dropped.
        self.client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=5))
        self.client.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))
        secret = settings.slack_signing_secret
        self.app = AsyncApp(
            client=self.client,
            # Socket Mode deliveries are not signed; HTTP ones are checked against this.
            signing_secret=secret.get_secret_value() if secret else "",
        )
        self._streaming = StreamingSupport()
        self._socket: AsyncSocketModeHandler | None = None
        self._downloads: aiohttp.ClientSession | None = None
        self._bot_user_id = ""
        self._ready = False
        self._listen()

    @property
    def socket_mode(self) -> bool:
        return self._settings.slack_app_token is not None

    @property
    def connected(self) -> bool:
        if self._socket is None:
            return self._ready
        session = self._socket.client.current_session
        return self._ready and session is not None and not session.closed

    def mount(self, web_app: web.Application) -> None:
        """HTTP mode: take Slack's deliveries at /slack/events on the bot's HTTP server."""
        web_app.router.add_post(EVENTS_PATH, self._on_http)

    async def start(self) -> None:
        identity = await self.client.auth_test()
        self._bot_user_id = str(identity["user_id"])
        self._downloads = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self._token}"})
        if self._settings.slack_app_token is not None:
            self._socket = AsyncSocketModeHandler(
                self.app, self._settings.slack_app_token.get_secret_value()
            )
            await self._socket.connect_async()  # type: ignore[no-untyped-call]
        self._ready = True
        log.info(
            "slack: connected as %s (%s mode)",
            identity.get("user"),
            "Socket" if self._socket else "HTTP",
        )

    async def stop(self) -> None:
        self._ready = False
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
        if self._downloads is not None:
            await self._downloads.close()

    def sink(self, key: ThreadKey) -> SlackSink:
        return self._sink(Target(self.client, key.workspace, key.channel, key.thread))

    def _sink(self, target: Target) -> SlackSink:
        return SlackSink(target, self._streaming, self._edit_interval_s)

    def _listen(self) -> None:
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        for event in _QUIET_EVENTS:
            self.app.event(event)(self._ignore)
        for command in SLASH_COMMANDS:
            self.app.command(command)(self._on_slash_command)
        for callback_id in SHORTCUT_COMMANDS:
            self.app.shortcut(callback_id)(self._on_shortcut)

    async def _ignore(self) -> None:
        pass

    async def _on_http(self, request: web.Request) -> web.Response:
        response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def _download(self, url: str) -> bytes:
        assert self._downloads is not None
        try:
            async with self._downloads.get(url) as response:
                response.raise_for_status()
                return await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: a bad URL
            raise FileUnavailable(str(exc) or type(exc).__name__) from exc

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if is_from_a_person(event, self._bot_user_id):
            await self._answer(body, event)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if not is_from_a_person(event, self._bot_user_id):
            return
        if event.get("channel_type") != "im":  # in a DM, every message is for the bot
            if mentions(event.get("text") or "", self._bot_user_id):
                return  # its app_mention event is the one answered
            if not event.get("thread_ts") or self._settings.slack_require_mention:
                return
            key = thread_key(body.get("team_id") or event.get("team") or "", event)
            if not await self._router.knows(key):
                return  # somebody else's thread
        await self._answer(body, event)

    async def _answer(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        inbound = message_inbound(body, event, self._bot_user_id, self._download)
        await self._dispatch(inbound, question_ts=event["ts"])

    async def _on_slash_command(self, ack: Any, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        inbound = slash_command_inbound(body)
        target = Target(
            self.client, body["team_id"], body["channel_id"], None, body["user_id"],
            respond=respond,
        )  # fmt: skip
        await self._router.dispatch(inbound, self._sink(target))

    async def _on_shortcut(self, ack: Any, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        await self._dispatch(shortcut_inbound(body), respond=respond)

    async def _dispatch(
        self, inbound: Inbound, question_ts: str | None = None, respond: Respond | None = None
    ) -> None:
        key = inbound.key
        assert key is not None  # messages and shortcuts always name their thread
        target = Target(
            self.client, key.workspace, key.channel, key.thread, inbound.user_id,
            question_ts=question_ts, respond=respond,
        )  # fmt: skip
        await self._router.dispatch(inbound, self._sink(target))
