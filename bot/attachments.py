"""Attachments: which files people send reach the agent, and how.

Text files and images are accepted up to THREADPILOT_MAX_ATTACHMENT_BYTES; text is
inlined into the prompt by the runtime, images go to the model as images. Anything
else gets a polite note instead. Files are only downloaded (by the adapter that knows
how) once they have passed these checks.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Text that is not text/*: common in code and configuration.
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-yaml",
        "application/yaml",
        "application/javascript",
        "application/x-sh",
        "application/sql",
        "application/toml",
    }
)


@dataclass(frozen=True, slots=True)
class InboundFile:
    """A file attached to an inbound message, not yet downloaded."""

    name: str
    mime_type: str
    size: int
    fetch: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A downloaded, accepted file, in the runtime's form."""

    name: str
    mime_type: str
    data: bytes

    def to_runtime(self) -> dict[str, Any]:
        return {
            "type": "blob",
            "data": base64.b64encode(self.data).decode("ascii"),
            "mimeType": self.mime_type,
            "displayName": self.name,
        }


def _is_text(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in TEXT_TYPES


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 1_000_000 else f"{n / 1000:.0f} kB"


async def accept_files(
    files: Sequence[InboundFile], max_bytes: int
) -> tuple[list[Attachment], list[str]]:
    """Download the files that may reach the agent; return them with a note for each of
    the others, written for the person who sent them."""
    accepted: list[Attachment] = []
    notes: list[str] = []
    for file in files:
        mime_type = file.mime_type.split(";")[0].strip().lower()
        if not (_is_text(mime_type) or mime_type in IMAGE_TYPES):
            notes.append(
                f"I can't read `{file.name}` ({mime_type or 'unknown type'}): "
                "I take text files and images (PNG, JPEG, GIF, WebP)."
            )
            continue
        if file.size > max_bytes:
            notes.append(
                f"`{file.name}` is {_size(file.size)}; I take files up to {_size(max_bytes)}, "
                "so I left it out."
            )
            continue
        data = await file.fetch()
        if len(data) > max_bytes:  # the declared size was wrong
            notes.append(f"`{file.name}` is larger than {_size(max_bytes)}, so I left it out.")
            continue
        if _is_text(mime_type):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                notes.append(f"`{file.name}` is not UTF-8 text, so I left it out.")
                continue
        accepted.append(Attachment(file.name, mime_type, data))
    return accepted, notes
