"""Downloading the files people attach in Slack, bounded in reach, size and time.

- The bot token goes only to Slack's own hosts; every redirect is followed by hand and
  checked the same way, and a URL anywhere else is refused without a request.
- At most `max_bytes + 1` bytes land in memory, after decompression: reading stops one
  byte past the limit, so `accept_files` (bot/attachments.py) refuses the file as too
  large, whatever size the event declared.
- Each download, redirects included, has one deadline.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable

import aiohttp
from aiohttp import hdrs
from yarl import URL

from bot.errors import FileRefused, FileUnavailable

# Every name under these is Slack's own: files.slack.com, files-origin.slack.com (where
# Enterprise Grid redirects downloads) and GovSlack's counterparts.
SLACK_DOMAINS = ("slack.com", "slack-gov.com")
MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024

Decoder = Callable[[bytes, int], bytes]  # (raw chunk, room left) -> at most that many bytes


class SlackDownloads:
    """Fetches `url_private` files with the bot token; open between `open` and `close`."""

    def __init__(self, token: str, api_url: str, max_bytes: int, timeout_s: float) -> None:
        self._headers = {
            hdrs.AUTHORIZATION: f"Bearer {token}",
            # What `_decoder` can inflate within the limit; aiohttp would add others.
            hdrs.ACCEPT_ENCODING: "gzip, deflate",
        }
        # The Web API's own origin also serves files where it is not slack.com: a proxy,
        # the tests' fake Slack.
        self._api_origin = URL(api_url).origin()
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        # auto_decompress=False: aiohttp would inflate a body without bound.
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str) -> bytes:
        """The file at `url`, or its first `max_bytes + 1` bytes if it is larger. Raises
        FileRefused for a URL off Slack's hosts, FileUnavailable for any other failure."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._follow(URL(url))
        except (aiohttp.ClientError, TimeoutError, ValueError, zlib.error) as exc:
            raise FileUnavailable(str(exc) or type(exc).__name__) from exc

    async def _follow(self, url: URL) -> bytes:
        assert self._session is not None  # files come with events, once started
        for _ in range(MAX_REDIRECTS + 1):
            if not on_slack(url, self._api_origin):
                raise FileRefused("it is not stored in Slack")
            async with self._session.get(
                url, headers=self._headers, allow_redirects=False
            ) as response:
                if 300 <= response.status < 400:
                    url = response.url.join(URL(response.headers.get(hdrs.LOCATION, "")))
                    continue
                response.raise_for_status()
                return await self._read(response)
        raise FileUnavailable(f"more than {MAX_REDIRECTS} redirects")

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        decode = _decoder(response.headers.get(hdrs.CONTENT_ENCODING, ""))
        body = bytearray()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            body += decode(chunk, self._max_bytes + 1 - len(body))
            if len(body) > self._max_bytes:
                break  # leaving the block closes the connection with the rest unread
        return bytes(body)


def on_slack(url: URL, api_origin: URL) -> bool:
    """Whether the bot token may go to `url`: Slack's own host over https, or the origin
    of the Web API the bot is configured with."""
    if not url.absolute:
        return False
    if url.origin() == api_origin:
        return True
    host = url.host or ""
    return url.scheme == "https" and any(
        host == domain or host.endswith("." + domain) for domain in SLACK_DOMAINS
    )


def _decoder(content_encoding: str) -> Decoder:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return lambda chunk, room: chunk[:room]
    if encoding in ("gzip", "x-gzip", "deflate"):
        # 32 + MAX_WBITS reads a gzip or a zlib header; max_length caps each output (and
        # `room` is never 0, which would mean no cap).
        return zlib.decompressobj(32 + zlib.MAX_WBITS).decompress
    raise FileUnavailable(f"unsupported Content-Encoding {content_encoding!r}")
