"""Health, readiness and metrics over HTTP, and `threadpilot status` over the admin
socket."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.http_server import HttpServer
from tests.conftest import Chat


@pytest.fixture
async def http(chat: Chat) -> AsyncIterator[str]:
    server = HttpServer(chat.app, port=0, host="127.0.0.1")
    await server.start()
    yield f"http://127.0.0.1:{server.port}"
    await server.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        return response.status, await response.text()


async def test_healthz_answers_while_the_process_lives(http: str) -> None:
    assert await get(f"{http}/healthz") == (200, '{"status": "ok"}')


async def test_readyz_needs_the_runtime_the_store_and_every_platform(http: str, chat: Chat) -> None:
    status, body = await get(f"{http}/readyz")
    assert status == 200 and '"slack connected": true' in body and '"runtime": true' in body

    chat.platform.trouble = "slash commands not registered"  # serving, degraded: still ready
    status, body = await get(f"{http}/readyz")
    assert status == 200 and json.loads(body)["troubles"] == {"slack": chat.platform.trouble}

    chat.platform.connected = False  # e.g. Slack's socket dropped
    status, body = await get(f"{http}/readyz")
    assert status == 503 and '"slack connected": false' in body


async def test_metrics_count_turns_resets_errors_and_live_sessions(http: str, chat: Chat) -> None:
    await chat.say("metrics", "count me")
    await chat.say("metrics", "/reset")
    status, body = await get(f"{http}/metrics")
    assert status == 200
    for line in (
        'threadpilot_turns_total{outcome="done"} 1.0',
        "threadpilot_turn_seconds_count 1.0",
        'threadpilot_resets_total{cause="reset"} 1.0',
        "threadpilot_live_sessions 0.0",  # the reset disconnected it
        "threadpilot_compactions_total 0.0",
    ):
        assert line in body, line

    await chat.say("metrics", "live again")
    _, body = await get(f"{http}/metrics")
    assert "threadpilot_live_sessions 1.0" in body


async def test_threadpilot_status_prints_the_admin_status_of_the_running_bot(
    http: str, chat: Chat
) -> None:
    await chat.say("cli-status", "hello")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "status",
        env={"PATH": "/usr/bin:/bin", "THREADPILOT_DATA_DIR": str(chat.app.settings.data_dir)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert text.startswith("threadpilot status\nruntimes: Copilot CLI 1.0.102")
    assert "slack: 1 / 1 / 1" in text and "idle sweep: next -" in text


async def test_threadpilot_status_without_a_running_bot_says_so(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "status",
        env={"PATH": "/usr/bin:/bin", "THREADPILOT_DATA_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert f"no running bot answers at {tmp_path / 'admin.sock'}" in err.decode()
