"""Each place threadpilot leans on a pinned library's internals (bot/compat.py, and
discord.py's URLs in its adapter), checked against the real thing: an upgrade that moves
one fails here, by name, rather than somewhere downstream."""

from __future__ import annotations

from pathlib import Path

import copilot.generated.rpc as sdk_rpc
import copilot.generated.session_events as sdk_events
import dateutil.parser
import discord
import pytest
import yarl

from adapters.discord.adapter import point_at
from bot import compat
from bot.errors import SessionNotFound
from bot.profiles import ThreadProfile
from bot.runtime import CopilotRuntime, SessionSpec
from tests.conftest import make_settings

TIMESTAMPS = [
    "2026-11-22T02:44:40.467Z",  # what the runtime sends
    "2026-11-22T02:44:40Z",
    "2026-11-22T02:44:40.467123+02:00",
    "2026-11-22T02:44:40",
    "Sun, 22 Nov 2026 02:44:40 GMT",  # not ISO: falls back to dateutil
]


async def test_sdk_errors_still_tell_a_missing_session_on_resume_fork_send_and_delete(
    runtime: CopilotRuntime, tmp_path: Path
) -> None:
    with pytest.raises(SessionNotFound) as resumed:
        await runtime.resume(SessionSpec("compat-never-was", tmp_path, ThreadProfile()))
    assert isinstance(resumed.value.__cause__, compat.RpcError)

    with pytest.raises(SessionNotFound) as forked:
        await runtime.fork("compat-never-was")
    assert isinstance(forked.value.__cause__, compat.RpcError)

    with pytest.raises(SessionNotFound) as deleted:
        await runtime.delete("compat-never-was")
    assert isinstance(deleted.value.__cause__, RuntimeError)

    session = await runtime.create(SessionSpec("compat-short-lived", tmp_path, ThreadProfile()))
    await runtime.delete("compat-short-lived")
    with pytest.raises(SessionNotFound) as sent:
        await runtime.send(session, "anyone there?", [])
    assert isinstance(sent.value.__cause__, compat.RpcError)


async def test_the_sdk_client_still_keeps_its_cli_process_in_process(
    runtime: CopilotRuntime,
) -> None:
    process = compat.cli_process(runtime.client)
    assert process is not None and process.poll() is None
    assert runtime.load().pid == process.pid


@pytest.mark.parametrize("value", TIMESTAMPS)
def test_the_fast_timestamp_parser_gives_dateutils_results(value: str) -> None:
    ours, theirs = compat.parse_timestamp(value), dateutil.parser.parse(value)
    assert ours == theirs and ours.utcoffset() == theirs.utcoffset()


def test_the_sdk_decoders_still_parse_timestamps_through_from_datetime() -> None:
    compat.install_fast_timestamps()
    assert sdk_events.from_datetime is compat.parse_timestamp  # type: ignore[attr-defined]
    assert sdk_rpc.from_datetime is compat.parse_timestamp  # type: ignore[attr-defined]
    event = sdk_events.SessionEvent.from_dict(
        {
            "id": "9bccb023-e9c0-4d36-9f3c-e098ef928e33",
            "timestamp": "2026-11-22T02:44:40.467Z",
            "type": "session.idle",
            "data": {},
        }
    )
    assert event.timestamp == dateutil.parser.parse("2026-11-22T02:44:40.467Z")


def test_discord_py_still_takes_its_rest_and_gateway_urls_from_class_attributes(
    tmp_path: Path,
) -> None:
    before = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    settings = make_settings(
        tmp_path,
        "http://127.0.0.1:9/v1",
        discord_api_url="http://127.0.0.1:9/api/v10/",
        discord_gateway_url="ws://127.0.0.1:9/gateway",
    )
    try:
        point_at(settings)
        route = discord.http.Route("GET", "/users/@me")
        assert route.url == "http://127.0.0.1:9/api/v10/users/@me"
        gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        assert gateway == yarl.URL("ws://127.0.0.1:9/gateway")
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = before
