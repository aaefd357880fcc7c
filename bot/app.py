"""App: the core assembled — store, runtime, sessions, commands and router — and its lifetime."""

from __future__ import annotations

import logging

from bot.clock import Clock, system_clock
from bot.commands import Commands
from bot.config import Settings
from bot.copilot_cli import find_cli
from bot.journal import Journal
from bot.router import Router
from bot.runtime import CopilotRuntime
from bot.sessions import SessionManager
from bot.store import Store

log = logging.getLogger(__name__)


class App:
    """Wires the parts around an open store and a started runtime."""

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
        self.journal = Journal(store, clock)
        self.sessions = SessionManager(runtime, store, settings)
        self.commands = Commands(settings, runtime, store, self.sessions)
        self.router = Router(self.journal, self.sessions, self.commands)

    @classmethod
    async def start(cls, settings: Settings, clock: Clock = system_clock) -> App:
        """Open the store, recover the journal and start the runtime."""
        runtime = CopilotRuntime(settings, find_cli(settings.cli_dir, settings.cli_path))
        store = await Store.open(settings.data_dir / "threadpilot.db", clock)
        try:
            app = cls(settings, runtime, store, clock)
            interrupted = await app.journal.recover()
            if interrupted:
                log.warning("%d turns were interrupted by the last shutdown", interrupted)
            await runtime.start()
        except BaseException:
            await store.close()
            raise
        return app

    async def close(self) -> None:
        await self.sessions.close()
        await self.runtime.stop()
        await self.store.close()
