"""Fixtures: the fake model provider, the real Copilot CLI driven against it, and apps.

One runtime (the CLI process, ~1-2 s to start) serves the whole test session; each test
gets its own store and SessionManager on top of it and uses thread keys nobody else uses.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import DiscordAdapter
from adapters.slack import SlackAdapter
from bot.app import App, PlatformFactory
from bot.clock import Clock, system_clock
from bot.config import Settings
from bot.copilot_cli import find_cli
from bot.http_server import HttpServer
from bot.inbound import Dispatcher, Inbound, InboundFile
from bot.replies import (
    ApprovalCard,
    ErrorReply,
    FinalText,
    Notice,
    OpenedThread,
    Platform,
    ReplyEvent,
    TextDelta,
    TextRestart,
)
from bot.runtime import CopilotRuntime
from bot.runtime_pool import RuntimePool
from bot.store import Store, ThreadRecord
from bot.thread_key import ThreadKey
from tests.discord_harness import DiscordHarness
from tests.fake_discord import ADMIN_ID, GUILD_ID, FakeDiscord
from tests.fake_discord import TOKEN as DISCORD_TOKEN
from tests.fake_model import FakeModel
from tests.fake_slack import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, FakeSlack
from tests.postgres import postgres_server
from tests.slack_harness import SlackHarness

ROOT = Path(__file__).resolve().parent.parent


def make_settings(data_dir: Path, model_url: str, **overrides: Any) -> Settings:
    """Settings for a BYOK runtime answered by the fake model; nothing read from .env."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "model": "fake-model",
        "provider_type": "openai",
        "provider_base_url": model_url,
        "provider_api_key": "test-provider-key",
        "provider_wire_api": "completions",
        "turn_timeout_s": 60,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class FakeClock:
    """The injectable clock: tests move time instead of waiting for it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _nothing() -> AsyncIterator[ReplyEvent]:
    return
    yield


class RecordingSink:
    """Stands in for an adapter: keeps every reply event the core sends to the thread."""

    def __init__(self) -> None:
        self.events: list[ReplyEvent] = []
        self.event_id = ""
        self.refs: list[str] = []  # references of the "messages posted"
        self.opened: list[OpenedThread] = []
        self.rendered = 0
        self.declined: list[str] = []  # refusals, said to the asker alone
        self.done = asyncio.Event()  # set after each stream was shown
        self.cards: dict[str, ApprovalCard] = {}  # approval cards, as each shows now
        self.card_shown = asyncio.Event()  # set whenever a card is posted or changes

    async def render(self, events: AsyncIterator[ReplyEvent]) -> list[str]:
        self.rendered += 1
        async for event in events:
            self.events.append(event)
        self.refs.append(f"ref-{uuid.uuid4().hex[:8]}")
        self.done.set()
        return self.refs[-1:]

    async def decline(self, text: str) -> list[str]:
        self.declined.append(text)
        return await self.render(_nothing())

    async def show_approval(self, card: ApprovalCard, ref: str | None = None) -> str | None:
        ref = ref or f"card-{uuid.uuid4().hex[:8]}"
        self.cards[ref] = card
        self.card_shown.set()
        return ref

    async def open_thread(self, title: str, origin: ThreadKey) -> OpenedThread:
        key = ThreadKey(origin.platform, origin.workspace, origin.channel, uuid.uuid4().hex)
        self.opened.append(OpenedThread(key, f"<thread {key.thread}>"))
        return self.opened[-1]

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, FinalText))

    @property
    def streamed(self) -> str:
        """The streamed text as a reader saw it last: deltas, a restart replacing it all."""
        shown = ""
        for event in self.events:
            if isinstance(event, TextDelta):
                shown += event.text
            elif isinstance(event, TextRestart):
                shown = event.text
        return shown

    @property
    def errors(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, ErrorReply)]

    @property
    def notices(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, Notice)]


class RecordingPlatform:
    """Stands in for an adapter's platform side: keeps what the core posts unasked."""

    name = "slack"

    def __init__(self) -> None:
        self.connected = True
        self.trouble: str | None = None
        self.posted: dict[ThreadKey, RecordingSink] = {}

    def sink(self, key: ThreadKey) -> RecordingSink:
        return self.posted.setdefault(key, RecordingSink())


async def journal_state(store: Store, event_id: str) -> str | None:
    """Where the journal entry of a delivery is: received, running, done, failed or
    interrupted (None: no entry)."""
    row = await store.run(
        lambda conn: conn.execute(
            "SELECT state FROM turns WHERE event_id = ?", (event_id,)
        ).fetchone()
    )
    return str(row[0]) if row else None


def recording(_dispatcher: Dispatcher, _settings: Settings) -> list[Platform]:
    """The platforms of an app whose tests talk to the router directly."""
    return [RecordingPlatform()]


class Chat:
    """A test's view of one app: unique thread keys, a `say` helper, and the notes the
    core posted unasked (`platform`, for an app made with `recording`)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._channel = uuid.uuid4().hex[:10]
        self._ids = itertools.count(1)

    @classmethod
    async def on_own_runtimes(
        cls, settings: Settings, cli_path: Path, db: Path, clock: Clock = system_clock
    ) -> Chat:
        """A Chat on runtimes of its own (started here; `app.close()` stops them)."""
        runtimes = RuntimePool(settings, cli_path, clock)
        await runtimes.start()
        store = await Store.open(db, clock)
        return cls(App(settings, runtimes, store, platforms=recording, clock=clock))

    @property
    def platform(self) -> RecordingPlatform:
        platform = self.app.platforms["slack"]
        assert isinstance(platform, RecordingPlatform)
        return platform

    def key(self, thread: str, platform: str = "slack") -> ThreadKey:
        return ThreadKey(platform, "T01", f"C{self._channel}", thread)

    async def say(
        self,
        thread: str | ThreadKey,
        text: str,
        *,
        event_id: str | None = None,
        user: str = "U1",
        command: str | None = None,
        target_ref: str | None = None,
        files: tuple[InboundFile, ...] = (),
    ) -> RecordingSink:
        """Send a message (its reference is `msg-<event id>`); `target_ref` is the message a
        command is used on, as a message shortcut gives it."""
        key = thread if isinstance(thread, ThreadKey) else self.key(thread)
        sink = RecordingSink()
        sink.event_id = event_id or f"Ev{self._channel}{next(self._ids)}"
        inbound = Inbound(
            event_id=sink.event_id,
            key=key,
            user_id=user,
            text=text,
            command=command,
            message_ref=f"msg-{sink.event_id}",
            target_ref=target_ref,
            files=files,
        )
        await self.app.router.dispatch(inbound, sink)
        return sink

    async def journal_state(self, sink: RecordingSink, platform: str = "slack") -> str | None:
        return await journal_state(self.app.store, f"{platform}:{sink.event_id}")

    async def thread(self, name: str) -> ThreadRecord:
        record = await self.app.store.thread(self.key(name))
        assert record is not None, f"no thread {name}"
        return record


async def run_threadpilot(
    tmp_path: Path, cli_path: Path, *args: str, **env: str
) -> asyncio.subprocess.Process:
    """`threadpilot` (with `args`) as a process of its own, with nothing but `env` set."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=tmp_path,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "THREADPILOT_HTTP_PORT": "0",
            "COPILOT_CLI_PATH": str(cli_path),
            **env,
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def start_bot(
    tmp_path: Path, fake_model: FakeModel, cli_path: Path, *args: str, **env: str
) -> asyncio.subprocess.Process:
    """`threadpilot` (with `args`) as a process of its own, answered by the fake model."""
    return await run_threadpilot(
        tmp_path, cli_path, *args,
        THREADPILOT_MODEL="fake-model",
        THREADPILOT_PROVIDER_BASE_URL=fake_model.base_url,
        THREADPILOT_PROVIDER_WIRE_API="completions",
        **env,
    )  # fmt: skip


async def refused_start(tmp_path: Path, fake_model: FakeModel, cli_path: Path, **env: str) -> str:
    """`threadpilot` started where it must not start: it exits 2, with no traceback and
    nothing left open; returns the last line it wrote, the one that says why."""
    process = await start_bot(tmp_path, fake_model, cli_path, **env)
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    log = err.decode()
    assert process.returncode == 2 and "Traceback" not in log and "Unclosed" not in log, log
    return log.strip().splitlines()[-1]


async def stop_bot(process: asyncio.subprocess.Process) -> str:
    """SIGTERM, as a service manager stops it: it must exit 0. Returns its stderr."""
    try:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    except BaseException:
        print(await reap(process))  # shown with the failure
        raise
    return await reap(process)


async def reap(process: asyncio.subprocess.Process) -> str:
    """Kill the process if it still runs; return what it wrote to stderr."""
    if process.returncode is None:
        process.kill()
        await process.wait()
    assert process.stderr is not None
    return (await process.stderr.read()).decode()


@pytest.fixture(scope="session")
async def fake_model() -> AsyncIterator[FakeModel]:
    model = FakeModel()
    await model.start()
    yield model
    await model.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a throwaway PostgreSQL server's `postgres` database, for the session."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def cli_path() -> Path:
    explicit = os.environ.get("COPILOT_CLI_PATH")
    return find_cli(ROOT / ".copilot-cli", Path(explicit) if explicit else None)


@pytest.fixture(scope="session")
async def runtimes(
    tmp_path_factory: pytest.TempPathFactory, fake_model: FakeModel, cli_path: Path
) -> AsyncIterator[RuntimePool]:
    """One shared runtime (a pool of one), for every test that needs no runtime of its own."""
    settings = make_settings(tmp_path_factory.mktemp("runtime"), fake_model.base_url)
    pool = RuntimePool(settings, cli_path)
    await pool.start()
    yield pool
    await pool.stop()


@pytest.fixture
def runtime(runtimes: RuntimePool) -> CopilotRuntime:
    """The shared pool's one runtime, for tests of a single CLI."""
    (only,) = runtimes.runtimes()
    return only


@pytest.fixture(scope="session")
async def fake_slack() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack()
    await slack.start()
    yield slack
    await slack.stop()


AppFactory = Callable[..., Awaitable[Chat]]


@pytest.fixture
async def make_chat(
    tmp_path: Path, runtimes: RuntimePool, fake_model: FakeModel
) -> AsyncIterator[AppFactory]:
    """Build a Chat on the shared runtime with a fresh store; settings may be overridden."""
    apps: list[App] = []

    async def make(
        clock: Clock = system_clock, platforms: PlatformFactory = recording, **overrides: Any
    ) -> Chat:
        settings = make_settings(tmp_path, fake_model.base_url, **overrides)
        store = await Store.open(tmp_path / f"threadpilot-{len(apps)}.db", clock)
        app = App(settings, runtimes, store, platforms=platforms, clock=clock)
        apps.append(app)
        return Chat(app)

    yield make
    for app in apps:
        app.scheduler.shutdown()
        await app.sessions.close()
        await app.store.close()


@pytest.fixture
async def chat(make_chat: AppFactory) -> Chat:
    return await make_chat()


@pytest.fixture
async def slack_http(
    make_chat: AppFactory, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[tuple[SlackHarness, str]]:
    """Slack's HTTP mode: signed deliveries posted to /slack/events on the bot's port;
    logging at INFO as the bot does by default (set first: Bolt's loggers take the root
    logger's level when they are made)."""
    caplog.set_level(logging.INFO)
    chat = await make_chat(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.api_url,
    )
    adapter = SlackAdapter(chat.app.router, chat.app.settings, edit_interval_s=0.05)
    http = HttpServer(chat.app, port=0)
    adapter.mount(http.web_app)
    await http.start()
    await adapter.start()
    harness = SlackHarness(fake_slack, chat.app, adapter, f"C{uuid.uuid4().hex[:8].upper()}")
    yield harness, f"http://127.0.0.1:{http.port}/slack/events"
    await adapter.stop()
    await http.stop()


SlackFactory = Callable[..., Awaitable[SlackHarness]]


@pytest.fixture
async def make_slack(make_chat: AppFactory, fake_slack: FakeSlack) -> AsyncIterator[SlackFactory]:
    """Start the Slack adapter on an app of the shared runtime; settings (and its download
    timeout and edit interval) may be overridden."""
    adapters: list[SlackAdapter] = []

    async def make(
        download_timeout_s: float = 30.0, edit_interval_s: float = 0.05, **overrides: Any
    ) -> SlackHarness:
        def slack_adapter(dispatcher: Dispatcher, settings: Settings) -> list[Platform]:
            return [
                SlackAdapter(
                    dispatcher, settings, edit_interval_s=edit_interval_s,
                    download_timeout_s=download_timeout_s,
                )
            ]  # fmt: skip

        chat = await make_chat(
            platforms=slack_adapter,
            **{
                "slack_bot_token": BOT_TOKEN,
                "slack_app_token": APP_TOKEN,
                "slack_api_url": fake_slack.api_url,
                "admins": frozenset({"slack:UADMIN"}),
                **overrides,
            },
        )
        adapter = chat.app.platforms["slack"]
        assert isinstance(adapter, SlackAdapter)
        await adapter.start()
        adapters.append(adapter)
        return SlackHarness(fake_slack, chat.app, adapter, f"C{uuid.uuid4().hex[:8].upper()}")

    yield make
    for adapter in adapters:
        await adapter.stop()


@pytest.fixture
async def slack(make_slack: SlackFactory) -> SlackHarness:
    return await make_slack()


@pytest.fixture(scope="session")
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    discord = FakeDiscord()
    await discord.start()
    yield discord
    await discord.stop()


DiscordFactory = Callable[..., Awaitable[DiscordHarness]]


@pytest.fixture
async def make_discord(
    make_chat: AppFactory, fake_discord: FakeDiscord
) -> AsyncIterator[DiscordFactory]:
    """Start the Discord adapter on an app of the shared runtime; settings (and its edit
    interval) may be overridden."""
    adapters: list[DiscordAdapter] = []

    async def make(
        *, commands_synced: bool = True, edit_interval_s: float = 0.05, **overrides: Any
    ) -> DiscordHarness:
        """`commands_synced`: wait until the slash commands are registered."""

        def discord_adapter(dispatcher: Dispatcher, settings: Settings) -> list[Platform]:
            return [
                DiscordAdapter(
                    dispatcher, settings, edit_interval_s=edit_interval_s,
                    guild_ready_timeout=0.1, sync_retry_s=(0.1,),
                )
            ]  # fmt: skip

        chat = await make_chat(
            platforms=discord_adapter,
            **{
                "discord_token": DISCORD_TOKEN,
                "discord_api_url": fake_discord.api_url,
                "discord_gateway_url": fake_discord.gateway_url,
                "discord_guild_ids": (int(GUILD_ID),),
                "discord_message_content": True,
                "admins": frozenset({f"discord:{ADMIN_ID}"}),
                **overrides,
            },
        )
        adapter = chat.app.platforms["discord"]
        assert isinstance(adapter, DiscordAdapter)
        await adapter.start()
        if commands_synced:
            await asyncio.wait_for(adapter.commands_synced.wait(), 30)
        adapters.append(adapter)
        return DiscordHarness(fake_discord, chat.app, adapter)

    yield make
    for adapter in adapters:
        await adapter.stop()


@pytest.fixture
async def discord_bot(make_discord: DiscordFactory) -> DiscordHarness:
    return await make_discord()
