"""ToolPolicy: which built-in agent tools a session gets, and which permission requests pass.

Everything is off unless THREADPILOT_TOOLS names it. A permission request is allowed only
when a tool that needs it is enabled, and file access only inside the thread's workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Permission request kind -> the built-in tools that raise it.
_TOOLS_BY_KIND: dict[str, frozenset[str]] = {
    "shell": frozenset({"bash"}),
    "write": frozenset({"edit", "create"}),
    "read": frozenset({"view", "grep", "glob"}),
    "url": frozenset({"web_fetch"}),
}


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    tools: tuple[str, ...]

    def allows(self, kind: str, path: str | None, workspace: Path) -> bool:
        """Whether a permission request of `kind` (touching `path`, if any) may proceed."""
        needed = _TOOLS_BY_KIND.get(kind)
        if not needed or needed.isdisjoint(self.tools):
            return False
        if kind in ("read", "write"):
            if path is None:
                return False
            target = (workspace / path).resolve()
            return target.is_relative_to(workspace.resolve())
        return True
