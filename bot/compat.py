"""Where threadpilot leans on the Copilot SDK's internals, in one place.

The SDK (github-copilot-sdk, pinned in pyproject.toml) offers no public way to do these;
each is a seam with a test of its own in tests/test_compat.py, which fails by name when
an upgrade moves it:

- `RpcError`: the SDK exports no type for a failed request (`copilot._jsonrpc`).
- `session_missing`: every failed request comes back as JSON-RPC code -32603, so only the
  text tells a missing session apart ("Session not found" from requests, "Session file
  not found" from `delete_session`, which raises a plain RuntimeError).
- `cli_process`: the CLI child process the client keeps private, for supervision, its
  pid and its memory.
- `install_fast_timestamps`: the generated event decoders parse every timestamp with
  dateutil, ~0.24 ms a call and ~9 ms of CPU per turn (each turn is ~30 events), all of
  it on the event loop; the runtime sends RFC 3339, which the standard library parses
  ~40x faster (anything else still goes to dateutil).

The chat libraries' internals stay with their adapters (discord.py's REST and gateway
URLs in adapters/discord/adapter.py), since the core never imports them.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from typing import Any

import copilot.generated.rpc as _rpc
import copilot.generated.session_events as _events
import dateutil.parser
from copilot import CopilotClient
from copilot._jsonrpc import JsonRpcError as RpcError

__all__ = ["RpcError", "cli_process", "install_fast_timestamps", "session_missing"]


def session_missing(exc: BaseException) -> bool:
    """Whether an SDK error says the session does not exist."""
    if isinstance(exc, RpcError):
        text = exc.message
    elif isinstance(exc, RuntimeError):
        text = str(exc)
    else:
        return False
    # The last: what `sessions.fork` says of a session it cannot find.
    missing = ("Session not found", "Session file not found", "no persisted or in-memory events")
    return any(words in text for words in missing)


def cli_process(client: CopilotClient | None) -> subprocess.Popen[bytes] | None:
    """The client's CLI child process, while it has one."""
    process = getattr(client, "_process", None)
    return process if isinstance(process, subprocess.Popen) else None


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"timestamp must be a string, got {type(value).__name__}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return dateutil.parser.parse(value)


def install_fast_timestamps() -> None:
    """Make the SDK's generated decoders parse timestamps with `parse_timestamp`."""
    for module in (_events, _rpc):
        if not hasattr(module, "from_datetime"):
            raise RuntimeError(f"{module.__name__} no longer has from_datetime: see bot/compat.py")
        setattr(module, "from_datetime", parse_timestamp)  # noqa: B010
