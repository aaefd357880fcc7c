"""The errors threadpilot raises on purpose, in one tree.

    ThreadpilotError
    ├── ConfigError            a setting is missing or invalid (names the variable)
    ├── CannotStart            something `threadpilot` needs to start is missing
    │   ├── CliNotFound        the pinned Copilot CLI
    │   └── LocalModelUnavailable  the embedded model
    ├── AgentRuntimeError      the Copilot runtime failed a request
    │   ├── RuntimeUnavailable its CLI process stopped and is being restarted
    │   └── SessionNotFound    it holds no such session (never saved, deleted, dropped)
    ├── StoreError             the database refused a read or a write
    ├── LeaseLost              another replica took over the thread this one was answering
    ├── PlatformError          a chat platform would not hand something over
    │   ├── FileUnavailable    an attached file
    │   │   └── FileRefused    one the bot will not download (kept outside the platform)
    │   ├── ThreadUnreadable   a thread's messages
    │   └── CannotOpenThread   room for a new thread (a DM has none)
    └── UnknownMessage         a platform message the journal has no record of

Library errors are translated where they arise, and nowhere else: the Copilot SDK's in
bot/runtime.py (through bot/compat.py), SQLite's in bot/store.py, each platform
library's in its adapter. The router turns error classes into the words people read.
"""

from __future__ import annotations


class ThreadpilotError(Exception):
    """Anything threadpilot raises on purpose; the message is written for its reader."""


class ConfigError(ThreadpilotError):
    """A setting is missing or invalid; the message names the variable."""


class CannotStart(ThreadpilotError):
    """Something the bot needs to start is missing; the message says how to get it."""


class CliNotFound(CannotStart):
    """The pinned Copilot CLI is not installed where the bot looks for it."""


class LocalModelUnavailable(CannotStart):
    """The `local` extra or the model file is not installed, or the server did not start."""


class CannotConnect(CannotStart):
    """A chat platform refused the bot's tokens, or could not be reached, at start."""


class AgentRuntimeError(ThreadpilotError):
    """The Copilot runtime failed a request."""


class RuntimeUnavailable(AgentRuntimeError):
    """The CLI process stopped unexpectedly and is being restarted."""


class SessionNotFound(AgentRuntimeError):
    """The runtime holds no such session: never persisted, deleted, or dropped by it."""


class StoreError(ThreadpilotError):
    """The database refused a read or a write (a full disk, say); nothing was written."""


class LeaseLost(ThreadpilotError):
    """This replica no longer owns the thread (it stalled past its lease, and another
    took the thread over): whatever it was doing there must leave no trace."""


class PlatformError(ThreadpilotError):
    """A chat platform would not hand something over (gone, refused, unreachable, rate
    limited): adapters raise these rather than their client library's errors."""


class FileUnavailable(PlatformError):
    """An attached file could not be downloaded."""


class FileRefused(FileUnavailable):
    """An attached file the bot will not download, e.g. one kept outside the platform,
    where its token must not go; the message says why, for the person who sent it."""


class ThreadUnreadable(PlatformError):
    """A thread's messages could not be read."""


class CannotOpenThread(PlatformError):
    """There is no room for a new thread next to this one (a DM); the message is shown
    to the person who asked."""


class UnknownMessage(ThreadpilotError, LookupError):
    """A platform message this thread's journal does not know (or no longer does)."""
