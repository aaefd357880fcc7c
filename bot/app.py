"""App: the core assembled — store, runtime, sessions, scheduler, commands, router — and its
lifetime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bot.access import Access
from bot.approvals import Approvals
from bot.budgets import Budgets
from bot.clock import Clock, system_clock
from bot.command_handlers import CommandHandlers
from bot.config import Settings
from bot.copilot_cli import find_cli
from bot.inbound import Dispatcher, Redelivering
from bot.journal import HANDED_OVER, Journal
from bot.leases import Leases
from bot.mcp import McpHealth
from bot.metrics import Metrics
from bot.model_choice import ModelSource, choose_model
from bot.profiles import Profiles
from bot.replies import Notice, Platform, ReplySink, single
from bot.router import Router
from bot.runtime_pool import RuntimePool
from bot.scheduler import Scheduler
from bot.session_files import SharedState
from bot.sessions import SessionManager
from bot.status import Status
from bot.store import Store
from bot.summary_reset import SummaryReset
from bot.thread_context import ThreadContext
from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

INTERRUPTED = (
    "I was restarted while answering here, so my last answer is missing or incomplete. "
    "Please send your last message again."
)


# The adapters a run serves, made once the core can take their messages.
PlatformFactory = Callable[[Dispatcher, Settings], Sequence[Platform]]


def no_platforms(_dispatcher: Dispatcher, _settings: Settings) -> Sequence[Platform]:
    return ()


class App:
    """The parts wired around an open store and a started runtime pool, with the
    platforms they serve, built in one step."""

    def __init__(
        self,
        settings: Settings,
        runtimes: RuntimePool,
        store: Store,
        *,
        model: ModelSource | None = None,
        platforms: PlatformFactory = no_platforms,
        interrupted: Sequence[ThreadKey] = (),  # threads whose turn the last run left
        leases: Leases | None = None,
        profiles: Profiles | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.model_source = model or ModelSource(settings, runtimes.auth_mode)
        self.runtimes = runtimes
        self.store = store
        self.interrupted = tuple(interrupted)
        self.clock = clock
        self.metrics = Metrics(clock)
        self.leases = leases or Leases(store, clock, settings.lease_ttl_s)
        self.journal = Journal(store, clock, self.leases.id)
        self.profiles = profiles or Profiles(settings, clock)
        self.approvals = Approvals(store, clock, self.leases.id, self.profiles, self._sink)
        self.budgets = Budgets(store, clock, self.profiles, self.metrics)
        self.sessions = SessionManager(
            runtimes,
            store,
            settings,
            self.metrics,
            leases=self.leases,
            profiles=self.profiles,
            approvals=self.approvals,
            mcp=McpHealth(self.tell),
            clock=clock,
        )
        self.metrics.live_sessions.set_function(lambda: self.sessions.live_count)
        self.metrics.watch_runtimes(runtimes.loads)
        self.summary_reset = SummaryReset(self.sessions, settings, self.metrics, self.tell)
        self.scheduler = Scheduler(
            settings=settings,
            runtimes=runtimes,
            store=store,
            journal=self.journal,
            sessions=self.sessions,
            summary_reset=self.summary_reset,
            leases=self.leases,
            tell_interrupted=self.tell_interrupted,
            take_up=self.take_up,
            profiles=self.profiles,
            metrics=self.metrics,
            clock=clock,
        )
        self.status = Status(
            runtimes,
            store,
            self.sessions,
            self.scheduler,
            self.metrics,
            self.leases,
            self.profiles,
            self.budgets,
            self.troubles,
        )
        context = ThreadContext(settings.thread_context_chars, self.journal)
        self.commands = CommandHandlers(
            settings, self.sessions, self.journal, self.status, context, self.profiles
        )
        self.router = Router(
            settings=settings,
            access=Access(settings, store, clock),
            store=store,
            journal=self.journal,
            sessions=self.sessions,
            commands=self.commands,
            summary_reset=self.summary_reset,
            context=context,
            approvals=self.approvals,
            budgets=self.budgets,
            metrics=self.metrics,
        )
        self.platforms: dict[str, Platform] = {
            platform.name: platform for platform in platforms(self.router, settings)
        }
        self._taken_up: set[int] = set()  # handed-over entries delivered again here
        self._background: set[asyncio.Task[object]] = set()  # see _spawn

    @classmethod
    async def start(
        cls, settings: Settings, platforms: PlatformFactory, clock: Clock = system_clock
    ) -> App:
        """Choose the model, open the store, join the replicas, recover the journal, begin
        starting the runtimes (turns wait for them; `runtimes.ready()` says when they
        are up), and make the platforms (with the settings as the model choice left
        them)."""
        cli = find_cli(settings.cli_dir, settings.cli_path)
        source = await choose_model(settings)
        settings = source.settings
        store: Store | None = None
        runtimes: RuntimePool | None = None
        try:
            store = await Store.open(settings.database, clock)
            leases = Leases(store, clock, settings.lease_ttl_s)
            await leases.start()
            # On one machine this is the only replica: whatever another left is over. With
            # replicas, only those whose leases have lapsed are.
            alone = settings.database_url is None
            seen_before = float("inf") if alone else leases.alive_since()
            if alone:
                await leases.free_the_left()
            interrupted = await Journal(store, clock, leases.id).recover(seen_before)
            if interrupted:
                log.warning("the last run stopped while answering in %d threads", len(interrupted))
            shared = None if alone else SharedState(store, clock)
            profiles = Profiles(settings, clock)
            runtimes = RuntimePool(settings, cli, clock, shared)
            await runtimes.begin(shell=profiles.enables("bash"))
            return cls(
                settings,
                runtimes,
                store,
                model=source,
                platforms=platforms,
                interrupted=interrupted,
                leases=leases,
                profiles=profiles,
                clock=clock,
            )
        except BaseException:
            if runtimes is not None:
                await runtimes.stop()
            if store is not None:
                await store.close()
            await source.stop()
            raise

    def _sink(self, key: ThreadKey) -> ReplySink:
        """A sink posting into `key`'s thread unasked; LookupError when no platform
        serves it."""
        platform = self.platforms.get(key.platform)
        if platform is None:
            raise LookupError(f"no platform serves {key}")
        return platform.sink(key)

    async def tell(self, key: ThreadKey, text: str) -> None:
        """Post a note of the bot's own into a thread nobody asked in just now; raises
        LookupError when no platform serves it, or what the platform raised."""
        await self._sink(key).render(single(Notice(text)))

    async def tell_interrupted(self, keys: Sequence[ThreadKey] | None = None) -> None:
        """Tell each thread whose answer a replica never finished (by default those the
        last run left, once platforms are up): the bot does not retry on its own, since
        the agent may have acted already. The approval cards their agents waited on are
        marked expired."""
        try:
            await self.approvals.expire_left()
        except Exception as exc:
            log.warning("could not expire the approvals left waiting: %s", exc)
        for key in self.interrupted if keys is None else keys:
            try:
                await self.tell(key, INTERRUPTED)
            except Exception as exc:
                log.warning("could not tell %s about its interrupted answer: %s", key, exc)

    def tell_interrupted_soon(self) -> None:
        """`tell_interrupted`, without holding up what comes next (new turns among it)."""
        self._spawn(self.tell_interrupted())

    async def stop_taking(self) -> None:
        """Shutting down: the other replicas hand this one nothing more, and what they
        handed it that it has not taken up goes to one of them."""
        await self.leases.leaving()
        handed = await self.journal.hand_back(self.leases.alive_since())
        if handed:
            log.info("handed %d messages back to another replica", handed)

    async def take_hand_overs(self) -> None:
        """From now on (the platforms are up), take up at once what other replicas hand
        over to this one (the scheduler's takeover job looks too, should a word be lost)."""

        def told(replica: str) -> None:
            if replica == self.leases.id:
                self._spawn(self.take_up())

        await self.store.listen(HANDED_OVER, told)
        await self.take_up()

    async def take_up(self) -> int:
        """Deliver again here the messages other replicas handed over to this one (its
        threads' sessions are live here), each once; how many."""
        pending = await self.journal.handed_over()
        self._taken_up &= {handed.turn_id for handed in pending}
        fresh = [handed for handed in pending if handed.turn_id not in self._taken_up]
        for handed in fresh:
            platform = self.platforms.get(handed.platform)
            if not isinstance(platform, Redelivering):
                log.warning("cannot deliver entry %d again: no %s here", handed.turn_id,
                            handed.platform)  # fmt: skip
                continue
            self._taken_up.add(handed.turn_id)
            self._spawn(platform.redeliver(handed.redo))
        return len(fresh)

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        """Run `work` on its own, holding on to it until it is done."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def troubles(self) -> dict[str, str]:
        """What keeps each platform from working fully while it serves."""
        return {n: p.trouble for n, p in self.platforms.items() if p.trouble is not None}

    def readiness(self) -> dict[str, bool]:
        """What /readyz checks: the runtimes, the store, and every platform's connection."""
        checks = {"runtime": self.runtimes.started, "store": self.store.is_open}
        checks.update({f"{name} connected": p.connected for name, p in self.platforms.items()})
        return checks

    async def close(self) -> None:
        self.scheduler.shutdown()
        await self.sessions.close()
        await self.runtimes.stop()
        try:
            await self.leases.leave()
        except Exception as exc:  # their leases lapse all the same
            log.warning("could not leave the replicas cleanly: %s", exc)
        await self.store.close()
        await self.model_source.stop()
