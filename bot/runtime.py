"""CopilotRuntime: one Copilot CLI process (a CopilotClient), and the session configuration.

Every session is created and resumed with the options built in `_session_options`, so
model, provider, system message, tools and permissions are decided in one place. Every
request to a runtime goes through here, and the SDK's errors become threadpilot's
(bot/errors.py) here and nowhere else. Which runtime serves a thread is the pool's
decision (bot/runtime_pool.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from copilot import CopilotClient, CopilotSession, RuntimeConnection
from copilot.rpc import PermissionDecisionApproveOnce, PermissionDecisionReject, SessionsForkRequest
from copilot.session_events import SessionEvent

from bot import compat
from bot.approvals import ApprovalRequest, Approver
from bot.config import SECRETS, Settings
from bot.errors import AgentRuntimeError, LeaseLost, RuntimeUnavailable, SessionNotFound
from bot.leases import Fence
from bot.profiles import ThreadProfile
from bot.sandbox import Sandbox, find_sandbox
from bot.session_files import SharedState
from bot.shell_tool import MOVED, shell_tool
from bot.tool_policy import ToolPolicy

log = logging.getLogger(__name__)
compat.install_fast_timestamps()

# Variables the CLI child must not inherit: the secrets (a GitHub token is passed to the
# SDK explicitly instead, which hands the CLI its own variable) and where their files are.
_PRIVATE_ENV = frozenset((*SECRETS, *(f"{name}_FILE" for name in SECRETS)))


class RuntimeStopped:
    """Put into the event queue of every turn in flight when the CLI process dies."""


RUNTIME_STOPPED = RuntimeStopped()
# Under a runtime's root: its session state, and its threads' working directories.
HOME_DIR = "copilot"
WORKSPACES_DIR = "workspaces"
_RESTART_BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@contextmanager
def _translated(session_id: str) -> Iterator[None]:
    """The SDK's errors of a request about `session_id`, as threadpilot's."""
    try:
        yield
    except compat.RpcError as exc:
        if compat.session_missing(exc):
            raise SessionNotFound(session_id) from exc
        raise AgentRuntimeError(f"the Copilot runtime refused a request: {exc.message}") from exc
    except RuntimeError as exc:
        if compat.session_missing(exc):
            raise SessionNotFound(session_id) from exc
        raise


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """A session as the runtime is to create or resume it: in `workspace`, the agent
    `profile` says, with `start_context` given to the agent at each of its starts, its
    state written under `fence` where replicas share it, what needs approval asked by
    `approve`."""

    session_id: str
    workspace: Path
    profile: ThreadProfile
    start_context: str | None = None
    fence: Fence | None = None
    approve: Approver | None = None  # asks the thread, for what the profile allows so
    # Sees every event of the session, from before it starts (its MCP servers' state).
    watch: Callable[[SessionEvent], None] | None = None
    # Raises LeaseLost once another replica has taken the thread over: its tools then
    # act no more here (a replica that froze past its lease wakes with a turn under way).
    confirm: Callable[[], Awaitable[None]] | None = None


@dataclass(frozen=True, slots=True)
class RuntimeLoad:
    """One runtime at a glance, for `status` and /metrics."""

    name: str
    up: bool
    pid: int | None
    rss_bytes: int | None
    live_sessions: int
    turns: int  # under way now
    restarts: int
    uptime_s: float | None  # since its CLI last started; None while down


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """What the CLI says of itself."""

    version: str
    protocol_version: int


async def _exit_code(process: subprocess.Popen[bytes]) -> int:
    """Wait for `process` to end, in a thread of its own: not in the default executor,
    which is small (cores + 4) and which the SDK needs for every request it writes; one
    thread held there per runtime starved it, and the bot hung, at six runtimes on two
    cores."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[int] = loop.create_future()

    def settle(code: int) -> None:
        if not ended.done():
            ended.set_result(code)

    def wait() -> None:
        code = process.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed first: nobody waits
            loop.call_soon_threadsafe(settle, code)

    threading.Thread(target=wait, name=f"wait-{process.pid}", daemon=True).start()
    return await ended


def auth_mode(settings: Settings) -> str:
    """How the runtime authenticates to its model, in words."""
    if settings.byok:
        return f"BYOK {settings.provider_type or 'openai'} at {settings.provider_base_url}"
    if settings.github_token:
        return "GitHub token"
    return "GitHub logged-in user"


def process_rss(pid: int) -> int | None:
    """Resident memory of a process in bytes (Linux /proc), None where unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _moved_on(confirm: Callable[[], Awaitable[None]] | None) -> Callable[[], Awaitable[bool]]:
    """Whether the thread has been taken over by another replica, by `confirm`."""

    async def moved() -> bool:
        try:
            if confirm is not None:
                await confirm()
        except LeaseLost:
            return True
        return False

    return moved


def _mcp_tool(request: Any) -> str | None:
    """An MCP tool's name as the model sees it (`<server>-<tool>`), for a request of one."""
    server, tool = getattr(request, "server_name", None), getattr(request, "tool_name", None)
    if not server or not tool:
        return None
    return str(tool) if str(tool).startswith(f"{server}-") else f"{server}-{tool}"


def _approval_request(request: Any, kind: str, target: str, workspace: Path) -> ApprovalRequest:
    """A permission request of the runtime's file, URL and MCP tools, as the thread is
    asked."""
    if kind == "mcp":
        arguments = json.dumps(getattr(request, "args", None) or {}, indent=1, ensure_ascii=False)
        return ApprovalRequest(target, f"using {target}", f"use {target}", arguments)
    if kind == "url":
        return ApprovalRequest("web_fetch", "fetching web pages", "fetch a web page", target)
    path = Path(target)
    shown = path.relative_to(workspace) if path.is_relative_to(workspace) else path
    if kind == "write":
        diff = getattr(request, "diff", None) or getattr(request, "new_file_contents", None)
        return ApprovalRequest("edit", "writing files", f"write to `{shown}`", diff or target)
    return ApprovalRequest("view", "reading files", f"read `{shown}`", target)


class CopilotRuntime:
    """One CLI process: `start()` it, `stop()` it; a supervisor restarts it if it dies.

    Its state (sessions) lives under `root`/copilot, or in the database with `shared`
    (replicas); its threads' working directories under `root`/workspaces; runtimes with
    the same root share them."""

    def __init__(
        self,
        settings: Settings,
        cli_path: Path,
        *,
        name: str = "0",
        root: Path | None = None,
        sandbox: Sandbox | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self.name = name
        self._shared = shared
        self._settings = settings
        self._cli_path = cli_path
        self._root = root or settings.data_dir
        self._sandbox = sandbox  # found at start when `bash` is enabled and none was given
        self._client: CopilotClient | None = None
        # Sessions this process holds live (created or resumed, not yet disconnected).
        self.live: set[str] = set()
        self.restarts = 0
        self._started_at = 0.0
        self._up = asyncio.Event()
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        self._watching: set[asyncio.Queue[Any]] = set()
        self.home = self._root / HOME_DIR
        self.workspaces = self._root / WORKSPACES_DIR

    @property
    def client(self) -> CopilotClient:
        if self._client is None:
            raise RuntimeUnavailable("the Copilot runtime is not running")
        return self._client

    @property
    def started(self) -> bool:
        return self._client is not None

    def _cli_env(self) -> dict[str, str]:
        settings = self._settings
        root = self._root.resolve()
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        # The CLI unpacks ~235 MB into its cache on first start; keep it with our data,
        # once for every runtime (it holds the CLI's own files, nobody's state).
        env["XDG_CACHE_HOME"] = str(settings.data_dir.resolve() / "cache")
        env["XDG_STATE_HOME"] = str(root / "state")
        env["XDG_CONFIG_HOME"] = str(root / "config")
        # The pinned CLI stays the one that runs.
        env["COPILOT_AUTO_UPDATE"] = "false"
        if settings.byok:
            # Offline mode: the CLI talks to nothing but the configured provider; unless
            # the operator enabled the URL tool, which offline mode takes away.
            if "web_fetch" not in settings.tools:
                env["COPILOT_OFFLINE"] = "true"
            env["COPILOT_PROVIDER_BASE_URL"] = str(settings.provider_base_url)
            env["COPILOT_MODEL"] = str(settings.model)
        return env

    def watch(self, queue: asyncio.Queue[Any]) -> None:
        """Tell `queue` (a turn's) with RUNTIME_STOPPED if the CLI process dies."""
        self._watching.add(queue)

    def unwatch(self, queue: asyncio.Queue[Any]) -> None:
        self._watching.discard(queue)

    @property
    def up(self) -> bool:
        return self._up.is_set()

    @property
    def turns(self) -> int:
        """Turns under way here: each watches the runtime while it runs."""
        return len(self._watching)

    def load(self) -> RuntimeLoad:
        pid = self._pid()
        return RuntimeLoad(
            name=self.name,
            up=self.up,
            pid=pid,
            rss_bytes=process_rss(pid) if pid else None,
            live_sessions=len(self.live),
            turns=self.turns,
            restarts=self.restarts,
            uptime_s=time.monotonic() - self._started_at if self.up else None,
        )

    async def wait_up(self) -> None:
        """Return once the runtime is up (it may be restarting after its CLI died)."""
        await self._up.wait()

    async def start(self) -> None:
        if "bash" in self._settings.tools and self._sandbox is None:
            self._sandbox = await find_sandbox(self._settings)
        if self._client is None:
            self._stopping = False
            await self._start_client()

    async def _start_client(self) -> None:
        settings = self._settings
        self.home.mkdir(parents=True, exist_ok=True)
        self.workspaces.mkdir(parents=True, exist_ok=True)
        client = CopilotClient(
            connection=RuntimeConnection.for_stdio(path=str(self._cli_path)),
            base_directory=str(self.home.resolve()),
            env=self._cli_env(),
            working_directory=str(self.workspaces.resolve()),
            log_level="warning",
            github_token=(
                settings.github_token.get_secret_value() if settings.github_token else None
            ),
            # Longer than ours: the bot retires idle sessions itself, before this fires.
            session_idle_timeout_seconds=2 * settings.idle_timeout_s,
            session_fs=self._shared.config if self._shared else None,
        )
        started = time.monotonic()
        await client.start()
        self._client = client
        self._started_at = time.monotonic()
        self._up.set()
        self._supervisor = asyncio.create_task(self._supervise(client))
        log.info(
            "copilot runtime %s started in %.1fs (%s, pid %s)",
            self.name,
            self._started_at - started,
            self._cli_path,
            self._pid(),
        )
        if not settings.byok and not (await client.get_auth_status()).isAuthenticated:
            log.warning(
                "the Copilot runtime has no GitHub credentials: turns will fail until "
                "GITHUB_TOKEN or a BYOK provider (THREADPILOT_PROVIDER_BASE_URL) is set"
            )

    async def stop(self) -> None:
        self._stopping = True
        client, self._client = self._client, None
        self._up.clear()
        self.live.clear()
        if client is not None:
            await client.stop()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor

    async def _supervise(self, client: CopilotClient) -> None:
        """Wait for the CLI process to end; if nobody asked it to, restart it."""
        process = compat.cli_process(client)
        if process is None:
            return
        code = await _exit_code(process)
        if self._stopping or self._client is not client:
            return
        log.error(
            "the Copilot CLI of runtime %s stopped unexpectedly (exit code %s): restarting it",
            self.name,
            code,
        )
        self._client = None
        self._up.clear()
        self.live.clear()
        self.restarts += 1
        for queue in self._watching:
            queue.put_nowait(RUNTIME_STOPPED)
        with contextlib.suppress(Exception):  # it is gone; release what the SDK holds
            await client.force_stop()
        for attempt in itertools.count():
            await asyncio.sleep(_RESTART_BACKOFF_S[min(attempt, len(_RESTART_BACKOFF_S) - 1)])
            if self._stopping:
                return
            try:
                await self._start_client()
            except Exception:
                log.exception("restarting the Copilot CLI failed (attempt %d)", attempt + 1)
            else:
                return

    def _pid(self) -> int | None:
        process = compat.cli_process(self._client)
        return process.pid if process is not None else None

    async def info(self) -> RuntimeInfo:
        status = await self.client.get_status()
        return RuntimeInfo(version=status.version, protocol_version=status.protocol_version)

    def _session_options(self, spec: SessionSpec, tools: bool) -> dict[str, Any]:
        settings = self._settings
        workspace, start_context, profile = spec.workspace, spec.start_context, spec.profile
        policy = ToolPolicy(
            profile.tools, settings.url_allowed_hosts, profile.writable, profile.ask
        )
        ratio = settings.context_reset_ratio
        approve = spec.approve
        moved = _moved_on(spec.confirm)

        async def on_permission(request: Any, _invocation: Any) -> Any:
            if await moved():
                return PermissionDecisionReject(feedback=MOVED)
            kind = str(getattr(request, "kind", "unknown"))
            target = (
                getattr(request, "path", None)
                or getattr(request, "file_name", None)
                or getattr(request, "url", None)
                or _mcp_tool(request)
            )
            verdict = await policy.verdict(kind, target, workspace)
            if verdict == "ask" and approve is not None:
                refusal = await approve(_approval_request(request, kind, str(target), workspace))
                if refusal is None:
                    return PermissionDecisionApproveOnce()
                return PermissionDecisionReject(feedback=refusal)
            if verdict == "allow":
                return PermissionDecisionApproveOnce()
            log.warning("denied %s permission request (%s) in %s", kind, target or "-", workspace)
            return PermissionDecisionReject(feedback="Not permitted by this bot's tool policy.")

        options: dict[str, Any] = {
            "on_permission_request": on_permission,
            "model": profile.model,
            # Replace mode: the CLI's own 21 kB coding-agent prompt is not for a chat bot.
            # Only the operator's words are system text.
            "system_message": {"mode": "replace", "content": profile.system_prompt},
            "available_tools": list(dict.fromkeys(profile.tools + profile.ask)) if tools else [],
            "working_directory": str(workspace),
            "streaming": True,
            # The runtime compacts only above the fill at which the bot itself summarizes
            # and resets (THREADPILOT_CONTEXT_RESET_RATIO), so it normally never does.
            "infinite_sessions": {
                "enabled": True,
                "background_compaction_threshold": ratio + (1 - ratio) / 2,
                "buffer_exhaustion_threshold": ratio + (1 - ratio) * 0.8,
            },
        }
        if spec.watch is not None:
            options["on_event"] = spec.watch
        if tools and profile.mcp_servers:
            options["mcp_servers"] = {n: s.to_sdk() for n, s in profile.mcp_servers.items()}
        if self._shared is not None:
            shared, fence = self._shared, spec.fence
            options["create_session_fs_handler"] = lambda session: shared.files(
                session.session_id, fence
            )
        if tools and "bash" in options["available_tools"]:
            if self._sandbox is None:  # enabled by a profile reloaded since the start
                log.warning("bash is left out: it needs the sandbox, found only at start")
                options["available_tools"].remove("bash")
            else:
                asks = "bash" not in profile.tools  # allowed only with approval
                options["tools"] = [
                    shell_tool(self._sandbox, workspace, settings.shell_timeout_s,
                               profile.writable, moved=moved,
                               approve=approve if asks else None)
                ]  # fmt: skip
        if start_context:
            # The runtime asks for this at every start, resumes included, and keeps none of
            # it: the right place for what must be said the same way each time.
            def on_session_start(_input: Any, _invocation: Any) -> dict[str, str]:
                return {"additionalContext": start_context}

            options["hooks"] = {"on_session_start": on_session_start}
        if profile.provider is not None:
            options["provider"] = profile.provider.to_sdk()
        return options

    async def create(self, spec: SessionSpec, *, tools: bool = True) -> CopilotSession:
        """A new session, live here until `disconnect`; `tools=False` leaves out every
        tool (THREADPILOT_TOOLS too)."""
        options = self._session_options(spec, tools)
        with _translated(spec.session_id):
            session = await self.client.create_session(session_id=spec.session_id, **options)
        self.live.add(spec.session_id)
        return session

    async def resume(self, spec: SessionSpec) -> CopilotSession:
        """A persisted session, live here until `disconnect`."""
        options = self._session_options(spec, True)
        with _translated(spec.session_id):
            session = await self.client.resume_session(spec.session_id, **options)
        self.live.add(spec.session_id)
        return session

    async def disconnect(self, session: CopilotSession) -> None:
        """Release a live session (its state stays on disk, to resume anywhere)."""
        try:
            await session.disconnect()
        except Exception as exc:  # already gone in the runtime: nothing left to release
            log.debug("disconnecting %s: %s", session.session_id, exc)
        finally:
            self.live.discard(session.session_id)

    async def send(
        self, session: CopilotSession, prompt: str, attachments: Sequence[dict[str, Any]]
    ) -> str:
        """Send a message on a live session; the id of the message."""
        with _translated(session.session_id):
            return await session.send(
                prompt,
                attachments=list(attachments) or None,  # type: ignore[arg-type]
            )

    async def fork(self, session_id: str, to_event_id: str | None = None) -> str:
        """Copy a session's persisted history (before `to_event_id`) into a new session."""
        if self._shared is not None:
            try:
                return await self._shared.fork(session_id, to_event_id)
            except FileNotFoundError as exc:
                raise SessionNotFound(session_id) from exc
        with _translated(session_id):
            result = await self.client.rpc.sessions.fork(
                SessionsForkRequest(session_id=session_id, to_event_id=to_event_id)
            )
        return result.session_id

    async def delete(self, session_id: str) -> None:
        if self._shared is not None:
            try:
                return await self._shared.delete(session_id)
            except FileNotFoundError as exc:
                raise SessionNotFound(session_id) from exc
        with _translated(session_id):
            await self.client.delete_session(session_id)
