"""RuntimePool: the bot's Copilot CLI processes, and which one serves each thread.

The CLI is one process; to use every core the bot runs THREADPILOT_RUNTIMES of them.

- shared (THREADPILOT_RUNTIME_ISOLATION, the default): all runtimes share one state
  directory, so any of them can resume any session.
- with a database URL (replicas), the state of every session is in the database
  (bot/session_files.py): any runtime of any replica can resume any session.
- tenant: each tenant (a Slack workspace, a Discord server, a Discord DM) gets runtimes of
  its own, with their own state and working directories under `tenants/<tenant>/`. They
  start at the tenant's first message and stop when they held no session for
  THREADPILOT_TENANT_IDLE_S.

A session is live in at most one runtime: the one that created or resumed it, until it is
disconnected (two CLIs holding one session both append to its history, which forks). The
session manager keeps one handle per thread; `holders` lets anyone check the invariant.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from bot.clock import Clock, system_clock
from bot.config import Settings
from bot.errors import RuntimeUnavailable
from bot.runtime import (
    HOME_DIR,
    WORKSPACES_DIR,
    CopilotRuntime,
    RuntimeInfo,
    RuntimeLoad,
    auth_mode,
)
from bot.sandbox import Sandbox, find_sandbox
from bot.session_files import SharedState
from bot.thread_key import NO_SERVER, ThreadKey, encode_component

log = logging.getLogger(__name__)

SHARED = ""  # the tenant of every thread when runtimes are shared


@dataclass(eq=False)
class _Tenant:
    """One tenant's runtimes, sharing its state directory."""

    runtimes: list[CopilotRuntime]
    last_used: float
    starting: asyncio.Task[None] | None = None
    started: bool = False

    @property
    def idle(self) -> bool:
        return all(not r.live and not r.turns for r in self.runtimes)


class RuntimePool:
    def __init__(
        self,
        settings: Settings,
        cli_path: Path,
        clock: Clock = system_clock,
        shared: SharedState | None = None,
    ) -> None:
        self._settings = settings
        self._shared = shared
        self._cli_path = cli_path
        self._clock = clock
        self._sandbox: Sandbox | None = None
        self._tenants: dict[str, _Tenant] = {}
        self._started = False

    @property
    def isolated(self) -> bool:
        return self._settings.runtime_isolation == "tenant"

    def tenant(self, key: ThreadKey) -> str:
        """The tenant whose runtimes serve `key`'s thread."""
        if not self.isolated:
            return SHARED
        # A DM belongs to no server: each is a tenant of its own.
        owner = key.channel if key.workspace == NO_SERVER else key.workspace
        return f"{key.platform}-{encode_component(owner)}"

    @property
    def started(self) -> bool:
        """Whether the pool serves: started, and (shared) a runtime up."""
        if not self._started:
            return False
        return self.isolated or any(r.up for r in self.runtimes())

    def runtimes(self) -> list[CopilotRuntime]:
        return [r for t in self._tenants.values() for r in t.runtimes]

    async def start(self, shell: bool = False) -> None:
        """`begin`, then wait until the shared runtimes are up (`ready`)."""
        await self.begin(shell)
        await self.ready()

    async def begin(self, shell: bool = False) -> None:
        """Find the sandbox if `bash` is enabled by the settings or (`shell`) a profile
        (once, so a missing one stops the bot now, not at a tenant's first message) and,
        when shared, start every runtime without waiting: a turn waits for its runtime
        (`place`)."""
        if shell or "bash" in self._settings.tools:
            self._sandbox = await find_sandbox(self._settings)
        self._started = True
        if not self.isolated:
            self._starting(self._tenant(SHARED))

    async def ready(self) -> None:
        """Wait until the shared runtimes have started; raise what kept them from it."""
        if not self.isolated:
            await self._ready(self._tenant(SHARED))

    async def stop(self) -> None:
        self._started = False
        tenants, self._tenants = list(self._tenants.values()), {}
        await asyncio.gather(*(self._stop_tenant(t) for t in tenants))

    def _root(self, tenant: str) -> Path:
        """Where a tenant's state and working directories live."""
        data = self._settings.data_dir
        return data / "tenants" / tenant if tenant else data

    def _tenant(self, name: str) -> _Tenant:
        tenant = self._tenants.get(name)
        if tenant is None:
            root = self._root(name)
            runtimes = [
                CopilotRuntime(
                    self._settings,
                    self._cli_path,
                    name=f"{name}/{i}" if name else str(i),
                    root=root,
                    sandbox=self._sandbox,
                    shared=self._shared,
                )
                for i in range(self._settings.runtimes)
            ]
            tenant = _Tenant(runtimes, self._clock())
            self._tenants[name] = tenant
        return tenant

    def _starting(self, tenant: _Tenant) -> asyncio.Task[None]:
        """The start of the tenant's runtimes: one, however many wait for it."""
        if tenant.starting is None:
            tenant.starting = asyncio.create_task(self._start_tenant(tenant))
        return tenant.starting

    async def _ready(self, tenant: _Tenant) -> None:
        """Start the tenant's runtimes unless they are, and wait until they are."""
        if tenant.started:
            return
        starting = self._starting(tenant)
        try:
            await asyncio.shield(starting)
        except BaseException:
            if starting.done() and tenant.starting is starting:
                tenant.starting = None  # a failed start is tried again by the next caller
            raise

    async def _start_tenant(self, tenant: _Tenant) -> None:
        first, *others = tenant.runtimes
        # The first start unpacks the CLI into the shared cache; the others reuse it.
        await first.start()
        results = await asyncio.gather(*(r.start() for r in others), return_exceptions=True)
        for runtime, result in zip(others, results, strict=True):
            if isinstance(result, BaseException):
                # It is supervised only once started: serve with the others meanwhile.
                log.error("runtime %s did not start: %s", runtime.name, result)
        tenant.started = True

    async def _stop_tenant(self, tenant: _Tenant) -> None:
        if tenant.starting is not None and not tenant.starting.done():
            tenant.starting.cancel()
        await asyncio.gather(*(r.stop() for r in tenant.runtimes), return_exceptions=True)

    async def place(self, key: ThreadKey) -> CopilotRuntime:
        """The runtime a session of `key`'s thread is to go live in, or that is to fork or
        delete one of its sessions: of its tenant, up, with the fewest turns under way
        (ties broken by a stable hash of the thread). With none up, one is waited for, up
        to the turn timeout."""
        tenant = self._tenant(self.tenant(key))
        tenant.last_used = self._clock()
        await self._ready(tenant)
        up = await self._up(tenant)
        fewest = min(r.turns for r in up)
        tied = [r for r in up if r.turns == fewest]
        digest = hashlib.sha256(key.slug.encode()).digest()
        return tied[int.from_bytes(digest[:4], "big") % len(tied)]

    async def _up(self, tenant: _Tenant) -> list[CopilotRuntime]:
        up = [r for r in tenant.runtimes if r.up]
        if up:
            return up
        timeout_s = self._settings.turn_timeout_s
        waits = [asyncio.create_task(r.wait_up()) for r in tenant.runtimes]
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        up = [r for r in tenant.runtimes if r.up]
        if not up:
            raise RuntimeUnavailable(f"no Copilot runtime is up after {timeout_s:g}s")
        return up

    def holders(self, session_id: str) -> list[str]:
        """The runtimes holding `session_id` live: never more than one."""
        return [r.name for r in self.runtimes() if session_id in r.live]

    def loads(self) -> list[RuntimeLoad]:
        return [r.load() for r in self.runtimes()]

    async def info(self) -> RuntimeInfo | None:
        """Version and the like, from the first runtime that is up."""
        for runtime in self.runtimes():
            if runtime.up:
                return await runtime.info()
        return None

    @property
    def auth_mode(self) -> str:
        return auth_mode(self._settings)

    async def stop_idle(self) -> list[str]:
        """Stop the runtimes of tenants that held no session and ran no turn for
        THREADPILOT_TENANT_IDLE_S; the tenants stopped."""
        if not self.isolated:
            return []
        cutoff = self._clock() - self._settings.tenant_idle_s
        stopped = [name for name, t in self._tenants.items() if t.idle and t.last_used < cutoff]
        # Forgotten before any await, so a message arriving meanwhile starts them afresh.
        tenants = [self._tenants.pop(name) for name in stopped]
        await asyncio.gather(*(self._stop_tenant(t) for t in tenants))
        if stopped:
            log.info("stopped the runtimes of %d idle tenants", len(stopped))
        return stopped

    def home(self, key: ThreadKey) -> Path:
        """The state directory of the runtimes that serve `key`'s thread."""
        return self._root(self.tenant(key)) / HOME_DIR

    def workspace(self, key: ThreadKey) -> Path:
        """The thread's own working directory: tools never see another thread's files."""
        path = self._root(self.tenant(key)) / WORKSPACES_DIR / key.slug
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()

    def remove_workspace(self, key: ThreadKey) -> bool:
        """Delete a thread's working directory, if it has one; whether it did."""
        path = self._root(self.tenant(key)) / WORKSPACES_DIR / key.slug
        if not path.is_dir():
            return False
        shutil.rmtree(path)
        return True

    def scratch_workspace(self, key: ThreadKey) -> Path:
        """The working directory of `key`'s tenant's sessions that belong to no thread and
        have no tools (a slug starts with a platform name, so none is called this)."""
        path = self._root(self.tenant(key)) / WORKSPACES_DIR / "_scratch"
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
