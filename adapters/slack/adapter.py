"""SlackAdapter: slack-bolt's AsyncApp wired to the router.

Socket Mode when SLACK_APP_TOKEN is set, else HTTP mode (`/slack/events` on the bot's HTTP
port; size and signature checked before the body is parsed, in intake.py). Bolt
acknowledges each delivery before the listener runs; repeated deliveries (retries, Socket
Mode redelivery) are answered once because the core journals every `event_id`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from adapters.slack.cards import ACTION, card_message, decision
from adapters.slack.client import Respond, SlackClient, api_error, defusing
from adapters.slack.downloads import SlackDownloads
from adapters.slack.events import (
    SHORTCUTS,
    SLASH_COMMANDS,
    author,
    is_message,
    mentions,
    message_inbound,
    shortcut_inbound,
    shortcut_thread_ts,
    slash_command_inbound,
)
from adapters.slack.history import SlackHistory, SlackThread
from adapters.slack.intake import SlackIntake
from adapters.slack.sink import SlackSink, StreamingSupport, Target
from bot.config import Settings
from bot.errors import CannotConnect
from bot.inbound import Dispatcher, Inbound
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# Subscribed (see deploy/slack-app-manifest.yml) but nothing to do: acknowledged only.
_QUIET_EVENTS = ("assistant_thread_started", "assistant_thread_context_changed")


class SlackAdapter:
    name = "slack"
    trouble = None  # a Slack connection either works or is not connected

    def __init__(
        self,
        router: Dispatcher,
        settings: Settings,
        edit_interval_s: float = 1.0,
        download_timeout_s: float = 30.0,
    ) -> None:
        if settings.slack_bot_token is None:
            raise ValueError("SLACK_BOT_TOKEN is not set")
        self._router = router
        self._settings = settings
        self._token = settings.slack_bot_token.get_secret_value()
        self._edit_interval_s = edit_interval_s
        self.client = SlackClient(self._token, settings.slack_api_url)
        self.app = AsyncApp(
            client=self.client,
            # Socket Mode deliveries are not signed; HTTP ones are checked by SlackIntake
            # before Bolt parses them (Bolt's own check would log a refused body in full).
            signing_secret="",
            request_verification_enabled=False,
        )
        self._streaming = StreamingSupport()
        self._socket: AsyncSocketModeHandler | None = None
        self._downloads = SlackDownloads(
            self._token,
            settings.slack_api_url,
            settings.max_attachment_bytes,
            download_timeout_s,
        )
        self._bot_user_id = ""
        self._bot_id = ""
        self._history: SlackHistory | None = None  # once it knows who it is
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
        secret = self._settings.slack_signing_secret
        assert secret is not None  # the setting that chooses HTTP mode
        intake = SlackIntake(secret.get_secret_value(), self.app)
        web_app.router.add_post(EVENTS_PATH, intake.handle)

    async def start(self) -> None:
        """Learn who the bot is and connect (Socket Mode); CannotConnect if Slack refuses
        the tokens or cannot be reached."""
        try:
            await self._connect()
        except (SlackApiError, aiohttp.ClientError, OSError) as exc:
            why = api_error(exc) if isinstance(exc, SlackApiError) else exc
            await self.stop()
            raise CannotConnect(
                f"could not connect to Slack ({why}); `threadpilot doctor` checks the tokens"
            ) from None

    async def _connect(self) -> None:
        identity = await self.client.auth_test()
        self._bot_user_id = str(identity["user_id"])
        self._bot_id = str(identity.get("bot_id") or "")
        self._history = SlackHistory(self.client, self._bot_user_id, self._bot_id)
        self._downloads.open()
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

    async def stop_receiving(self) -> None:
        """Shutting down: close the Socket Mode connection, so Slack delivers what comes
        next to another replica's (and redelivers what this one did not acknowledge),
        while the answers under way here still post."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close_async()  # type: ignore[no-untyped-call]

    async def stop(self) -> None:
        self._ready = False
        await self.stop_receiving()
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
        for callback_id in SHORTCUTS:
            self.app.shortcut(callback_id)(self._on_shortcut)
        self.app.action(ACTION)(self._on_approval)

    async def _ignore(self) -> None:
        pass

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if is_message(event, self._bot_user_id, self._bot_id):
            await self._forward(body, event)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """Every message of a conversation (a thread, a DM) goes to the router, which
        decides whether it is for the bot."""
        if not is_message(event, self._bot_user_id, self._bot_id):
            return
        if event.get("channel_type") != "im":
            if mentions(event.get("text") or "", self._bot_user_id):
                return  # its app_mention event is the one forwarded
            if not event.get("thread_ts"):
                return  # a channel message outside any thread: no conversation
        await self._forward(body, event)

    async def _forward(
        self, body: dict[str, Any], event: dict[str, Any], *, handed: bool = False
    ) -> None:
        thread_ts = event.get("thread_ts") or event["ts"]
        reader = self._reader(event["channel"], thread_ts, event["ts"], author(event))
        inbound = message_inbound(body, event, self._bot_user_id, self._downloads.fetch, reader)
        redo = json.dumps(body)
        await self._dispatch(replace(inbound, redo=redo, handed=handed), question_ts=event["ts"])

    async def redeliver(self, redo: str) -> None:
        """A message another replica received, for this one to answer (its thread's
        session is live here)."""
        body = json.loads(redo)
        await self._forward(body, body["event"], handed=True)

    def _reader(self, channel: str, thread_ts: str, position: str, user_id: str) -> SlackThread:
        assert self._history is not None  # listeners run once started
        return self._history.thread(channel, thread_ts, position, user_id)

    async def _on_slash_command(self, ack: Any, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        inbound = slash_command_inbound(body)
        target = Target(
            self.client, body["team_id"], body["channel_id"], None, body["user_id"],
            respond=defusing(respond),
        )  # fmt: skip
        await self._router.dispatch(inbound, self._sink(target))

    async def _on_shortcut(self, ack: Any, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        # The thread as it is when the shortcut is used (action_ts: when that was).
        position = str(body.get("action_ts") or body["message"]["ts"])
        reader = self._reader(
            body["channel"]["id"], shortcut_thread_ts(body), position, body["user"]["id"]
        )
        await self._dispatch(shortcut_inbound(body, reader), respond=defusing(respond))

    async def _on_approval(self, ack: Any, body: dict[str, Any], respond: Respond) -> None:
        """A button of an approval card: the core decides; the card shows the outcome and
        the person who pressed gets a word of their own, if there is one."""
        await ack()
        pressed = decision(body)
        if pressed is None:
            log.warning("ignoring a malformed approval action")
            return
        decided = await self._router.decide(pressed)
        if decided.private is not None:
            await defusing(respond)(
                text=decided.private, response_type="ephemeral", replace_original=False
            )
        if decided.card is not None:
            channel, ts = body["channel"]["id"], body["message"]["ts"]
            await self.client.chat_update(channel=channel, ts=ts, **card_message(decided.card))

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
