"""What the benchmarks share: the remote echo model, an app on the real Copilot CLI, and
percentile tables."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from bot.app import App
from bot.config import Settings
from bot.copilot_cli import find_cli
from bot.runtime_pool import RuntimePool
from bot.store import Store
from tests.conftest import make_settings
from tests.fake_slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def remote_echo_model() -> AsyncIterator[str]:
    """The instant echo model in a process of its own, as a remote provider would be, so it
    does not compete with the bot for its event loop. Yields its base URL."""
    model = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fake_model", stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert model.stdout is not None
    try:
        yield (await model.stdout.readline()).decode().strip()
    finally:
        model.kill()
        await model.wait()


async def bot_process(
    slack: FakeSlack, data: Path, model_url: str, **env: str
) -> asyncio.subprocess.Process:
    """A real `threadpilot run` on `slack` and the model at `model_url`, keeping its data in
    `data`, with no rate limits; `env` adds to its environment."""
    cli = find_cli(ROOT / ".copilot-cli")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot",
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(data),
            "COPILOT_CLI_PATH": str(cli),
            "THREADPILOT_DATA_DIR": str(data),
            "THREADPILOT_HTTP_PORT": "0",
            "THREADPILOT_RUNTIMES": "1",
            "THREADPILOT_MODEL": "fake-model",
            "THREADPILOT_PROVIDER_BASE_URL": model_url,
            "THREADPILOT_PROVIDER_WIRE_API": "completions",
            "THREADPILOT_USER_TURNS_PER_MINUTE": "0",
            "THREADPILOT_THREAD_TURNS_PER_MINUTE": "0",
            "THREADPILOT_LOG_LEVEL": "WARNING",
            **slack.env,
            **env,
        },
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def start_app(tmp: Path, model_url: str, **overrides: Any) -> App:
    """An app on a started runtime, with no rate limits: benchmarks ask many times a minute."""
    settings = make_settings(
        tmp, model_url, user_turns_per_minute=0, thread_turns_per_minute=0, **overrides
    )
    return await app_on(settings)


async def app_on(settings: Settings) -> App:
    """An app with these settings on a started runtime, its database in the data dir."""
    runtimes = RuntimePool(settings, find_cli(ROOT / ".copilot-cli"))
    await runtimes.start()
    return App(settings, runtimes, await Store.open(settings.data_dir / "bench.db"))


def ms(values: list[float], q: float, decimals: int = 1) -> str:
    """The `q` quantile of `values` (seconds), in milliseconds, 8 wide."""
    ordered = sorted(values)
    return f"{ordered[round(q * (len(ordered) - 1))] * 1000:8.{decimals}f}"


class Stoppable(Protocol):
    async def stop(self) -> None: ...


async def print_latency(
    title: str,
    bot: Callable[[str], Awaitable[tuple[App, Stoppable]]],
    first_text: Callable[[int, int], Awaitable[list[float]]],
) -> None:
    """`print_first_text` for a bot (an app and its adapter) started on the remote echo
    model; stopped as the bot stops: answers still streaming (only their first text was
    timed) finish before the client closes under them."""
    async with remote_echo_model() as model_url:
        app, adapter = await bot(model_url)
        try:
            await print_first_text(title, first_text)
        finally:
            await app.router.drain(60)
            await adapter.stop()
            await app.close()


async def print_first_text(
    title: str, first_text: Callable[[int, int], Awaitable[list[float]]]
) -> None:
    """p50 and p99 of `first_text(concurrency, rounds)` at 1 and 50 concurrent threads."""
    print()
    print(title)
    print(f"{'threads':>8} {'answers':>8} {'p50':>8} {'p99':>8}")
    for concurrency, rounds in ((1, 20), (50, 3)):
        latencies = await first_text(concurrency, rounds)
        print(f"{concurrency:>8} {len(latencies):>8} {ms(latencies, 0.5)} {ms(latencies, 0.99)}")
