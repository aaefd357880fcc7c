"""ToolPolicy: which built-in agent tools a session gets, and which permission requests pass.

Everything is off unless THREADPILOT_TOOLS (or the thread's profile, bot/profiles.py)
names it. A permission request is allowed only when a tool that needs it is enabled, or
asked in the thread when the profile allows it with approval; file access only inside
the thread's working directory (and writes only where it is writable); a
URL only over https to a public address (after resolving its name), unless the operator
allows its host (THREADPILOT_URL_ALLOWED_HOSTS). The runtime's own block list is not
enough: it lets `http://[::]:PORT/` through to this machine.

Shell commands never ask here: `bash` is threadpilot's own tool, run in a sandbox
(bot/shell_tool.py), so a shell request from any built-in tool is refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Permission request kind -> the built-in tools that raise it.
_TOOLS_BY_KIND: dict[str, frozenset[str]] = {
    "write": frozenset({"edit", "create"}),
    "read": frozenset({"view", "grep", "glob"}),
    "url": frozenset({"web_fetch"}),
}
# Built-in tools that run processes outside the sandbox: never offered.
UNSANDBOXED_TOOLS = frozenset({"write_bash", "read_bash", "stop_bash", "list_bash"})


def sandboxed(tools: tuple[str, ...]) -> tuple[str, ...]:
    """`tools`, if none of them would run processes outside the sandbox (a validator of
    THREADPILOT_TOOLS and of a profile's tools)."""
    unsandboxed = sorted(UNSANDBOXED_TOOLS.intersection(tools))
    if unsandboxed:
        raise ValueError(
            f"{', '.join(unsandboxed)} would run commands outside the sandbox; "
            "`bash` runs them inside it"
        )
    return tools


Verdict = Literal["allow", "ask", "deny"]


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    tools: tuple[str, ...]  # allowed without asking
    allowed_hosts: frozenset[str] = frozenset()  # fetched over http or privately too
    writable: bool = True  # whether the working directory may be written to
    ask: tuple[str, ...] = ()  # allowed once someone approves, in the thread

    async def verdict(self, kind: str, target: str | None, workspace: Path) -> Verdict:
        """Whether a permission request of `kind` (touching `target`, a path or a URL, if
        any) may proceed, must be approved first, or may not. An approval only widens
        which tools the agent may use: a path outside the working directory, or a URL
        to this machine or a private network, is refused all the same."""
        if kind == "mcp":  # `target` is the tool, as the model sees it: <server>-<tool>
            return "allow" if target in self.tools else "ask" if target in self.ask else "deny"
        needed = _TOOLS_BY_KIND.get(kind)
        if not needed or target is None:
            return "deny"
        if not needed.isdisjoint(self.tools):
            verdict: Verdict = "allow"
        elif not needed.isdisjoint(self.ask):
            verdict = "ask"
        else:
            return "deny"
        if kind == "write" and not self.writable:
            return "deny"
        if kind == "url":
            return verdict if await self._reachable(target) else "deny"
        return verdict if _inside(target, workspace) else "deny"

    async def _reachable(self, url: str) -> bool:
        try:
            parts = urllib.parse.urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:  # a malformed address or port
            return False
        if not host:
            return False
        if host.lower() in self.allowed_hosts:
            return parts.scheme in ("http", "https")
        if parts.scheme != "https":
            return False
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port or 443, type=socket.SOCK_STREAM
            )
        except OSError:  # the fetch could not resolve it either
            return False
        return bool(found) and all(_public(str(info[4][0])) for info in found)


def _inside(path: str, workspace: Path) -> bool:
    return (workspace / path).resolve().is_relative_to(workspace.resolve())


def _public(address: str) -> bool:
    """Whether an address is on the public internet: not this machine, a private or
    link-local network (the cloud metadata service), multicast or unspecified."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # no IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast
