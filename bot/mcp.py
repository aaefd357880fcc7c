"""MCP servers a profile gives its threads' agents (`mcp_servers:` in bot/profiles.py).

    mcp_servers:
      facts:                          # its tools reach the agent as facts-<tool>
        command: /opt/facts/server    # a local server on stdio (or url: for http/sse)
        args: [--readonly]
        env: {FACTS_DB: /srv/facts.db}
    ask: [facts-lookup]               # under the same rules as every tool

The runtime starts a profile's servers with each session (the SDK's `mcp_servers`).
Their tools are the agent's only where the profile's `tools` or `ask` names them, as
the model sees them: `<server>-<tool>`. A server that fails is told in each thread that
meets it, once, and shown in `status`; `threadpilot doctor` starts each local server and
checks it answers the MCP handshake. Servers are the operator's own programs: they run
beside the runtime, not in the command sandbox, with what `env` gives them and no secret
of the bot's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from bot.thread_key import ThreadKey

log = logging.getLogger(__name__)

_HANDSHAKE_S = 10.0


class McpServer(BaseModel):
    """One server, as the profiles file gives it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    url: str | None = None
    type: Literal["http", "sse"] = "http"  # of a server at a URL
    headers: dict[str, str] = {}
    timeout_ms: int | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give a server either a command (on stdio) or a url")
        return self

    def to_sdk(self) -> dict[str, Any]:
        """The SDK's configuration of it; every tool of it, the session's tool list
        choosing which the agent gets."""
        config: dict[str, Any] = {"tools": ["*"]}
        if self.command is not None:
            config.update(type="local", command=self.command, args=list(self.args), env=self.env)
        else:
            config.update(type=self.type, url=self.url, headers=self.headers)
        if self.timeout_ms is not None:
            config["timeout"] = self.timeout_ms
        return config


@dataclass(frozen=True, slots=True)
class ServerState:
    name: str
    status: str  # pending, connected, failed, ...
    error: str | None
    at: float


class McpHealth:
    """What the servers last said of themselves, and which threads were told of a
    failure (each once)."""

    def __init__(self, tell: Callable[[ThreadKey, str], Awaitable[None]]) -> None:
        self._tell = tell
        self.servers: dict[str, ServerState] = {}
        self._told: set[tuple[ThreadKey, str]] = set()
        self._telling: set[asyncio.Task[None]] = set()

    def report(self, key: ThreadKey, server: str, status: str, error: str | None) -> None:
        """A session of `key`'s thread saw `server` reach `status`."""
        self.servers[server] = ServerState(server, status, error, time.time())
        if status != "failed":
            return
        log.warning("MCP server %s failed in %s: %s", server, key, error)
        if (key, server) in self._told:
            return
        self._told.add((key, server))
        text = (
            f"The tool server `{server}` failed to start, so its tools are not available "
            f"here: {error or 'no reason given'}. An admin can see it in `status`."
        )
        task = asyncio.create_task(self._say(key, text))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def _say(self, key: ThreadKey, text: str) -> None:
        try:
            await self._tell(key, text)
        except Exception as exc:
            log.warning("could not tell %s that an MCP server failed: %s", key, exc)

    def lines(self) -> list[str]:
        """For `status`: each server seen, with its last state."""
        return [
            f"  {s.name}: {s.status}" + (f" ({s.error})" if s.error else "")
            for s in sorted(self.servers.values(), key=lambda s: s.name)
        ]


async def probe(server: McpServer) -> str | None:
    """Start a local server and ask it the MCP handshake; why it failed, or None.
    (A server at a URL is the network's to check: None.)"""
    if server.command is None:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            server.command,
            *server.args,
            env=server.env or None,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return f"cannot start {server.command}: {exc.strerror}"
    assert process.stdin is not None and process.stdout is not None
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "threadpilot-doctor", "version": "1"}}}  # fmt: skip
    try:
        process.stdin.write((json.dumps(hello) + "\n").encode())
        await process.stdin.drain()
        async with asyncio.timeout(_HANDSHAKE_S):
            line = await process.stdout.readline()
        answer = json.loads(line) if line.strip() else None
    except (TimeoutError, OSError, ValueError):
        answer = None
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        _, stderr = await process.communicate()
    if isinstance(answer, dict) and "result" in answer:
        return None
    said = stderr.decode(errors="replace").strip().splitlines()
    return "it did not answer the MCP handshake" + (f": {said[-1]}" if said else "")
