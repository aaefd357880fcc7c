"""The agent's `bash` tool: threadpilot's own, in place of the runtime's built-in one, so
that every command runs in the thread's sandbox (bot/sandbox.py) and nowhere else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from copilot.tools import Tool, ToolInvocation, ToolResult

from bot.approvals import ApprovalRequest, Approver
from bot.sandbox import Sandbox

NAME = "bash"
# What a tool says once the thread is answered by another replica (bot/runtime.py).
MOVED = "This conversation is now answered elsewhere: do nothing more here."
_DESCRIPTION = (
    "Run a bash command in this conversation's working directory and return its output. "
    "Only that directory and the system's programs are there; files you write stay for "
    "later commands. {network}"
)


def shell_tool(
    sandbox: Sandbox,
    workspace: Path,
    timeout_s: float,
    writable: bool,
    *,
    moved: Callable[[], Awaitable[bool]],
    approve: Approver | None = None,
) -> Tool:
    """The tool; no command runs once `moved()` says another replica answers the thread;
    with `approve`, each runs only once someone approved it in the thread (the profile
    allows bash with approval)."""

    async def run(invocation: ToolInvocation) -> ToolResult:
        arguments = invocation.arguments if isinstance(invocation.arguments, dict) else {}
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            return ToolResult(
                text_result_for_llm="Give the command to run as `command`.",
                result_type="failure",
            )
        if await moved():
            return ToolResult(text_result_for_llm=MOVED, result_type="denied")
        if approve is not None:
            refusal = await approve(ApprovalRequest(NAME, "running commands", "run a command",
                                                    command))  # fmt: skip
            if refusal is not None:
                return ToolResult(text_result_for_llm=refusal, result_type="denied")
        result = await sandbox.run(command, workspace, timeout_s, writable)
        if result.exit_code is None:
            return ToolResult(
                text_result_for_llm=f"{result.output}\n[stopped: still running after "
                f"{timeout_s:g} s]",
                result_type="timeout",
            )
        if result.exit_code != 0:
            return ToolResult(
                text_result_for_llm=f"{result.output}\n[exit code {result.exit_code}]",
                result_type="failure",
            )
        return ToolResult(text_result_for_llm=result.output or "(no output)")

    network = "The network is reachable." if sandbox.network else "There is no network."
    readonly = "" if writable else " The directory is read-only."
    return Tool(
        name=NAME,
        description=_DESCRIPTION.format(network=network) + readonly,
        parameters={
            "type": "object",
            "properties": {"command": {"type": "string", "description": "The command."}},
            "required": ["command"],
        },
        handler=run,
        overrides_built_in_tool=True,
        # The sandbox is the guard: there is nothing left for a permission request to ask.
        skip_permission=True,
    )
