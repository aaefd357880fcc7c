"""SlackIntake: Slack's HTTP deliveries to /slack/events, checked before anything parses
them. A body over MAX_BODY_BYTES is refused (413) unread or as soon as it grows past that;
then the signature (slack_sdk's SignatureVerifier: HMAC-SHA256 of the raw body with the
signing secret, timestamp within five minutes) must match (else 401); only then does Bolt
parse the body and dispatch it.

Refusals are counted in one log line a minute, never logged with their body: anyone who
finds the port can send them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.logs import Tally

log = logging.getLogger(__name__)

# Slack's deliveries are a few kB (a message event is capped at 40,000 characters of text).
MAX_BODY_BYTES = 256 * 1024
# The header timeout of the HTTP server does not cover a body sent slowly.
BODY_TIMEOUT_S = 10.0


class SlackIntake:
    def __init__(self, signing_secret: str, app: AsyncApp) -> None:
        self._verifier = SignatureVerifier(signing_secret)
        self._app = app
        self._refused = Tally(log, "slack: refused HTTP deliveries")

    async def handle(self, request: web.Request) -> web.Response:
        body = await self._signed_body(request)
        headers: dict[str, str | Sequence[str]] = dict(request.headers)
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=headers)
        return await to_aiohttp_response(await self._app.async_dispatch(bolt_request))

    async def _signed_body(self, request: web.Request) -> str:
        """The body, if Slack signed it; else an HTTP error is raised."""
        if (request.content_length or 0) > MAX_BODY_BYTES:
            raise self._refuse(request, "too large", _too_large(request.content_length or 0))
        body = bytearray()
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                async for chunk in request.content.iter_any():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise self._refuse(request, "too large", _too_large(len(body)))
        except TimeoutError:
            raise self._refuse(request, "body too slow", web.HTTPRequestTimeout()) from None
        except ConnectionError:
            raise self._refuse(request, "aborted", web.HTTPBadRequest()) from None
        timestamp = request.headers.get("X-Slack-Request-Timestamp")
        signature = request.headers.get("X-Slack-Signature")
        try:
            signed = self._verifier.is_valid(bytes(body), timestamp, signature)
        except ValueError:  # a timestamp that is no number, a body that is no UTF-8
            signed = False
        if not signed:
            raise self._refuse(request, "unsigned, badly signed or stale", web.HTTPUnauthorized())
        return body.decode()

    def _refuse(self, request: web.Request, why: str, error: web.HTTPError) -> web.HTTPError:
        self._refused.add(f"{why}, from {request.remote}")
        return error


def _too_large(size: int) -> web.HTTPError:
    return web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=size)
