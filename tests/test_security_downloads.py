"""Attacks on the Slack file downloads, each performed against the real bot: it must fail.

The real Slack adapter (slack-bolt, aiohttp) against the fake Slack, which serves the files
the way each attack needs; the real Copilot CLI against the fake model. The token rule for
Slack's production hosts, which no loopback server can stand in for, is checked directly.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import re
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from yarl import URL

from adapters.slack.downloads import on_slack
from tests.conftest import SlackFactory
from tests.fake_model import FakeModel, content_text
from tests.fake_server import FakeServer
from tests.fake_slack import Served

LIMIT = 100_000  # THREADPILOT_MAX_ATTACHMENT_BYTES here: "100 kB" in the notes
CHUNK = 64 * 1024
ATTACHMENT = re.compile(r'<attachment [^>]*name="([^"]*)">\n(.*?)\n</attachment>', re.S)


class Elsewhere(FakeServer):
    """A host that is not Slack's (evil.example): it serves whatever is asked for and
    keeps each request's path and Authorization header."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str | None]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{name}", self._get)

    async def _get(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.headers.get("Authorization")))
        return web.Response(text="planted instructions", content_type="text/plain")


@pytest.fixture
async def elsewhere() -> AsyncIterator[Elsewhere]:
    server = Elsewhere()
    await server.start()
    yield server
    await server.stop()


def attached(fake_model: FakeModel, marker: str) -> dict[str, str]:
    """The files the model was given with the message that says `marker`: name -> text."""
    content = fake_model.requests_with(marker)[-1]["messages"][-1]["content"]
    return dict(ATTACHMENT.findall(content_text(content)))


def gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    block = bytes(2**20)
    body = b"".join(packer.compress(block) for _ in range(size // len(block)))
    return body + packer.flush()


async def test_a_file_of_no_declared_size_is_read_no_further_than_the_limit(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    slack = await make_slack(max_attachment_bytes=LIMIT)
    total = 800 * CHUNK  # 52 MB: far more than the sockets between them can buffer
    served = Served(body=itertools.repeat(b"x" * CHUNK, 800))
    endless = slack.fake.add_file("endless.txt", "text/plain", served=served)
    del endless["size"]  # Slack did not say

    ts, _ = await slack.say("read the endless file", files=[endless])
    await slack.fake.wait_for(lambda: served.done)

    assert slack.texts(ts) == [
        "ℹ️ `endless.txt` is larger than 100 kB, so I left it out.",
        "echo: read the endless file",
    ]
    assert attached(fake_model, "read the endless file") == {}
    assert served.sent < total // 4, f"the bot took {served.sent} of {total} bytes"


async def test_a_small_gzip_body_that_inflates_past_the_limit_is_never_inflated(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    slack = await make_slack(max_attachment_bytes=LIMIT)
    inflated = 50 * 2**20
    bomb = gzip_of_zeros(inflated)  # ~50 kB on the wire
    served = Served(body=[bomb], headers={"Content-Encoding": "gzip"})
    file = slack.fake.add_file("bomb.txt", "text/plain", served=served)
    file["size"] = len(bomb)  # what is stored: under the limit, so it is downloaded
    # A compressed answer within the limit still reads.
    packed = gzip.compress(b"meeting at noon")
    notes = slack.fake.add_file(
        "notes.txt",
        "text/plain",
        served=Served(body=[packed], headers={"Content-Encoding": "gzip"}),
    )
    notes["size"] = len(packed)

    tracemalloc.start()
    try:
        ts, _ = await slack.say("read the compressed files", files=[file, notes])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert slack.texts(ts) == [
        "ℹ️ `bomb.txt` is larger than 100 kB, so I left it out.",
        "echo: read the compressed files",
    ]
    assert attached(fake_model, "read the compressed files") == {"notes.txt": "meeting at noon"}
    # Everything the bot held while it handled the message, the inflated body included.
    assert peak < inflated // 5, f"{peak} bytes in memory at the peak"


async def test_the_bot_token_goes_to_no_host_but_slacks(
    make_slack: SlackFactory, fake_model: FakeModel, elsewhere: Elsewhere
) -> None:
    slack = await make_slack()
    linked = slack.fake.add_file("linked.txt", "text/plain", b"x")
    linked["url_private_download"] = f"{elsewhere.base}/linked.txt"  # evil.example
    bounced = slack.fake.add_file(
        "bounced.txt",
        "text/plain",
        served=Served(status=302, headers={"Location": f"{elsewhere.base}/bounced.txt"}),
    )
    # Within Slack (files.slack.com to files-origin.slack.com, on Enterprise Grid) a
    # redirect is followed, with the token: this fake Slack only serves files with it.
    inside = slack.fake.add_file("inside.txt", "text/plain", b"meeting at noon")
    moved = slack.fake.add_file(
        "moved.txt",
        "text/plain",
        served=Served(status=302, headers={"Location": inside["url_private_download"]}),
    )

    ts, _ = await slack.say("read the shared files", files=[linked, bounced, moved])

    assert elsewhere.requests == []
    assert slack.texts(ts) == [
        "ℹ️ I can't read `linked.txt`: it is not stored in Slack, so I left it out.",
        "ℹ️ I can't read `bounced.txt`: it is not stored in Slack, so I left it out.",
        "echo: read the shared files",
    ]
    assert attached(fake_model, "read the shared files") == {"moved.txt": "meeting at noon"}


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/a.txt", True),
        ("https://files-origin.slack.com/files-pri/T1-F1/download/a.txt", True),
        ("https://files.slack-gov.com/files-pri/T1-F1/download/a.txt", True),
        ("http://files.slack.com/files-pri/T1-F1/download/a.txt", False),  # in the clear
        ("https://files.slack.com.evil.example/a.txt", False),
        ("https://files.slack.com@evil.example/a.txt", False),
        ("https://evilslack.com/a.txt", False),
        ("https://docs.google.com/document/d/1", False),  # an external file Slack lists
        ("/files-pri/T1-F1/download/a.txt", False),
    ],
)
def test_the_token_rule_for_slacks_production_hosts(url: str, token: bool) -> None:
    assert on_slack(URL(url), URL("https://slack.com/api/").origin()) is token


async def test_a_stalled_download_times_out_and_the_message_is_still_answered(
    make_slack: SlackFactory, fake_model: FakeModel
) -> None:
    slack = await make_slack(download_timeout_s=1.0)
    hold = asyncio.Event()
    served = Served(body=[b"the first part ", b"and the rest"], hold=hold)
    file = slack.fake.add_file("stalled.txt", "text/plain", served=served)
    file["size"] = 27

    try:
        ts, _ = await slack.say("read the stalled file", files=[file])
        # Answered while the server still holds the rest back.
        assert (served.sent, served.done) == (len(b"the first part "), False)
    finally:
        hold.set()

    assert slack.texts(ts) == [
        "ℹ️ I couldn't download `stalled.txt`, so I left it out; please try again.",
        "echo: read the stalled file",
    ]
    assert attached(fake_model, "read the stalled file") == {}
