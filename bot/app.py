"""App: the core assembled — store, runtime, sessions, scheduler, commands, router — and its
lifetime."""

from __future__ import annotations

import logging

from bot.access import Access
from bot.checkpoints import Checkpointer
from bot.clock import Clock, system_clock
from bot.commands import Commands
from bot.config import Settings
from bot.copilot_cli import find_cli
from bot.journal import Journal
from bot.metrics import Metrics
from bot.replies import Notice, Platform, single
from bot.router import Router
from bot.runtime import CopilotRuntime
from bot.scheduler import Scheduler
from bot.sessions import SessionManager
from bot.status import Status
from bot.store import Store
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

INTERRUPTED = (
    "I was restarted while answering here, so my last answer is missing or incomplete. "
    "Please send your last message again."
)


class App:
    """Wires the parts around an open store and a started runtime. Adapters register
    themselves in `platforms` so the core can post into their threads unasked."""

    def __init__(
        self,
        settings: Settings,
        runtime: CopilotRuntime,
        store: Store,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.store = store
        self.platforms: dict[str, Platform] = {}
        self.interrupted: list[ThreadKey] = []  # threads whose turn the last run left
        self.metrics = Metrics(clock)
        self.journal = Journal(store, clock)
        self.sessions = SessionManager(runtime, store, settings, self.metrics, clock)
        self.metrics.live_sessions.set_function(lambda: self.sessions.live_count)
        self.checkpointer = Checkpointer(self.sessions, settings, self.metrics, self.platforms)
        self.scheduler = Scheduler(
            settings=settings,
            runtime=runtime,
            store=store,
            journal=self.journal,
            sessions=self.sessions,
            checkpointer=self.checkpointer,
            metrics=self.metrics,
            clock=clock,
        )
        self.status = Status(runtime, store, self.sessions, self.scheduler, self.metrics)
        self.commands = Commands(settings, self.sessions, self.journal, self.status)
        self.router = Router(
            settings=settings,
            access=Access(settings, clock),
            store=store,
            journal=self.journal,
            sessions=self.sessions,
            commands=self.commands,
            checkpointer=self.checkpointer,
            metrics=self.metrics,
        )

    @classmethod
    async def start(cls, settings: Settings, clock: Clock = system_clock) -> App:
        """Open the store, recover the journal and start the runtime."""
        runtime = CopilotRuntime(settings, find_cli(settings.cli_dir, settings.cli_path))
        store = await Store.open(settings.data_dir / "threadpilot.db", clock)
        try:
            app = cls(settings, runtime, store, clock)
            app.interrupted = await app.journal.recover()
            if app.interrupted:
                log.warning(
                    "the last run stopped while answering in %d threads", len(app.interrupted)
                )
            await runtime.start()
        except BaseException:
            await store.close()
            raise
        return app

    async def tell_interrupted(self) -> None:
        """Tell each thread whose answer the last run never finished (once platforms are
        up): the bot does not retry on its own, since the agent may have acted already."""
        for key in self.interrupted:
            platform = self.platforms.get(key.platform)
            if platform is None:
                continue
            try:
                await platform.sink(key).render(single(Notice(INTERRUPTED)))
            except Exception as exc:
                log.warning("could not tell %s about its interrupted answer: %s", key, exc)
        self.interrupted = []

    def readiness(self) -> dict[str, bool]:
        """What /readyz checks: the runtime, the store, and every platform's connection."""
        checks = {"runtime": self.runtime.started, "store": self.store.is_open}
        checks.update({f"{name} connected": p.connected for name, p in self.platforms.items()})
        return checks

    async def close(self) -> None:
        self.scheduler.shutdown()
        await self.sessions.close()
        await self.runtime.stop()
        await self.store.close()
