"""App: the core assembled — store, runtime, sessions, scheduler, commands, router — and its
lifetime."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot import local_model
from bot.access import Access
from bot.checkpoints import Checkpointer
from bot.clock import Clock, system_clock
from bot.command_handlers import CommandHandlers
from bot.config import Settings
from bot.copilot_cli import find_cli
from bot.journal import Journal
from bot.local_model import LocalModel
from bot.metrics import Metrics
from bot.replies import Notice, Platform, single
from bot.router import Router
from bot.runtime import CopilotRuntime
from bot.scheduler import Scheduler
from bot.sessions import SessionManager
from bot.status import Status
from bot.store import Store
from bot.thread_context import ThreadContext
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

INTERRUPTED = (
    "I was restarted while answering here, so my last answer is missing or incomplete. "
    "Please send your last message again."
)


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Which model answers and why (printed at start), with the settings that make the
    runtime use it."""

    settings: Settings
    description: str
    local: LocalModel | None = None

    async def stop(self) -> None:
        if self.local is not None:
            await asyncio.to_thread(self.local.stop)


async def choose_model(settings: Settings) -> ModelSource:
    """The first that applies: a BYOK provider, a GitHub token, the embedded local model,
    the GitHub user logged in on this machine. Starts the embedded model when chosen."""
    if settings.byok:
        return ModelSource(
            settings,
            f"{settings.model} from {settings.provider_type or 'openai'} provider at "
            f"{settings.provider_base_url} (THREADPILOT_PROVIDER_BASE_URL is set)",
        )
    model = f" {settings.model}" if settings.model else ""
    if settings.github_token:
        return ModelSource(settings, f"GitHub Copilot{model} (a GitHub token is set)")
    if not local_model.chosen(settings):
        why = (
            "THREADPILOT_LOCAL_MODEL=false"
            if not settings.local_model
            else f"the embedded model is not installed: {local_model.INSTALL_HINT}"
        )
        return ModelSource(
            settings,
            f"GitHub Copilot{model} as the GitHub user logged in on this machine, if any "
            f"(no BYOK provider, no GitHub token, {why})",
        )
    if settings.tools:
        log.warning("THREADPILOT_TOOLS is ignored: the embedded model cannot use tools")
    local = LocalModel()
    base_url = await asyncio.to_thread(local.start)
    # A plain OpenAI-compatible provider to the runtime; a short prompt and no tools, as
    # that is all a 135M model can follow (and its whole context holds).
    effective = settings.model_copy(
        update={
            "provider_type": "openai",
            "provider_base_url": base_url,
            "provider_wire_api": "completions",
            "provider_max_prompt_tokens": local_model.CONTEXT_TOKENS - local_model.ANSWER_TOKENS,
            "model": local_model.MODEL_NAME,
            "tools": (),
            "system_prompt": (
                settings.system_prompt
                if "system_prompt" in settings.model_fields_set
                else local_model.SYSTEM_PROMPT
            ),
        }
    )
    return ModelSource(
        effective,
        f"the embedded {local_model.MODEL_NAME} at {base_url} "
        "(no BYOK provider and no GitHub token)",
        local,
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
        self.model_source = ModelSource(settings, runtime.auth_mode)
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
        context = ThreadContext(settings.thread_context_chars, self.journal)
        self.commands = CommandHandlers(settings, self.sessions, self.journal, self.status, context)
        self.router = Router(
            settings=settings,
            access=Access(settings, clock),
            store=store,
            journal=self.journal,
            sessions=self.sessions,
            commands=self.commands,
            checkpointer=self.checkpointer,
            context=context,
            metrics=self.metrics,
        )

    @classmethod
    async def start(cls, settings: Settings, clock: Clock = system_clock) -> App:
        """Choose the model, open the store, recover the journal and start the runtime."""
        cli = find_cli(settings.cli_dir, settings.cli_path)
        source = await choose_model(settings)
        settings = source.settings
        runtime = CopilotRuntime(settings, cli)
        store: Store | None = None
        try:
            store = await Store.open(settings.data_dir / "threadpilot.db", clock)
            app = cls(settings, runtime, store, clock)
            app.model_source = source
            app.interrupted = await app.journal.recover()
            if app.interrupted:
                log.warning(
                    "the last run stopped while answering in %d threads", len(app.interrupted)
                )
            await runtime.start()
        except BaseException:
            if store is not None:
                await store.close()
            await source.stop()
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
        await self.model_source.stop()
