"""The Slack Web API client threadpilot posts with: rate limits and server errors are
retried, and nothing it sends can ping a crowd.

A model (prompt-injected, or just quoting) or a person's own words can carry Slack's
broadcast mentions: `<!channel>`, `<!here>`, `<!everyone>`, user groups
(`<!subteam^ID>`), or plain `@here` where Slack links names. Every string of every call
(`text`, `markdown_text`, blocks, stream chunks, file titles) and of every response-URL
reply is defused here, in one place: the mention stays readable but is no longer one.
Markdown links are made honest here too (adapters/text.py).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import FormData
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.text import honest_links

_JOINER = "\u2060"  # invisible; after the @ it keeps Slack from reading a mention
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_SUBTEAM = re.compile(r"<!subteam\^[^|>]*(?:\|@?([^>]*))?>")
_PLAIN = re.compile(r"(?<![\w.+-])@(here|channel|everyone)\b")  # not in an address

Respond = Callable[..., Awaitable[Any]]


def api_error(exc: SlackApiError) -> str:
    """What Slack said was wrong: its error code (`invalid_auth`), else the HTTP status."""
    return str(exc.response.get("error") or exc.response.status_code)


def defuse(text: str) -> str:
    """`text` with every broadcast mention turned into plain text (`@here`, `@team`)."""
    text = _SPECIAL.sub(lambda m: f"@{_JOINER}{m[1]}", text)
    text = _SUBTEAM.sub(lambda m: f"@{_JOINER}{m[1] or 'group'}", text)
    return _PLAIN.sub(lambda m: f"@{_JOINER}{m[1]}", text)


def safe(text: str) -> str:
    """`text` as threadpilot may post it: no broadcast mention, no link that lies."""
    return defuse(honest_links(text))


def _defused(value: Any) -> Any:
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        return {key: _defused(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_defused(item) for item in value]
    return value


def defusing(respond: Respond) -> Respond:
    """A response-URL reply (Bolt's `respond`) that cannot ping a crowd either."""

    async def send(**kwargs: Any) -> Any:
        return await respond(**_defused(kwargs))

    return send


class SlackClient(AsyncWebClient):
    def __init__(self, token: str, base_url: str) -> None:
        super().__init__(token=token, base_url=base_url)
        # A 429 waits out its Retry-After; a 5xx is tried again: no reply text is dropped.
        self.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=5))
        self.retry_handlers.append(AsyncServerErrorRetryHandler(max_retry_count=2))

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict[str, Any] | None = None,
        data: dict[str, Any] | FormData | None = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
    ) -> AsyncSlackResponse:
        return await super().api_call(
            api_method,
            http_verb=http_verb,
            files=files,
            data=data if isinstance(data, FormData) else _defused(data),
            params=_defused(params),
            json=_defused(json),
            headers=headers,
            auth=auth,
        )
