"""Attachments: which files people send reach the agent, and how.

Text files and images are accepted up to THREADPILOT_MAX_ATTACHMENT_BYTES; text is
inlined into the prompt by the runtime, images go to the model as images. Anything
else gets a polite note instead. Files are only downloaded (by the adapter that knows
how) once they have passed these checks.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.errors import FileRefused, FileUnavailable
from bot.inbound import InboundFile

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

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A downloaded, accepted file, in the runtime's form."""

    name: str
    mime_type: str
    data: bytes

    @property
    def is_text(self) -> bool:
        return _is_text(self.mime_type)

    def to_runtime(self) -> dict[str, Any]:
        return {
            "type": "blob",
            "data": base64.b64encode(self.data).decode("ascii"),
            "mimeType": self.mime_type,
            "displayName": self.name,
        }


def _is_text(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in TEXT_TYPES


def _image_type(data: bytes) -> str | None:
    """The image type `data` is, by its signature; None if none the agent takes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


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
        try:
            data = await file.fetch()
        except FileRefused as exc:
            log.warning("refused to download %s: %s", file.name, exc)
            notes.append(f"I can't read `{file.name}`: {exc}, so I left it out.")
            continue
        except FileUnavailable as exc:
            log.warning("could not download %s: %s", file.name, exc)
            notes.append(f"I couldn't download `{file.name}`, so I left it out; please try again.")
            continue
        # The declared size was wrong or missing; an adapter may stop reading one byte past
        # the limit and leave the verdict to this check.
        if len(data) > max_bytes:
            notes.append(f"`{file.name}` is larger than {_size(max_bytes)}, so I left it out.")
            continue
        if _is_text(mime_type):
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                notes.append(f"`{file.name}` is not UTF-8 text, so I left it out.")
                continue
        else:
            # The runtime drops an image it cannot decode, and the SDK then fails to parse
            # the message event that says so (github-copilot-sdk 1.0.25): the turn would
            # hang. So only real images go, under the type their bytes show.
            mime_type = _image_type(data) or ""
            if not mime_type:
                notes.append(
                    f"`{file.name}` is not a PNG, JPEG, GIF or WebP image, so I left it out."
                )
                continue
        accepted.append(Attachment(file.name, mime_type, data))
    return accepted, notes
