"""ThreadKey: which chat thread a message belongs to, and the safe session ids derived from it."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

# Components that stay readable: alphanumerics separated by single dots, like a Slack ts.
_PLAIN = re.compile(r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*")
_PLAIN_MAX = 40
_ALNUM = re.compile(r"[^A-Za-z0-9]")


def encode_component(value: str) -> str:
    """Encode one key component into `[A-Za-z0-9_]`, injectively.

    The runtime accepts only `[A-Za-z0-9_-]` in session ids and turns them into directory
    names, so nothing from outside is passed through. Plain values keep their shape ('.'
    becomes '_'); anything else becomes '_' + a readable hint + '_' + a hash of the whole
    value. Plain encodings never start with '_', so the two forms cannot collide, and no
    encoding contains '-', which therefore separates components unambiguously.
    """
    if len(value) <= _PLAIN_MAX and _PLAIN.fullmatch(value):
        return value.replace(".", "_")
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    tag = base64.b32encode(digest).decode("ascii")[:24].lower()
    hint = _ALNUM.sub("", value)[:12]
    return f"_{hint}_{tag}"


# The workspace of a conversation that belongs to no server: a Discord DM.
NO_SERVER = "@me"


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """(platform, workspace, channel, thread): Slack team/channel/thread_ts, Discord
    guild/parent channel/thread id, or a DM channel for both."""

    platform: str
    workspace: str
    channel: str
    thread: str

    def __post_init__(self) -> None:
        if not self.platform.isalnum() or not self.platform.islower():
            raise ValueError(f"platform must be a lowercase word, got {self.platform!r}")

    @property
    def slug(self) -> str:
        """Stable, filesystem-safe name of the thread (at most ~150 characters)."""
        parts = (self.workspace, self.channel, self.thread)
        return "-".join([self.platform, *(encode_component(part) for part in parts)])

    def session_id(self, generation: int) -> str:
        """The runtime session id of this thread's `generation`-th session."""
        return f"{self.slug}-g{generation}"

    def __str__(self) -> str:
        return f"{self.platform}/{self.workspace}/{self.channel}/{self.thread}"
